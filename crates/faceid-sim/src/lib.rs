//! `faceid-sim`: a stand-in for FaceID Lite, for tests and local development.
//!
//! - [`server`]: the get_result upstream (Lite by biz_id, RAW by token) with FaceID's real
//!   limits — three calls, one day, documented error codes — driven by per-id [`script`]s,
//!   with a call log tests can assert on ("never a 4th call", "never two at once").
//! - [`sender`]: builds, signs (or forges) and delivers notify/return callbacks.
//! - [`result`]: the result JSON both of them produce, shaped like the seeds' examples.
//! - [`listen`]: the other direction — a local consumer of the receiver's pushes that
//!   verifies their Standard Webhooks signatures and answers as told.
//!
//! Time comes from an injected [`Clock`](faceid_protocol::clock::Clock), so tests can step
//! through the one-day window with a [`ManualClock`](faceid_protocol::clock::ManualClock).
//! FaceID rules themselves (signatures, biz_id times, error codes) and the webhook signatures
//! `listen` checks come from [`faceid_protocol`], not from here.
//!
//! A crate of its own, beside the receiver and not inside it: deployments never link it (the
//! Dockerfile builds `faceid-receiver` alone), and it depends on the receiver's rules only
//! through `faceid-protocol`, never on the receiver itself, so the receiver's tests can run it
//! in-process with one copy of the shared types.

pub mod listen;
pub mod result;
pub mod script;
pub mod sender;
pub mod server;

pub use listen::{ListenConfig, Listener, Received};
pub use result::{Subject, TINY_JPEG, jpeg_data_uri, mint_biz_id};
pub use script::{EchoShape, SeedShape, Step};
pub use sender::{
    CallbackSpec, Delivery, Encoding, Forgery, SendError, SignedCallback, http_client,
    post_callback, return_get, return_get_url,
};
pub use server::{
    Api, CallRecord, CallReport, CallsReport, ResultScript, ScriptError, SimConfig, SimServer,
    Simulator,
};
