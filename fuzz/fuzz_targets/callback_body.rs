//! A whole callback request body as the notify/return POST routes read it: decoding by
//! content type (form, multipart, JSON), then signature verification and `data` parsing.
//! Nothing may panic; whatever decodes and verifies must be what was signed.
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use faceid_receiver::http::extract::decode_callback;
use faceid_receiver::protocol::payload::parse_callback_data;
use faceid_receiver::protocol::{sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("multipart/form-data; boundary=XyZ"),
    Some("multipart/form-data"),
    Some("text/plain"),
];

thread_local! {
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
    );
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[selector as usize % CONTENT_TYPES.len()];
    let body = Bytes::copy_from_slice(body);
    let decoded = RUNTIME.with(|rt| rt.borrow().block_on(decode_callback(content_type, body)));
    if let Ok(fields) = decoded {
        if verify(SECRET, &fields.data, &fields.sign).is_ok() {
            // Only the real signature of these exact bytes can verify.
            assert_eq!(fields.sign.to_ascii_lowercase(), sign(SECRET, &fields.data));
        }
        let _ = parse_callback_data(&fields.data);
    }
});
