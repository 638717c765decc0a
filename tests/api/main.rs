//! HTTP integration tests: the real router on a random port, over real SQLite and real
//! PostgreSQL (each case runs on both engines).

#[path = "../common/mod.rs"]
mod common;

mod helpers;

mod callbacks;
mod console;
mod console_browser;
mod encryption;
mod hardening;
mod openapi;
mod ops;
mod poison;
mod privacy;
mod push;
mod query_api;
mod replay;
mod return_url;
mod vectors;
