//! Signing in to the console, the session it makes, and the CSRF token of that session.
//!
//! - Sign-in takes an `api.tokens` token in a form (never a URL), matched in constant time
//!   by `crate::http::auth::match_token`; it must have the `console` scope. Attempts are
//!   rate-limited per client IP (`console.sign_in_*`, the router's layer; an attempt over the
//!   limit is answered 429 and written nowhere, as the callback limits do), and every refusal
//!   of a token is audited (`sign_in_refused`, with why, the client's network and, for a configured
//!   token without the scope, its fingerprint — never what was typed).
//! - A session is 32 random bytes, sent as the `console_session` cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Path=/console`, `Secure` when `server.public_url` is https). The
//!   database keeps only its SHA-256 and the token's fingerprint, so replicas share sessions
//!   and a database dump opens none. The session's scopes are read from `api.tokens` on
//!   every request (by fingerprint): removing a token from the configuration ends its
//!   sessions. Idle and absolute expiry are checked by the store in one conditional
//!   statement; sign-out deletes the row.
//! - The CSRF token is derived from the session id (SHA-256 under its own label): per
//!   session, never stored, and compared in constant time (`subtle`). A form POST without
//!   it, or with another, is refused 403 and audited (`csrf_refused`).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::pages::{ConsoleError, ConsoleForm, render};
use crate::config::{CONSOLE_SCOPE, Settings};
use crate::http::AppState;
use crate::http::auth::match_token;
use crate::http::callbacks::Peer;
use crate::protocol::pii;
use crate::store::{ConsoleEvent, NewSession};

/// The session cookie's name.
pub const COOKIE: &str = "console_session";

/// A signed-in operator: what the session's token may do, and the session's CSRF token.
#[derive(Clone)]
pub struct Operator {
    pub token_fp: String,
    pub scopes: Vec<String>,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// The client's network, masked as the journal masks addresses (for the audit trail).
    pub remote: Option<String>,
}

impl Operator {
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn has_pii(&self) -> bool {
        self.has(pii::PII_SCOPE)
    }

    /// Refuses (403, audited) a form whose CSRF token is missing or not this session's.
    pub async fn check_csrf(
        &self,
        state: &AppState,
        presented: Option<&str>,
    ) -> Result<(), ConsoleError> {
        let presented = presented.unwrap_or_default();
        let ok: bool = Sha256::digest(presented.as_bytes())
            .ct_eq(&Sha256::digest(self.csrf.as_bytes()))
            .into();
        if ok {
            return Ok(());
        }
        tracing::warn!(token_fp = %self.token_fp, "console: form refused, CSRF token missing or wrong");
        self.audit(state, "csrf_refused", None, None).await?;
        Err(ConsoleError::Csrf)
    }

    pub async fn audit(
        &self,
        state: &AppState,
        event: &str,
        biz_id: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), ConsoleError> {
        audit(
            state,
            event,
            Some(&self.token_fp),
            self.remote.clone(),
            biz_id,
            detail,
        )
        .await
    }
}

pub async fn audit(
    state: &AppState,
    event: &str,
    token_fp: Option<&str>,
    remote: Option<String>,
    biz_id: Option<&str>,
    detail: Option<&str>,
) -> Result<(), ConsoleError> {
    state
        .store
        .audit(&ConsoleEvent {
            at: state.clock.now_ms(),
            event: event.to_owned(),
            token_fp: token_fp.map(str::to_owned),
            remote_addr: remote,
            biz_id: biz_id.map(str::to_owned),
            detail: detail.map(str::to_owned),
        })
        .await?;
    Ok(())
}

/// The client's network for the audit trail (the TCP peer, masked).
fn remote(headers: &HeaderMap, peer: Option<SocketAddr>, settings: &Settings) -> Option<String> {
    let ip = if settings.server.trust_forwarded_for {
        crate::http::limit::last_forwarded_for(headers).or(peer.map(|p| p.ip()))
    } else {
        peer.map(|p| p.ip())
    };
    ip.map(|ip| pii::mask_address(&ip.to_string()))
}

