//! Property tests (bounded fuzzing in `cargo test`) of everything that reads untrusted input
//! on the callback routes: form/multipart/JSON body decoding, signature verification, the
//! strict envelope and lenient fields of `data`, `biz_id` parsing and the return GET query.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES` — `scripts/fuzz-long.sh`
//! runs them with many more. The `fuzz/` directory holds cargo-fuzz targets for the same code.

use bytes::Bytes;
use faceid_receiver::http::callbacks::biz_id_from_query;
use faceid_receiver::http::extract::{decode_callback, decode_form};
use faceid_receiver::protocol::payload::parse_callback_data;
use faceid_receiver::protocol::{BizId, sign, verify};
use faceid_sim::{CallbackSpec, SignedCallback, return_get_url};
use proptest::prelude::*;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Content types the decoder branches on, plus junk.
fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/x-www-form-urlencoded".to_owned())),
        Just(Some("application/json".to_owned())),
        Just(Some("application/problem+json; charset=utf-8".to_owned())),
        Just(Some("multipart/form-data; boundary=XyZ".to_owned())),
        Just(Some("multipart/form-data".to_owned())),
        "[ -~]{0,60}".prop_map(Some),
    ]
}

/// Bodies that look like what the decoder expects, broken in random ways.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "(data|sign|x|%[0-9a-fA-F]{0,2}|=|&|\\+|[a-z0-9%]{0,12}){0,24}".prop_map(String::into_bytes),
        "\\{\"data\": ?\"[^\"]{0,40}\", ?\"sign\": ?(\"[0-9a-f]{0,40}\"|[0-9]+|null)\\}[ -~]{0,8}"
            .prop_map(String::into_bytes),
        "--XyZ\r\nContent-Disposition: form-data; name=\"(data|sign)\"\r\n\r\n[ -~]{0,40}\r\n(--XyZ--\r\n)?"
            .prop_map(String::into_bytes),
    ]
}

/// A realistic signed callback's `data`, with arbitrary status and biz_no text.
fn callback_data() -> impl Strategy<Value = Vec<u8>> {
    (
        "[A-Za-z_:]{0,16}",
        "\\PC{0,40}",
        1_500_000_000_000i64..2_000_000_000_000,
    )
        .prop_map(|(status, biz_no, now_ms)| {
            let (_, data) = CallbackSpec::new(status).biz_no(biz_no).build(now_ms);
            data.into_bytes()
        })
}

fn secret() -> impl Strategy<Value = String> {
    "[ -~]{1,64}"
}

/// A strictly well-formed biz_id: 9–11 digits, a comma, 1–128 of `[A-Za-z0-9_-]`.
fn good_biz_id() -> impl Strategy<Value = String> {
    ("[0-9]{9,11}", "[A-Za-z0-9_-]{1,128}").prop_map(|(secs, id)| format!("{secs},{id}"))
}

