//! Replay: storing the deliveries we refused, once what refused them is fixed — a wrong
//! `megvii.api_secret` (every callback answered 403 until an operator noticed), a rotation
//! FaceID made before we did, or content an older version of this service refused.
//!
//! Owns which refused deliveries are re-examined and how: a refused delivery of a signed route
//! (notify, return POST) whose body the journal kept whole is decoded, its sign checked
//! against the secrets configured *now* (current, then previous), its data parsed, and — if
//! all of that passes — its result merged under the usual rule (with any images cut out and
//! stored, as for a live delivery: [`crate::megvii::signed_callback`]), its follow-up handled
//! as a live delivery's would be, and its journal row marked `replayed` with the key id that
//! verified it, all in one transaction ([`ReplayStore::accept_replayed`]).
//!
//! Invariants:
//! - idempotent: a row is claimed (`rejected` → `replayed`) in the transaction that stores
//!   its result, so a second replay, or two replays at once (CLI and API), store nothing
//!   twice; rows that still do not verify stay `rejected` and are looked at again next time;
//! - safe while serving: each delivery is its own transaction under the same merge rule as
//!   live callbacks, so a live retry of the same result and its replay meet as a duplicate;
//! - a body not kept whole (emptied by retention, or capped to a prefix) is never replayed:
//!   its sign cannot be checked over bytes we no longer have;
//! - a refused body that cannot be read (`store/encrypted.rs` says which may be) stops nothing:
//!   it is counted still refused and `unreadable`, and its journal id logged;
//! - nothing from a body reaches a log; counts and journal ids only.

use bytes::Bytes;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::fetcher::plan;
use crate::http::extract::decode_callback;
use crate::protocol::payload::{CallbackResult, parse_callback_data};
use crate::protocol::sign::{key_id, verify_any};
use crate::store::{
    CallbackKind, MergeOutcome, RefusedDelivery, ReplayStore, StoreError, StoreResult,
};

/// Rows read per page.
const PAGE: i64 = 200;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Only deliveries received at or after this time (epoch ms).
    pub since: Option<i64>,
    /// Only count; change nothing.
    pub dry_run: bool,
    /// Start after this journal id (to continue a run `limit` stopped).
    pub after_id: i64,
    /// Look at no more than this many deliveries (`None`: all of them).
    pub limit: Option<u64>,
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReplayCounts {
    /// Refused deliveries of the signed routes, body kept, that were looked at.
    pub examined: u64,
    /// Of those, the ones that now verify and parse (dry run: would be replayed).
    pub verified: u64,
    /// Replayed: stored as a new or better result.
    pub stored: u64,
    /// Replayed, but the result was already stored (FaceID retried after the fix), or another
    /// replay stored it first.
    pub duplicate: u64,
    /// Still refused: no configured secret matches the sign, the body or its data is
    /// malformed, the body was not kept whole or cannot be read, or the database refused it
    /// again.
    pub still_refused: u64,
    /// Of the still refused, those whose stored body cannot be read: it does not decrypt
    /// with the configured keys, and no one vouched for it (a stranger's bytes). Their
    /// journal ids are logged.
    pub unreadable: u64,
}

/// A replay's counts, and where to continue when `limit` stopped it early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub counts: ReplayCounts,
    /// The last journal id looked at when `limit` stopped the run: pass it as `after_id`.
    pub next_after_id: Option<i64>,
}

/// Replays the refused deliveries `options` selects (see the module header).
pub async fn replay(
    store: &dyn ReplayStore,
    settings: &Settings,
    clock: &SharedClock,
    options: &ReplayOptions,
) -> StoreResult<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut after_id = options.after_id;
    let mut left = options.limit.unwrap_or(u64::MAX);
    while left > 0 {
        let page_size = PAGE.min(i64::try_from(left).unwrap_or(PAGE));
        let page = store
            .refused_deliveries(after_id, options.since, page_size)
            .await?;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        let full = page.len() as i64 == page_size;
        for delivery in &page {
            left -= 1;
            report.counts.examined += 1;
            replay_one(
                store,
                settings,
                clock,
                options.dry_run,
                delivery,
                &mut report.counts,
            )
            .await?;
        }
        if !full {
            break;
        }
        if left == 0 {
            report.next_after_id = Some(after_id);
        }
    }
    tracing::info!(
        dry_run = options.dry_run,
        examined = report.counts.examined,
        verified = report.counts.verified,
        stored = report.counts.stored,
        duplicate = report.counts.duplicate,
        still_refused = report.counts.still_refused,
        unreadable = report.counts.unreadable,
        "replay of refused deliveries"
    );
    Ok(report)
}

async fn replay_one(
    store: &dyn ReplayStore,
    settings: &Settings,
    clock: &SharedClock,
    dry_run: bool,
    delivery: &RefusedDelivery,
    counts: &mut ReplayCounts,
) -> StoreResult<()> {
    let Some(body) = delivery.body.as_deref() else {
        // The id only: the body is a stranger's, and the error would print one of its bytes.
        tracing::warn!(
            journal_id = delivery.id,
            "replay: the stored body of a refused delivery cannot be read; still refused"
        );
        counts.still_refused += 1;
        counts.unreadable += 1;
        return Ok(());
    };
    let Some((result, key_id)) = verified(settings, delivery, body).await else {
        counts.still_refused += 1;
        return Ok(());
    };
    counts.verified += 1;
    if dry_run {
        return Ok(());
    }
    let now = clock.now_ms();
    // The candidates are notify and return POST deliveries only.
    let kind = CallbackKind::parse(&delivery.kind).unwrap_or(CallbackKind::Notify);
    let (incoming, images) = crate::megvii::signed_callback(&result, kind);
    let job = plan::after_signed(
        &settings.fetch,
        result.biz_id.as_str(),
        &result.fields.status,
        now,
    );
    match store
        .accept_replayed(delivery.id, &key_id, &incoming, &images, job, now)
        .await
    {
        Ok(Some((MergeOutcome::Created | MergeOutcome::Updated, _))) => counts.stored += 1,
        Ok(Some((MergeOutcome::Unchanged, _)) | None) => counts.duplicate += 1,
        Err(error @ StoreError::Unavailable(_)) => return Err(error),
        Err(error) => {
            tracing::warn!(
                journal_id = delivery.id,
                code = error.database_code().as_deref(),
                error.message = %error,
                "replay: the database refused a verified delivery again"
            );
            counts.still_refused += 1;
        }
    }
    Ok(())
}

/// The delivery's result and the key id of the secret that verifies it, when its `body`
/// now verifies and parses.
async fn verified(
    settings: &Settings,
    delivery: &RefusedDelivery,
    body: &[u8],
) -> Option<(CallbackResult, String)> {
    if i64::try_from(body.len()).ok()? != delivery.body_len {
        return None;
    }
    let fields = decode_callback(
        delivery.content_type.as_deref(),
        Bytes::copy_from_slice(body),
    )
    .await
    .ok()?;
    let secrets = settings.megvii.callback_secrets();
    let position = verify_any(&secrets, &fields.data, &fields.sign).ok()?;
    let result = parse_callback_data(&fields.data).ok()?;
    Some((result, key_id(position)))
}
