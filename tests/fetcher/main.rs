//! Follow-up worker integration tests: the real store (SQLite and PostgreSQL, each case on
//! both), the FaceID simulator (or wiremock for shapes it does not make) as the upstream, and
//! a manual clock so a day passes without sleeping.

#[path = "../common/mod.rs"]
mod common;

mod helpers;

mod api;
mod flood;
mod lease;
mod replicas;
mod schedule;
mod worker;
