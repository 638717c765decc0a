//! What `/api/v1` answers: the views of stored records, with identity data masked unless the
//! caller has the `pii` scope, and times as RFC 3339.
//!
//! The documentation-only mirrors at the end ([`VerificationPage`], [`CallbackPage`],
//! [`FetchStateName`], [`SourceName`]) describe, for the OpenAPI document, shapes whose Rust
//! type is generic ([`Page`]) or a `&'static str`; they describe exactly what is serialized.
//!
//! Invariant: without `pii`, a result is [`pii::mask_result`]'s re-serialization (so not
//! byte-exact) and a journal address is cut to its network ([`pii::mask_address`]).

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::protocol::pii;
use crate::store::{CallbackRecord, FetchInfo, Verification};

/// A verification as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct VerificationView {
    /// FaceID's biz_id (or `raw:<token>` for a RAW result).
    #[schema(example = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1")]
    pub biz_id: String,
    pub biz_no: Option<String>,
    /// FaceID's status (`OK`, `FAILED`, …) or `PENDING` until a result is known.
    #[schema(example = "OK")]
    pub status: String,
    /// `PASS`/`FAIL` from liveness_result, when present.
    pub liveness: Option<String>,
    /// verify_result.result_faceid.confidence, when present.
    pub confidence: Option<f64>,
    #[schema(value_type = SourceName)]
    pub source: &'static str,
    /// Whether the stored result came with a valid signature (get_result answers count).
    pub signed: bool,
    /// FaceID's JSON exactly as received (images stripped) for `pii` callers, masked for
    /// others; null while pending or once purged.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Box<RawValue>>,
    /// Names of fetched images, for `GET …/images/{name}`.
    pub images: Vec<String>,
    pub fetch: FetchView,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// When retention removed the raw result and images; absent when never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
}

/// The follow-up (get_result) state of a verification.
#[derive(Serialize, ToSchema)]
pub struct FetchView {
    #[schema(value_type = FetchStateName)]
    pub state: &'static str,
    /// get_result calls spent (at most 3, ever).
    pub calls_used: i32,
    /// RFC 3339 time of the next call, when one is scheduled.
    pub next_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<&FetchInfo> for FetchView {
    fn from(f: &FetchInfo) -> Self {
        Self {
            state: f.state.as_str(),
            calls_used: f.calls_used,
            next_at: f.next_at.map(rfc3339),
            last_error: f.last_error.clone(),
        }
    }
}

impl From<Verification> for VerificationView {
    /// The unmasked view (for `pii` callers).
    fn from(v: Verification) -> Self {
        Self::render(v, true)
    }
}

impl VerificationView {
    /// The view of `v`, with identity data masked unless `pii`.
    pub fn render(v: Verification, pii: bool) -> Self {
        let result = v.result.and_then(|raw| {
            if pii {
                // The stored text was validated as one JSON object before it was stored.
                RawValue::from_string(raw).ok()
            } else {
                serde_json::value::to_raw_value(&pii::mask_result(&raw)).ok()
            }
        });
        Self {
            fetch: FetchView::from(&v.fetch),
            biz_id: v.biz_id,
            biz_no: v.biz_no,
            status: v.status,
            liveness: v.liveness,
            confidence: v.confidence,
            source: v.source.as_str(),
            signed: v.signed,
            result,
            images: v.images,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
            purged_at: v.purged_at.map(rfc3339),
        }
    }
}

/// A page of a list, newest first (documented as `VerificationPage` and `CallbackPage`).
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// One journaled callback delivery, accepted or not: the store's record, which declares its
/// wire shape once ([`CallbackRecord`], `CallbackView` in OpenAPI).
pub type CallbackView = CallbackRecord;

/// `c` as a reader sees it: the address cut to its network unless `pii`.
pub fn render_callback(mut c: CallbackRecord, pii: bool) -> CallbackView {
    if !pii {
        c.remote_addr = c.remote_addr.as_deref().map(pii::mask_address);
    }
    c
}

/// A page of verifications, newest first (`Page<VerificationView>`).
#[derive(Serialize, ToSchema)]
pub struct VerificationPage {
    pub items: Vec<VerificationView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of journal entries, newest first (`Page<CallbackView>`).
#[derive(Serialize, ToSchema)]
pub struct CallbackPage {
    pub items: Vec<CallbackView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// State of the follow-up (`fetch.state`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FetchStateName {
    None,
    Pending,
    Done,
    NotFound,
    Expired,
    Exhausted,
    Failed,
}

/// Which delivery the stored result came from.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceName {
    Notify,
    Return,
    GetResult,
}
