//! The callback sender, checked on the receiving side: what arrives verifies with
//! `protocol::verify` (or, for forgeries, is refused by the receiver's rules).

use faceid_protocol::payload::{DataError, parse_callback_data};
use faceid_protocol::{SignatureError, Status, verify};
use faceid_sim::sender::DEFAULT_EXTENSION_TAIL;
use faceid_sim::{
    CallbackSpec, Encoding, Forgery, SendError, SignedCallback, http_client, post_callback,
    return_get,
};

use crate::helpers::{SECRET, T0_MS, data_and_sign, spawn_echo};

fn signed_ok() -> (String, SignedCallback) {
    let (biz_id, data) = CallbackSpec::new("OK").biz_no("order-7").build(T0_MS);
    (biz_id, SignedCallback::sign(SECRET, data))
}

#[tokio::test]
async fn every_encoding_delivers_a_callback_the_receiver_verifies() {
    let mut echo = spawn_echo().await;
    let client = http_client().unwrap();
    let expected_type = [
        (Encoding::Form, "application/x-www-form-urlencoded"),
        (Encoding::Multipart, "multipart/form-data"),
        (Encoding::Json, "application/json"),
    ];
    for (encoding, content_type) in expected_type {
        let (biz_id, callback) = signed_ok();

        let delivery = post_callback(
            &client,
            &format!("{}/faceid/notify", echo.base_url),
            &callback,
            encoding,
        )
        .await
        .unwrap();
        let arrival = echo.arrivals.recv().await.unwrap();
        let (data, sign) = data_and_sign(&arrival).await;

        assert_eq!(
            (delivery.status, delivery.body.as_str()),
            (200, "stored"),
            "{encoding:?}"
        );
        assert_eq!(arrival.method, "POST");
        assert!(
            arrival
                .content_type
                .as_deref()
                .unwrap_or_default()
                .starts_with(content_type),
            "{encoding:?}"
        );
        assert_eq!(data, callback.data, "{encoding:?}: data arrives byte-exact");
        assert_eq!(verify(SECRET, &data, &sign), Ok(()), "{encoding:?}");
        let parsed = parse_callback_data(&data).unwrap();
        assert_eq!(parsed.biz_id.as_str(), biz_id);
        assert_eq!(parsed.fields.status, Status::Ok);
        assert_eq!(parsed.fields.biz_no.as_deref(), Some("order-7"));
    }
}

#[tokio::test]
async fn forgeries_arrive_and_are_refused_by_the_receivers_checks() {
    let mut echo = spawn_echo().await;
    let client = http_client().unwrap();
    let (_, original) = signed_ok();
    let url = format!("{}/faceid/notify", echo.base_url);
    for encoding in [Encoding::Form, Encoding::Multipart] {
        for forgery in [
            Forgery::BadSign,
            Forgery::Tampered,
            Forgery::LengthExtension,
        ] {
            let forged = original.forge(SECRET, forgery, None);

            post_callback(&client, &url, &forged, encoding)
                .await
                .unwrap();
            let (data, sign) = data_and_sign(&echo.arrivals.recv().await.unwrap()).await;

            assert_eq!(
                (&data, &sign),
                (&forged.data, &forged.sign),
                "{forgery} over {encoding:?} arrives intact"
            );
            match forgery {
                Forgery::BadSign | Forgery::Tampered => {
                    assert_eq!(
                        verify(SECRET, &data, &sign),
                        Err(SignatureError::Mismatch),
                        "{forgery}"
                    );
                }
                Forgery::LengthExtension => {
                    // The sign is valid; only the strict envelope stops it.
                    assert_eq!(verify(SECRET, &data, &sign), Ok(()));
                    assert!(data.ends_with(DEFAULT_EXTENSION_TAIL.as_bytes()));
                    assert_eq!(parse_callback_data(&data).unwrap_err(), DataError::NotUtf8);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_tampered_json_body_fails_verification_and_a_length_extension_cannot_be_json() {
    let mut echo = spawn_echo().await;
    let client = http_client().unwrap();
    let (_, original) = signed_ok();
    let url = format!("{}/faceid/notify", echo.base_url);

    post_callback(
        &client,
        &url,
        &original.forge(SECRET, Forgery::Tampered, None),
        Encoding::Json,
    )
    .await
    .unwrap();
    let (data, sign) = data_and_sign(&echo.arrivals.recv().await.unwrap()).await;
    let extended = original.forge(SECRET, Forgery::LengthExtension, None);
    let refused = post_callback(&client, &url, &extended, Encoding::Json).await;

    assert_eq!(verify(SECRET, &data, &sign), Err(SignatureError::Mismatch));
    assert!(
        matches!(refused, Err(SendError::NotUtf8ForJson)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_seed_vector_is_sent_verbatim_and_signed() {
    let mut echo = spawn_echo().await;
    let client = http_client().unwrap();
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/seed_get_result_ok.json"
    ))
    .unwrap();

    post_callback(
        &client,
        &echo.base_url,
        &SignedCallback::sign(SECRET, seed.clone()),
        Encoding::Form,
    )
    .await
    .unwrap();
    let (data, sign) = data_and_sign(&echo.arrivals.recv().await.unwrap()).await;

    assert_eq!(data, seed);
    assert_eq!(verify(SECRET, &data, &sign), Ok(()));
}

#[tokio::test]
async fn return_get_appends_biz_id_and_does_not_follow_the_redirect() {
    let mut echo = spawn_echo().await;
    let client = http_client().unwrap();
    let biz_id = "1704067200,52b13fb5-8dfb-4537-a62b-a641d5e929f1";

    let delivery = return_get(
        &client,
        &format!("{}/faceid/return?a=b#frag", echo.base_url),
        biz_id,
    )
    .await
    .unwrap();
    let arrival = echo.arrivals.recv().await.unwrap();

    assert_eq!(arrival.method, "GET");
    assert_eq!(arrival.uri.path(), "/faceid/return");
    assert_eq!(
        arrival.uri.query(),
        Some(format!("a=b&biz_id={biz_id}").as_str())
    );
    assert!(arrival.body.is_empty(), "no signature, no result");
    assert_eq!(delivery.status, 303);
    assert_eq!(delivery.location.as_deref(), Some("/done?status=PENDING"));
    assert!(
        echo.arrivals.try_recv().is_err(),
        "the redirect was not followed"
    );
}

#[test]
fn a_generated_callback_omits_outcome_sections_while_processing() {
    let (biz_id, data) = CallbackSpec::new("PROCESSING").build(T0_MS);

    let parsed = parse_callback_data(data.as_bytes()).unwrap();

    assert!(
        biz_id.starts_with(&format!("{},", T0_MS / 1000)),
        "minted from the given time: {biz_id}"
    );
    assert_eq!(parsed.fields.status, Status::Processing);
    assert_eq!(
        (parsed.fields.liveness, parsed.fields.confidence),
        (None, None)
    );
}
