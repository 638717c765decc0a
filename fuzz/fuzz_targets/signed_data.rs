//! `data` itself: signing then verifying always succeeds, a one-byte change always fails, and
//! the strict envelope refuses any non-whitespace byte after a parsed object.
#![no_main]

use faceid_receiver::protocol::payload::parse_callback_data;
use faceid_receiver::protocol::{sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let signature = sign(SECRET, data);
    assert!(verify(SECRET, data, &signature).is_ok());
    if let Some((&last, _)) = data.split_last() {
        let mut changed = data.to_vec();
        let i = data.len() / 2;
        changed[i] ^= last | 1;
        assert!(verify(SECRET, &changed, &signature).is_err());
    }
    if parse_callback_data(data).is_ok() {
        for tail in [&b"x"[..], b"}", b"{}", b"\xff", b",{\"status\":\"OK\"}"] {
            let extended = [data, tail].concat();
            assert!(parse_callback_data(&extended).is_err());
        }
    }
});
