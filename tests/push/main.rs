//! The push building blocks against real counterparts: signatures checked by the official
//! Standard Webhooks library (PyPI `standardwebhooks`, pinned in scripts/standardwebhooks.sh),
//! the SSRF-safe client against real local HTTP servers, and the real `serve` pushing end to
//! end. One test binary (`cargo test --test push`).

#[path = "../common/mod.rs"]
mod common;

mod client;
mod official_verifier;
mod serve;
