//! Tests of the FaceID simulator itself: the get_result upstream's rules, its control plane,
//! the callback sender (checked against `protocol::verify` on a local echo server), and the
//! `faceid-sim` binary's wiring. One test binary (`cargo test --test sim`).

mod cli;
mod control;
mod helpers;
mod listen;
mod sender;
mod upstream;
