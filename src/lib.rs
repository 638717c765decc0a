//! faceid-receiver: receives, verifies and stores Megvii FaceID Lite callbacks, and follows
//! up with get_result under FaceID's one-day, three-call budget.
//!
//! Layout: [`protocol`] is pure FaceID knowledge; [`store`] is durable state behind one trait
//! for PostgreSQL and SQLite; [`http`] is the axum surface; [`startup`] wires them into an
//! [`Application`] that tests and `main` run alike.

pub mod clock;
pub mod protocol;
pub mod store;
pub mod config;
