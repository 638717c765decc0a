//! Pure FaceID Lite knowledge: how callbacks are signed, what a result looks like, what a
//! `biz_id` is and when FaceID forgets it, and which get_result errors are worth retrying.
//!
//! Invariants: nothing here does I/O or knows about HTTP frameworks or databases (no axum, no
//! sqlx), so every rule can be unit-tested against the examples in FaceID's own documents.

pub mod biz_id;
pub mod error;
pub mod payload;
pub mod pii;
pub mod sign;

pub use biz_id::{BizId, BizIdError};
pub use error::{ErrorClass, FaceIdError};
pub use payload::{CallbackResult, DataError, Liveness, ResultFields, Status};
pub use sign::{Signature, SignatureError, sign, verify};
