//! Pushing outcomes to the merchant's systems (issue 13): signed webhooks, per the Standard
//! Webhooks specification, from a transactional outbox.
//!
//! The outbox tables live in the store (`store/push.rs`, written in the transactions of the
//! changes they report), the routes in `http/push.rs`; here:
//! - [`signature`]: endpoint secrets (`whsec_…`), signing (with the previous secret beside
//!   the new one after a rotation) and verification;
//! - [`schedule`]: when a failed delivery is tried again (jittered, deterministic), and when
//!   an endpoint that keeps failing is disabled;
//! - [`target`]: which URLs may be endpoints and which addresses a push may reach, enforced
//!   after DNS resolution, at connect time;
//! - [`client`]: one signed POST, SSRF-safe, bounded in time and in what it reads, reported
//!   as a typed [`client::Attempt`];
//! - [`event`]: event types, ids, the body envelope, and the coalescing of refusal bursts;
//! - [`render`]: an event's body from the record it names (masked unless `include_pii`);
//! - [`dispatcher`]: the task inside `serve` that publishes events and attempts deliveries.
//!
//! Invariants across the module: endpoint secrets and endpoint URLs' paths and queries never
//! reach a log, an error or a `Debug` output; time is always passed in (epoch ms) from the
//! injected [`crate::clock::Clock`].

pub mod client;
pub mod dispatcher;
pub mod event;
pub mod render;
pub mod schedule;
pub mod target;

/// Standard Webhooks secrets and signatures, shared with `faceid-sim listen` (which verifies
/// them): see [`faceid_protocol::webhook`].
pub use faceid_protocol::webhook as signature;

pub use client::{Attempt, AttemptOutcome, ClientSettings, FailureKind, PushClient, Verdict};
pub use signature::{EndpointSecret, SigningKeys, Verifier, WebhookHeaders};
pub use target::{Target, TargetPolicy};
