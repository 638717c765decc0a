//! Conformance: `tests/vectors/callbacks.json` holds deliveries and the answers FaceID's rules
//! demand, computed independently of this crate by `tests/vectors/generate.py` (Python's
//! hashlib, and a pure-Python SHA-1 for the length-extension forgery).

use base64::Engine as _;
use serde_json::Value;

use crate::helpers::*;

async fn every_vector_gets_its_expected_answer(engine: crate::common::Engine) {
    let vectors: Value = serde_json::from_str(include_str!("../vectors/callbacks.json")).unwrap();
    let secret: &'static str = Box::leak(
        vectors["secret"]
            .as_str()
            .unwrap()
            .to_owned()
            .into_boxed_str(),
    );
    let Some(app) = spawn_app(
        engine,
        Options {
            secret,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let list = vectors["vectors"].as_array().unwrap();
    assert!(list.len() >= 15);
    for v in list {
        let name = v["name"].as_str().unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["body_base64"].as_str().unwrap())
            .unwrap();
        let response = app
            .post("/faceid/notify", v["content_type"].as_str().unwrap(), body)
            .await;
        let expect = &v["expect"];
        assert_eq!(
            response.status().as_u16() as u64,
            expect["status"].as_u64().unwrap(),
            "vector {name:?}"
        );
        let answer: Value = response.json().await.unwrap();
        if let Some(code) = expect["error"].as_str() {
            assert_eq!(answer["error"], code, "vector {name:?}");
        }
        if let Some(biz_id) = expect["biz_id"].as_str() {
            assert_eq!(answer["biz_id"], biz_id, "vector {name:?}");
            assert_eq!(app.record(biz_id).await["signed"], true, "vector {name:?}");
        }
    }
    let journal = app.api_json("/callbacks?limit=200").await;
    assert_eq!(
        journal["items"].as_array().unwrap().len(),
        list.len(),
        "every vector was journaled"
    );
}

#[tokio::test]
async fn conformance_vectors_on_sqlite() {
    every_vector_gets_its_expected_answer(crate::common::Engine::Sqlite).await;
}

#[tokio::test]
async fn conformance_vectors_on_postgres() {
    every_vector_gets_its_expected_answer(crate::common::Engine::Postgres).await;
}
