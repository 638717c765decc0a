//! biz_id parsing (strict for the unsigned return GET, lenient inside signed data) and the
//! return GET query handling. Nothing may panic; what parses strictly has the documented shape.
#![no_main]

use faceid_receiver::http::callbacks::biz_id_from_query;
use faceid_receiver::protocol::BizId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(id) = BizId::parse(text) {
        let (secs, rest) = id.as_str().split_once(',').expect("a comma");
        assert!(secs.bytes().all(|b| b.is_ascii_digit()));
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    let _ = BizId::from_signed(text);
    if let Ok(id) = biz_id_from_query(text) {
        assert!(BizId::parse(id.as_str()).is_ok());
    }
});