proptest! {
    #[test]
    fn decoding_any_body_never_panics(ct in content_type(), body in body()) {
        let _ = block_on(decode_callback(ct.as_deref(), Bytes::from(body.clone())));
        let _ = decode_form(&body);
    }

    #[test]
    fn form_encoding_round_trips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512), secret in secret()) {
        let callback = SignedCallback::sign(&secret, data.clone());
        let fields = decode_form(callback.form_body().as_bytes()).expect("a form we built decodes");
        prop_assert_eq!(&fields.data, &data);
        prop_assert_eq!(&fields.sign, &callback.sign);
        prop_assert!(verify(&secret, &fields.data, &fields.sign).is_ok());
    }

    #[test]
    fn a_correct_signature_always_verifies_in_any_hex_case(data in proptest::collection::vec(any::<u8>(), 0..1024), secret in secret()) {
        let signature = sign(&secret, &data);
        prop_assert!(verify(&secret, &data, &signature).is_ok());
        prop_assert!(verify(&secret, &data, &signature.to_ascii_uppercase()).is_ok());
    }

    #[test]
    fn any_single_byte_change_of_data_fails_verification(
        data in callback_data(),
        secret in secret(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let signature = sign(&secret, &data);
        let mut changed = data.clone();
        let i = at.index(changed.len());
        changed[i] ^= flip;
        prop_assert!(verify(&secret, &changed, &signature).is_err());
    }

    #[test]
    fn any_other_secret_or_garbage_sign_fails(data in callback_data(), secret in secret(), other in secret(), garbage in "\\PC{0,48}") {
        prop_assume!(secret != other);
        prop_assert!(verify(&secret, &data, &sign(&other, &data)).is_err());
        prop_assume!(garbage.to_ascii_lowercase() != sign(&secret, &data));
        prop_assert!(verify(&secret, &data, &garbage).is_err());
    }

    #[test]
    fn parsing_any_data_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_callback_data(&data);
    }

    #[test]
    fn parsing_json_shaped_data_never_panics(text in "\\{(\"[a-z_]{1,12}\":(\"\\PC{0,12}\"|[0-9.eE+-]{1,8}|null|true|\\[\\]|\\{\\}|\\{\"biz_id\":\"[ -~]{0,20}\"\\}),?){0,8}\\}[ \\t\\r\\n]{0,3}[ -~]{0,3}") {
        let _ = parse_callback_data(text.as_bytes());
    }

    #[test]
    fn a_generated_callback_parses_and_any_non_space_byte_after_it_is_refused(
        data in callback_data(),
        spaces in "[ \\t\\r\\n]{0,4}",
        tail in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        prop_assert!(parse_callback_data(&data).is_ok());
        let padded = [data.as_slice(), spaces.as_bytes()].concat();
        prop_assert!(parse_callback_data(&padded).is_ok(), "trailing whitespace is allowed");
        prop_assume!(!matches!(tail[0], b' ' | b'\t' | b'\r' | b'\n'));
        let extended = [padded.as_slice(), tail.as_slice()].concat();
        prop_assert!(parse_callback_data(&extended).is_err());
    }

    #[test]
    fn biz_id_parsing_never_panics(text in "\\PC{0,300}") {
        let _ = BizId::parse(&text);
        let _ = BizId::from_signed(&text);
    }

    #[test]
    fn well_formed_biz_ids_parse_to_themselves(id in good_biz_id()) {
        let parsed = BizId::parse(&id).expect("well-formed");
        prop_assert_eq!(parsed.as_str(), id.as_str());
    }

    #[test]
    fn a_biz_id_with_a_foreign_character_is_refused(id in good_biz_id(), at in any::<prop::sample::Index>(), bad in "[^A-Za-z0-9_,-]") {
        let mut chars: Vec<char> = id.chars().collect();
        let comma = id.find(',').unwrap();
        let i = at.index(chars.len());
        prop_assume!(i != comma);
        chars[i] = bad.chars().next().unwrap();
        let broken: String = chars.into_iter().collect();
        prop_assert!(BizId::parse(&broken).is_err());
    }

    #[test]
    fn return_get_query_parsing_never_panics(query in "\\PC{0,200}") {
        let _ = biz_id_from_query(&query);
    }

    #[test]
    fn the_biz_id_faceid_appends_is_found_in_any_query(
        id in good_biz_id(),
        before in proptest::collection::vec(("[a-z]{1,6}", "[A-Za-z0-9%+]{0,8}"), 0..3),
        fragment in proptest::option::of("[a-z0-9]{0,8}"),
    ) {
        prop_assume!(before.iter().all(|(k, _)| k != "biz_id"));
        let mut url = "http://127.0.0.1:5000/faceid/return".to_owned();
        if !before.is_empty() {
            let pairs: Vec<String> = before.iter().map(|(k, v)| format!("{k}={v}")).collect();
            url = format!("{url}?{}", pairs.join("&"));
        }
        if let Some(fragment) = &fragment {
            url = format!("{url}#{fragment}");
        }
        let full = return_get_url(&url, &id).expect("a valid return_url");
        // What reaches the server: the query, without the fragment.
        let query = full.split('#').next().unwrap().split_once('?').unwrap().1;
        let parsed = biz_id_from_query(query).expect("found");
        prop_assert_eq!(parsed.as_str(), id.as_str());
    }

    #[test]
    fn two_different_biz_ids_in_one_query_are_refused(a in good_biz_id(), b in good_biz_id()) {
        prop_assume!(a != b);
        let query = format!("biz_id={a}&biz_id={b}");
        prop_assert!(biz_id_from_query(&query).is_err());
    }
}
