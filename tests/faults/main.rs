//! Faults survived, real clients and fuzzing (issue 5, items 2–4).
//!
//! - `kill9`: SIGKILL of the real `faceid-receiver serve` under notify load: every 2xx is stored.
//! - `push_kill9`: SIGKILL of `serve` while it pushes: every event still reaches the endpoint.
//! - `pg_outage`: a private PostgreSQL instance stopped and restarted under load.
//! - `replicas`: three real `serve` replicas on one PostgreSQL, killed and restarted during
//!   follow-ups against the FaceID simulator.
//! - `upstream`: a stuck or failing upstream never slows callbacks down.
//! - `browser`: the return_url flow driven by headless Chromium (skips loudly without it).
//! - `props`: proptest properties of the callback and biz_id parsers.
//!
//! Everything here talks to loopback only, and waits by polling a condition with a deadline.

#[path = "../common/mod.rs"]
mod common;

mod helpers;

mod browser;
mod kill9;
mod pg_outage;
mod props;
mod push_kill9;
mod replicas;
mod upstream;