fn hash_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The CSRF token of the session whose id is `session_id`.
fn csrf_of(session_id: &str) -> String {
    hash_hex(format!("faceid-console-csrf\0{session_id}").as_bytes())
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The operator of this request, or the answer that sends the browser to sign in.
pub async fn operator(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Operator, ConsoleError> {
    let session_id = cookie_value(headers).ok_or(ConsoleError::SignIn)?;
    let now = state.clock.now_ms();
    let idle_cutoff = now.saturating_sub(ms(state.settings.console.idle_timeout));
    let session = state
        .store
        .touch_session(&hash_hex(session_id.as_bytes()), now, idle_cutoff)
        .await?
        .ok_or(ConsoleError::SignIn)?;
    // The token's scopes as configured now: a token taken out of api.tokens signs nobody in.
    let token = state
        .settings
        .api
        .tokens
        .iter()
        .find(|t| t.fingerprint() == session.token_fp && t.has_scope(CONSOLE_SCOPE))
        .ok_or(ConsoleError::SignIn)?;
    Ok(Operator {
        token_fp: session.token_fp,
        scopes: token.scopes.clone(),
        csrf: csrf_of(&session_id),
        remote: remote(headers, peer, &state.settings),
    })
}

/// `Set-Cookie` for a session id (`max_age` 0 clears it).
fn set_cookie(settings: &Settings, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = settings
        .server
        .public_url
        .as_ref()
        .is_some_and(|u| u.scheme() == "https");
    let text = format!(
        "{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("a cookie of hex digits is a valid header value")
}

#[derive(askama::Template)]
#[template(path = "console/sign_in.html")]
pub struct SignInPage {
    pub nav: Option<super::pages::Nav>,
    pub message: Option<&'static str>,
}

pub async fn sign_in_form() -> Response {
    render(
        StatusCode::OK,
        &SignInPage {
            nav: None,
            message: None,
        },
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: Option<String>,
}

pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<SignInForm>,
) -> Result<Response, ConsoleError> {
    let remote = remote(&headers, peer, &state.settings);
    let presented = form.token.unwrap_or_default();
    let Some(token) = match_token(&state.settings.api.tokens, presented.trim()) else {
        tracing::warn!("console: sign-in refused, unknown token");
        audit(
            &state,
            "sign_in_refused",
            None,
            remote,
            None,
            Some("unknown_token"),
        )
        .await?;
        return Ok(render(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                nav: None,
                message: Some("Sign-in refused: that token is not valid for the console."),
            },
        ));
    };
    let token_fp = token.fingerprint();
    if !token.has_scope(CONSOLE_SCOPE) {
        tracing::warn!(token_fp = %token_fp, "console: sign-in refused, token lacks the console scope");
        audit(
            &state,
            "sign_in_refused",
            Some(&token_fp),
            remote,
            None,
            Some("missing_scope"),
        )
        .await?;
        return Ok(render(
            StatusCode::FORBIDDEN,
            &SignInPage {
                nav: None,
                message: Some("Sign-in refused: that token is not valid for the console."),
            },
        ));
    }
    let console = &state.settings.console;
    let now = state.clock.now_ms();
    state
        .store
        .purge_sessions(now, now.saturating_sub(ms(console.idle_timeout)))
        .await?;
    let mut id = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    let session_id = hex::encode(id);
    state
        .store
        .create_session(&NewSession {
            id_hash: hash_hex(session_id.as_bytes()),
            token_fp: token_fp.clone(),
            created_at: now,
            expires_at: now.saturating_add(ms(console.absolute_timeout)),
        })
        .await?;
    audit(&state, "sign_in", Some(&token_fp), remote, None, None).await?;
    tracing::info!(token_fp = %token_fp, "console: signed in");
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(
            &state.settings,
            &session_id,
            console.absolute_timeout.as_secs(),
        ),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    ConsoleForm(form): ConsoleForm<CsrfForm>,
) -> Result<Response, ConsoleError> {
    let operator = operator(&state, &headers, peer).await?;
    operator.check_csrf(&state, form.csrf.as_deref()).await?;
    if let Some(session_id) = cookie_value(&headers) {
        state
            .store
            .delete_session(&hash_hex(session_id.as_bytes()))
            .await?;
    }
    operator.audit(&state, "sign_out", None, None).await?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state.settings, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_is_per_session_and_not_the_session_id() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_ne!(csrf_of(&a), csrf_of(&b));
        assert_eq!(csrf_of(&a), csrf_of(&a));
        assert_ne!(csrf_of(&a), a);
        assert_ne!(
            csrf_of(&a),
            hash_hex(a.as_bytes()),
            "not the stored hash either"
        );
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let mut headers = HeaderMap::new();
        let id = "0f".repeat(32);
        headers.insert(
            header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers), Some(id));
        headers.insert(header::COOKIE, format!("{COOKIE}=short").parse().unwrap());
        assert_eq!(cookie_value(&headers), None);
    }
}
