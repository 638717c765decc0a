//! Who is calling `/api/v1`: a bearer token from `api.tokens`, checked before any handler
//! runs, and the [`Caller`] it makes, which handlers ask for scopes and use to write the access
//! log.
//!
//! Invariants: tokens are compared in constant time (fixed-length digests, every configured
//! token checked, no early exit); every answer to a token with the `pii` scope carries
//! `Cache-Control: no-store`, so no proxy or browser cache may keep what it disclosed.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{AppError, Result};
use crate::config::ApiToken;
use crate::protocol::pii;
use crate::store::AccessEntry;

/// The token that authenticated a request, for handlers that care about scopes.
#[derive(Clone)]
pub struct Caller {
    pub scopes: Vec<String>,
    /// [`ApiToken::fingerprint`], for the access log.
    pub token_fp: String,
}

impl Caller {
    /// May see identity data (unmasked results, image bytes).
    pub fn has_pii(&self) -> bool {
        self.scopes.iter().any(|s| s == pii::PII_SCOPE)
    }

    /// Records that this caller was shown `biz_ids` (or records of no biz_id, `None`) through
    /// `route`. Call before answering.
    pub async fn log_access<'a, B: Into<Option<&'a str>>>(
        &self,
        state: &AppState,
        route: &str,
        biz_ids: impl IntoIterator<Item = B>,
    ) -> Result<()> {
        let accessed_at = state.clock.now_ms();
        let entries: Vec<AccessEntry> = biz_ids
            .into_iter()
            .map(|biz_id| AccessEntry {
                token_fp: self.token_fp.clone(),
                route: route.to_owned(),
                biz_id: biz_id.into().map(str::to_owned),
                accessed_at,
            })
            .collect();
        state.store.record_access(&entries).await?;
        Ok(())
    }
}

/// Accepts `Authorization: Bearer <token>` when it matches one of `api.tokens`.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(AppError::Unauthorized)?;
    let token = match_token(&state.settings.api.tokens, presented).ok_or(AppError::Unauthorized)?;
    let caller = Caller {
        scopes: token.scopes.clone(),
        token_fp: token.fingerprint(),
    };
    let pii = caller.has_pii();
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if pii {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// Constant-time: compares fixed-length digests, and looks at every token.
pub(crate) fn match_token<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let presented = Sha256::digest(presented.as_bytes());
    let mut found = None;
    for token in tokens {
        let expected = Sha256::digest(token.token.expose_secret().as_bytes());
        if bool::from(expected.ct_eq(&presented)) {
            found = Some(token);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tokens_match_and_scopes_come_along() {
        let tokens = vec![
            ApiToken::parse("alpha").unwrap(),
            ApiToken::parse("beta:pii").unwrap(),
        ];
        assert!(match_token(&tokens, "alpha").unwrap().scopes.is_empty());
        assert_eq!(match_token(&tokens, "beta").unwrap().scopes, vec!["pii"]);
        assert!(match_token(&tokens, "alph").is_none());
        assert!(match_token(&tokens, "").is_none());
        assert!(match_token(&[], "alpha").is_none());
    }
}
