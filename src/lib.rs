//! faceid-receiver: receives, verifies and stores Megvii FaceID Lite callbacks, and follows
//! up with get_result under FaceID's one-day, three-call budget.
//!
//! Layout: [`protocol`] is pure FaceID knowledge; [`store`] is durable state, one part per
//! caller, for PostgreSQL and SQLite; [`http`] is the axum surface; [`megvii`] is the get_result
//! client and [`fetcher`] the follow-up worker that spends the budget; [`startup`] wires them
//! into an [`Application`] that tests and `main` run alike; [`push`] signs and sends outcomes
//! onward to the merchant's endpoints; [`console`] is the operator console in the browser.
//! [`protocol`] and [`clock`] come from the
//! `faceid-protocol` crate, which the FaceID stand-in (`faceid-sim`, a crate of its own, never
//! linked into the service) shares.

pub mod config;
pub mod console;
pub mod fetcher;
pub mod http;
pub mod megvii;
pub mod metrics;
pub mod push;
pub mod replay;
pub mod retention;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use startup::Application;

/// Pure FaceID Lite knowledge (signs, results, biz_ids, error codes), shared with `faceid-sim`:
/// see [`faceid_protocol`].
pub use faceid_protocol as protocol;
/// Time as an injected dependency, shared with `faceid-sim` so one manual clock drives both.
pub use faceid_protocol::clock;

/// Installs rustls' `ring` provider as the process-wide default.
///
/// reqwest is built with `rustls-no-provider`, so this crate chooses the provider itself, and a
/// client built before any provider is installed panics. Call this before building an HTTP
/// client; calling it again, or after another provider was installed, is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_the_crypto_provider_twice_is_harmless() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
