//! The push building blocks against real counterparts: signatures checked by the official
//! Standard Webhooks library (PyPI `standardwebhooks`, pinned in scripts/standardwebhooks.sh),
//! and the SSRF-safe client against real local HTTP servers. One test binary
//! (`cargo test --test push`).

mod client;
mod official_verifier;
