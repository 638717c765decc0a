//! What the receiver and its stand-in (`faceid-sim`) must agree on, as pure code both link:
//! FaceID Lite's rules at the crate root, the Standard Webhooks signatures of the pushes in
//! [`webhook`], and the injected [`clock`] both read time from.
//!
//! - The crate root is pure FaceID Lite knowledge: how callbacks are signed ([`mod@sign`]), what
//!   a result looks like ([`payload`], and which of its fields are identity data: [`pii`]),
//!   what a `biz_id` is and when FaceID forgets it ([`biz_id`]), and which get_result errors
//!   are worth retrying ([`error`]). The receiver re-exports it as `faceid_receiver::protocol`.
//! - [`webhook`]: endpoint secrets, signing and verification of the receiver's pushes; the
//!   receiver signs with it (`faceid_receiver::push::signature`), `faceid-sim listen`
//!   verifies with it.
//! - [`clock`]: time as an injected dependency, so one [`clock::ManualClock`] can drive the
//!   receiver and the simulator in the same test (`faceid_receiver::clock`).
//!
//! Why a crate of its own: the simulator is not part of what deployments link, yet tests run
//! it in-process beside the receiver. Both depend on this crate, neither on the other, so a
//! test links one copy of these types and a `Status` or a `ManualClock` is the same type on
//! both sides.
//!
//! Invariants: nothing here does I/O or knows about HTTP frameworks or databases (no axum, no
//! sqlx, no tokio), so every rule can be unit-tested against the examples in FaceID's own
//! documents and the Standard Webhooks specification. The one exception is
//! [`clock::SystemClock`], which reads the wall clock; everything else takes time as an
//! argument.

pub mod biz_id;
pub mod clock;
pub mod error;
pub mod payload;
pub mod pii;
pub mod sign;
pub mod webhook;

pub use biz_id::{BizId, BizIdError};
pub use error::{ErrorClass, FaceIdError};
pub use payload::{CallbackResult, DataError, Liveness, ResultFields, Status};
pub use sign::{Signature, SignatureError, sign, verify};
