//! faceid-receiver: receives, verifies and stores Megvii FaceID Lite callbacks, and follows
//! up with get_result under FaceID's one-day, three-call budget.
//!
//! Layout: [`protocol`] is pure FaceID knowledge; [`store`] is durable state behind one trait
//! for PostgreSQL and SQLite; [`http`] is the axum surface; [`startup`] wires them into an
//! [`Application`] that tests and `main` run alike.

pub mod clock;
pub mod fetcher;
pub mod megvii;
pub mod protocol;
pub mod store;
pub mod config;
pub mod http;
pub mod telemetry;
pub mod startup;

pub use startup::Application;

/// Installs rustls' ring crypto provider for reqwest and sqlx (idempotent). Call before
/// building any HTTP client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
