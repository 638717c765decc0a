//! The served OpenAPI document is the committed `openapi.json`, and it describes every
//! `/api/v1` route with the bearer scheme.

use serde_json::Value;

use crate::common::Engine;
use crate::helpers::{TestApp, spawn_app};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

async fn served(app: &TestApp) -> String {
    // No token: the document itself is public.
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.text().await.unwrap()
}

#[tokio::test]
async fn the_served_document_matches_the_committed_openapi_json() {
    let app = spawn_app(Engine::Sqlite, Default::default()).await.unwrap();
    let served = served(&app).await;
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(COMMITTED, &served).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == served,
        "openapi.json at the repository root differs from the document the service serves \
         (GET /api/v1/openapi.json). If the API change is intended, regenerate it with\n\
         \n    UPDATE_OPENAPI=1 cargo test --test api openapi\n\n\
         and commit the new openapi.json."
    );
}

#[tokio::test]
async fn the_document_covers_every_api_route_with_bearer_auth() {
    let app = spawn_app(Engine::Sqlite, Default::default()).await.unwrap();
    let doc: Value = serde_json::from_str(&served(&app).await).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/v1/verifications", "get"),
        ("/api/v1/verifications/{biz_id}", "get"),
        ("/api/v1/verifications/{biz_id}/fetch", "post"),
        ("/api/v1/verifications/{biz_id}/images/{name}", "get"),
        ("/api/v1/callbacks", "get"),
        ("/api/v1/raw-results", "post"),
        ("/api/v1/callbacks/replay", "post"),
        ("/api/v1/endpoints", "post"),
        ("/api/v1/endpoints", "get"),
        ("/api/v1/endpoints/{id}", "get"),
        ("/api/v1/endpoints/{id}", "patch"),
        ("/api/v1/endpoints/{id}", "delete"),
        ("/api/v1/endpoints/{id}/rotate-secret", "post"),
        ("/api/v1/endpoints/{id}/test", "post"),
        ("/api/v1/endpoints/{id}/replay", "post"),
        ("/api/v1/events/{id}/retry", "post"),
        ("/api/v1/events", "get"),
        ("/api/v1/events/stream", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} documents 401"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    for schema in [
        "VerificationView",
        "FetchView",
        "CallbackView",
        "VerificationPage",
        "CallbackPage",
        "ReplayView",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(error["error"].is_object() && error["message"].is_object());
}

#[tokio::test]
async fn the_document_states_what_the_push_routes_require() {
    // Arrange
    let app = spawn_app(Engine::Sqlite, Default::default()).await.unwrap();

    // Act
    let doc: Value = serde_json::from_str(&served(&app).await).unwrap();

    // Assert: a replay without `since` is refused, so the document says it is required.
    let since = query_param(&doc, "/api/v1/endpoints/{id}/replay", "post", "since");
    assert_eq!(since["in"], "query");
    assert_eq!(since["required"], true, "{since}");
    // POST and PATCH bodies differ: a new endpoint needs its url and takes no `enabled`
    // (both refused with 400), a PATCH may change any field, `enabled` included.
    let create = body_schema(&doc, "/api/v1/endpoints", "post");
    assert_eq!(create["required"], serde_json::json!(["url"]), "{create}");
    assert!(create["properties"].get("enabled").is_none(), "{create}");
    assert_eq!(create["properties"]["url"]["format"], "uri", "{create}");
    assert_eq!(create["additionalProperties"], false, "{create}");
    let patch = body_schema(&doc, "/api/v1/endpoints/{id}", "patch");
    assert!(patch.get("required").is_none(), "{patch}");
    assert!(patch["properties"].get("enabled").is_some(), "{patch}");
    assert_eq!(patch["properties"]["url"]["format"], "uri", "{patch}");
    // An endpoint's `events` are the event types this build knows, and nothing else.
    let schemas = &doc["components"]["schemas"];
    let items = &schemas["EndpointRequest"]["properties"]["events"]["items"];
    let reference = items["$ref"].as_str().expect("events items name a schema");
    let name = reference.rsplit('/').next().unwrap();
    let known: Vec<&str> = faceid_receiver::push::event::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(schemas[name]["enum"], serde_json::json!(known), "{items}");
}

#[tokio::test]
async fn the_documented_patterns_admit_exactly_what_the_service_reads() {
    // Arrange
    let app = spawn_app(Engine::Sqlite, Default::default()).await.unwrap();

    // Act
    let doc: Value = serde_json::from_str(&served(&app).await).unwrap();

    // Assert: a `since` pattern admits what the service reads as a time and nothing it
    // refuses; the list's `since` is read the same way and says so with the same pattern.
    let since = query_param(&doc, "/api/v1/endpoints/{id}/replay", "post", "since");
    let pattern = since["schema"]["pattern"]
        .as_str()
        .expect("since has a pattern");
    let list_since = query_param(&doc, "/api/v1/verifications", "get", "since");
    assert_eq!(list_since["schema"]["pattern"], pattern, "{list_since}");
    let pattern = regex::Regex::new(pattern).unwrap();
    for time in [
        "1795392000000",
        "0",
        "-1",
        "2026-11-23T00:00:00Z",
        "2026-11-23t08:00:00.123456789+08:00",
        "2026-11-23 08:00:00-05:30",
    ] {
        assert!(pattern.is_match(time), "{time} is a time");
        assert!(faceid_receiver::clock::parse_time(time).is_some(), "{time}");
    }
    for junk in [
        "",
        "yesterday",
        "2026-11-23",
        "2026-11-23T00:00Z",
        "1e3",
        " 1795392000000",
        "99999999999999999999",
    ] {
        assert!(!pattern.is_match(junk), "{junk:?} is not a time");
        assert!(
            faceid_receiver::clock::parse_time(junk).is_none(),
            "{junk:?}"
        );
    }
    // Free text the service refuses with control characters says so, with a pattern that
    // admits exactly the other characters (`char::is_control`).
    let create = body_schema(&doc, "/api/v1/endpoints", "post");
    let raw = body_schema(&doc, "/api/v1/raw-results", "post");
    for (schema, field) in [(&create, "description"), (&raw, "biz_no")] {
        let pattern = schema["properties"][field]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{field} has a pattern: {schema}"));
        let pattern = regex::Regex::new(pattern).unwrap();
        for c in (0..0x3000)
            .chain([0xFEFF, 0x1F600])
            .filter_map(char::from_u32)
        {
            assert_eq!(
                pattern.is_match(&format!("a{c}b")),
                !c.is_control(),
                "{field}: U+{:04X}",
                c as u32
            );
        }
    }
}

/// The documented query parameter `name` of an operation.
fn query_param<'d>(doc: &'d Value, path: &str, method: &str, name: &str) -> &'d Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} documents {name}"))
}

/// The schema an operation's JSON body names.
fn body_schema(doc: &Value, path: &str, method: &str) -> Value {
    let reference =
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} names its body schema"));
    let name = reference.rsplit('/').next().unwrap();
    doc["components"]["schemas"][name].clone()
}
