//! `POST /api/v1/callbacks/replay` (bearer auth like the rest of `/api/v1`, and the `admin`
//! scope): replays refused deliveries, see [`crate::replay`]. The same as the
//! `faceid-receiver replay` command, bounded per request: at most `limit` deliveries (1000 by
//! default) are looked at, and `next_after_id` says where to continue.
//!
//! Invariant: nothing of a delivery's content is answered, only counts.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiErrors, AppError, ErrorBody, Result};
use crate::clock::parse_time;
use crate::config::ADMIN_SCOPE;
use crate::replay::{self, ReplayCounts, ReplayOptions};

/// Deliveries looked at per request unless the body says otherwise, and at most.
pub const DEFAULT_LIMIT: u64 = 1_000;
pub const MAX_LIMIT: u64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/callbacks/replay", post(replay_refused))
}

/// `POST /callbacks/replay` body; every field is optional, and so is the body. Unknown
/// fields are refused: a misspelt `dry_run` must not turn a dry run into a real one. Each
/// value is checked on its own, for an error that names it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only deliveries received at or after this time: RFC 3339 (epoch milliseconds are
    /// accepted too).
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-11-23T00:00:00Z")]
    since: Option<Value>,
    /// Only count what would be replayed; change nothing.
    #[schema(value_type = Option<bool>)]
    dry_run: Option<Value>,
    /// Continue after this journal id (`next_after_id` of the previous answer).
    #[schema(value_type = Option<i64>, minimum = 0)]
    after_id: Option<Value>,
    /// Deliveries to look at, 1 to 10000 (1000 by default).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    limit: Option<Value>,
}

/// What a replay did.
#[derive(Serialize, ToSchema)]
pub struct ReplayView {
    pub dry_run: bool,
    #[serde(flatten)]
    pub counts: ReplayCounts,
    /// Set when `limit` stopped the replay early: pass it as `after_id` to continue.
    pub next_after_id: Option<i64>,
}

/// A JSON number that is a whole number, however it is written (`7` or `7.0`: both are
/// integers to JSON Schema), within the range where a float holds every integer exactly.
fn whole_number(value: &Value) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
            .map(|f| f as i64)
    })
}

fn bad(code: &'static str, message: &str) -> AppError {
    AppError::bad_request(code, message.to_owned())
}

/// Reads the optional JSON body into options.
fn options(body: &[u8]) -> Result<ReplayOptions> {
    let mut options = ReplayOptions {
        limit: Some(DEFAULT_LIMIT),
        ..Default::default()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(options);
    }
    // JSON `null` is no options, as the document says (`oneOf` the object or null).
    let request: Option<ReplayRequest> = serde_json::from_slice(body).map_err(|_| {
        bad(
            "malformed_body",
            "the body must be empty, null or a JSON object with since, dry_run, after_id and limit",
        )
    })?;
    let Some(request) = request else {
        return Ok(options);
    };
    let invalid_since = || {
        bad(
            "invalid_since",
            "since must be an RFC 3339 time or epoch milliseconds",
        )
    };
    options.since = match request.since {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_time(&text).ok_or_else(invalid_since)?),
        Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(invalid_since)?),
        Some(_) => return Err(invalid_since()),
    };
    options.dry_run = match request.dry_run {
        None | Some(Value::Null) => false,
        Some(Value::Bool(dry_run)) => dry_run,
        Some(_) => return Err(bad("invalid_dry_run", "dry_run must be true or false")),
    };
    if let Some(after_id) = request.after_id.filter(|v| !v.is_null()) {
        options.after_id = whole_number(&after_id)
            .filter(|id| *id >= 0)
            .ok_or_else(|| bad("invalid_after_id", "after_id must be a whole number >= 0"))?;
    }
    if let Some(limit) = request.limit.filter(|v| !v.is_null()) {
        let limit = whole_number(&limit)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(
                    "invalid_limit",
                    "limit must be a whole number from 1 to 10000",
                )
            })?;
        options.limit = Some(limit);
    }
    Ok(options)
}

/// Replay refused callbacks: re-verify deliveries the journal kept whole against the
/// secrets configured now (`megvii.api_secret`, then `megvii.previous_secrets`), and store the
/// ones that verify (journaled as `replayed`). Idempotent; safe while callbacks arrive.
#[utoipa::path(
    post,
    path = "/api/v1/callbacks/replay",
    tag = "callbacks",
    request_body(content = Option<ReplayRequest>, content_type = "application/json",
                 description = "Optional: every field may be left out, and so may the body"),
    responses(
        (status = 200, description = "What the replay did (dry run: would do)", body = ReplayView),
        (status = 400, description = "Malformed body or field", body = ErrorBody),
        (status = 403, description = "The token lacks the `admin` scope", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        ApiErrors,
    ),
)]
pub async fn replay_refused(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<ReplayView>> {
    if !caller.scopes.iter().any(|s| s == ADMIN_SCOPE) {
        return Err(AppError::Forbidden(
            "replaying refused callbacks needs a token with the admin scope",
        ));
    }
    let options = options(&body)?;
    let report = replay::replay(
        state.store.as_ref(),
        &state.settings,
        &state.clock,
        &options,
    )
    .await?;
    if report.counts.stored > 0 {
        // A replayed result may want images: let the worker look now.
        state.wake_fetcher.notify_one();
    }
    Ok(Json(ReplayView {
        dry_run: options.dry_run,
        counts: report.counts,
        next_after_id: report.next_after_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_optional_and_each_field_is_checked() {
        let defaults = options(b"").unwrap();
        assert_eq!(
            (
                defaults.since,
                defaults.dry_run,
                defaults.after_id,
                defaults.limit
            ),
            (None, false, 0, Some(DEFAULT_LIMIT))
        );
        let set =
            options(br#"{"since":"2026-11-23T00:00:00Z","dry_run":true,"after_id":7,"limit":5}"#)
                .unwrap();
        assert_eq!(
            (set.since, set.dry_run, set.after_id, set.limit),
            (Some(1_795_392_000_000), true, 7, Some(5))
        );
        assert_eq!(options(br#"{"since":5}"#).unwrap().since, Some(5));
        assert_eq!(options(br#"{"since":null}"#).unwrap().since, None);
        // JSON Schema's integers include 1932.0: a whole number however it is written.
        let whole = options(br#"{"after_id":7.0,"limit":1932.0}"#).unwrap();
        assert_eq!((whole.after_id, whole.limit), (7, Some(1932)));
        for (body, code) in [
            (&b"[1]"[..], "malformed_body"),
            (b"{", "malformed_body"),
            (br#"{"since":"yesterday"}"#, "invalid_since"),
            (br#"{"since":1.5}"#, "invalid_since"),
            (br#"{"limit":0}"#, "invalid_limit"),
            (br#"{"limit":10001}"#, "invalid_limit"),
            (br#"{"limit":1.5}"#, "invalid_limit"),
            (br#"{"after_id":1e300}"#, "invalid_after_id"),
            (br#"{"after_id":-1}"#, "invalid_after_id"),
            (br#"{"dry_run":"yes"}"#, "invalid_dry_run"),
            (br#"{"dryrun":true}"#, "malformed_body"),
            (br#"{"everything":true}"#, "malformed_body"),
        ] {
            let error = options(body).unwrap_err();
            assert_eq!(error.code(), code, "{}", String::from_utf8_lossy(body));
        }
    }
}
