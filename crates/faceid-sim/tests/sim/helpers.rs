//! Shared set-up: a simulator on 127.0.0.1:0 with a manual clock, a get_result caller, and an
//! echo server that records what callbacks arrive, byte for byte.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use faceid_protocol::clock::ManualClock;
use faceid_sim::{SimConfig, SimServer, Simulator};
use serde_json::Value;
use tokio::sync::mpsc;

/// 2024-01-01T00:00:00Z: a fixed "now" so times in assertions are readable.
pub const T0_MS: i64 = 1_704_067_200_000;
pub const KEY: &str = "dev-key";
pub const SECRET: &str = "dev-secret";

pub struct TestSim {
    pub server: SimServer,
    pub clock: ManualClock,
    pub client: reqwest::Client,
}

pub async fn spawn_sim() -> TestSim {
    let clock = ManualClock::new(T0_MS);
    let sim = Simulator::new(SimConfig::default(), Arc::new(clock.clone()));
    let server = sim.bind("127.0.0.1:0").await.expect("bind the simulator");
    let client = faceid_sim::http_client().expect("client");
    TestSim {
        server,
        clock,
        client,
    }
}

/// One answer: status, the JSON body (or `Value::Null` if it is not JSON) and the raw text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
}

impl Answer {
    pub fn error_message(&self) -> &str {
        self.json["error_message"].as_str().unwrap_or("<none>")
    }
}

impl TestSim {
    /// Calls `path` (`/faceid/lite/get_result` or the RAW one) with these query pairs.
    pub async fn call(&self, path: &str, query: &[(&str, &str)]) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.server.base_url()))
            .query(query)
            .send()
            .await
            .expect("simulator answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, json, text }
    }

    /// A well-formed Lite get_result for `biz_id`, plus `extra` query pairs.
    pub async fn get_result(&self, biz_id: &str, extra: &[(&str, &str)]) -> Answer {
        let mut query = vec![("api_key", KEY), ("api_secret", SECRET), ("biz_id", biz_id)];
        query.extend_from_slice(extra);
        self.call("/faceid/lite/get_result", &query).await
    }

    /// A well-formed RAW get_result for `token`, plus `extra` query pairs.
    pub async fn raw_get_result(&self, token: &str, extra: &[(&str, &str)]) -> Answer {
        let mut query = vec![("api_key", KEY), ("api_secret", SECRET), ("token", token)];
        query.extend_from_slice(extra);
        self.call("/faceid/lite/raw/get_result", &query).await
    }
}

/// What reached the echo server.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub method: Method,
    pub uri: Uri,
    pub content_type: Option<String>,
    pub body: Bytes,
}

pub struct Echo {
    pub base_url: String,
    pub arrivals: mpsc::UnboundedReceiver<Arrival>,
}

/// An HTTP server that records every request and answers like a return_url would:
/// `303 See Other` to `/done` for GET, `200 stored` for anything else.
pub async fn spawn_echo() -> Echo {
    let (tx, arrivals) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let is_get = method == Method::GET;
                // Sent before answering, so the arrival is there once the client has its answer.
                let _ = tx.send(Arrival {
                    method,
                    uri,
                    content_type,
                    body,
                });
                let response: Response = if is_get {
                    (
                        StatusCode::SEE_OTHER,
                        [(header::LOCATION, "/done?status=PENDING")],
                    )
                        .into_response()
                } else {
                    (StatusCode::OK, "stored").into_response()
                };
                response
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let base_url = format!("http://{}", listener.local_addr().expect("echo addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Echo { base_url, arrivals }
}

/// Decodes an `application/x-www-form-urlencoded` body into byte-exact `(name, value)` pairs
/// (form_urlencoded's own parser decodes lossily into `str`, which would hide non-UTF-8).
pub fn form_pairs(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut parts = pair.splitn(2, |&b| b == b'=');
            let name = decode_form_component(parts.next().unwrap_or_default());
            let value = decode_form_component(parts.next().unwrap_or_default());
            (
                String::from_utf8(name).expect("field names are ASCII"),
                value,
            )
        })
        .collect()
}

fn decode_form_component(raw: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space).collect()
}

/// `data` and `sign` from whichever encoding arrived.
pub async fn data_and_sign(arrival: &Arrival) -> (Vec<u8>, String) {
    let content_type = arrival.content_type.clone().unwrap_or_default();
    let (data, sign) = if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs = form_pairs(&arrival.body);
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        (field("data"), field("sign"))
    } else if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&content_type).expect("boundary");
        let stream = axum::body::Body::from(arrival.body.clone()).into_data_stream();
        let mut multipart = multer::Multipart::new(stream, boundary);
        let (mut data, mut sign) = (None, None);
        while let Some(field) = multipart.next_field().await.expect("multipart field") {
            let name = field.name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.expect("field bytes").to_vec();
            match name.as_str() {
                "data" => data = Some(bytes),
                "sign" => sign = Some(bytes),
                _ => {}
            }
        }
        (data, sign)
    } else if content_type.starts_with("application/json") {
        let body: Value = serde_json::from_slice(&arrival.body).expect("JSON body");
        let text = |name: &str| body[name].as_str().map(|s| s.as_bytes().to_vec());
        (text("data"), text("sign"))
    } else {
        panic!("unexpected content type {content_type:?}");
    };
    let sign = String::from_utf8(sign.expect("a sign field")).expect("sign is text");
    (data.expect("a data field"), sign)
}
