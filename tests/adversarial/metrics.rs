//! `/metrics` cannot be grown by clients: request labels come from fixed sets, so made-up
//! methods and paths share series. Each test runs the real binary, because the metrics
//! recorder is process-wide and the other tests of this binary would add series meanwhile.

use std::net::SocketAddr;

use rand::Rng as _;
use rand::distr::Alphanumeric;

use crate::common::binary::{free_addr, http, start};

/// The series in a `/metrics` answer: its sample lines (comments and blanks are not series).
fn series(addr: SocketAddr) -> Vec<String> {
    let answer = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("GET /metrics");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").expect("a body");
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // `name{labels} value`: the value changes, the series does not.
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_owned()
        })
        .collect()
}

/// A random HTTP token of `len` upper-case letters (a syntactically valid method).
fn random_method(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

fn random_segment(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// One request of each kind a prober sends: a long made-up method on every kind of route
/// (callbacks, API, health, and a long path nobody routes).
fn probe_round(addr: SocketAddr) {
    let paths = [
        "/faceid/notify".to_owned(),
        "/faceid/return".to_owned(),
        "/api/v1/verifications".to_owned(),
        "/healthz".to_owned(),
        format!("/{}", random_segment(2_000)),
        format!("/api/v1/{}", random_segment(2_000)),
    ];
    for path in paths {
        let method = random_method(4_000);
        let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = http(addr, request.as_bytes()).expect("the server answers");
        assert!(answer.starts_with("HTTP/1.1 4"), "{path}: {answer}");
    }
}

#[test]
fn a_hundred_requests_with_made_up_methods_and_paths_add_no_series_to_metrics() {
    // Arrange: one round of every request kind first, and one scrape, so that the label
    // values a prober can reach (method "other", route "unmatched", their statuses, the
    // scrape's own series) exist before counting.
    let server = start(&[("APP__SERVER__RATE_LIMIT_PER_SECOND", "0")]);
    probe_round(server.addr);
    series(server.addr);
    let before = series(server.addr);

    // Act: 17 more rounds, 102 requests, each with a new 4000-letter method.
    for _ in 0..17 {
        probe_round(server.addr);
    }

    // Assert
    let after = series(server.addr);
    let added: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(
        added.is_empty(),
        "{} series added (first: {:.300})",
        added.len(),
        added.first().map(|s| s.as_str()).unwrap_or_default()
    );
    assert_eq!(after.len(), before.len());
    assert!(
        before.iter().any(|s| s.contains(r#"method="other""#)),
        "made-up methods are counted, under one label"
    );
}

#[test]
fn with_admin_listen_metrics_are_served_there_and_not_on_the_public_listener() {
    // Arrange
    let admin = free_addr();
    let server = start(&[("APP__SERVER__ADMIN_LISTEN", &admin.to_string())]);
    let get = |addr: SocketAddr, path: &str| {
        http(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}\n{}", server.log()))
    };

    // Act
    let public_metrics = get(server.addr, "/metrics");
    let admin_metrics = get(admin, "/metrics");
    let admin_api = get(admin, "/api/v1/verifications");
    let public_health = get(server.addr, "/healthz");
    let admin_health = get(admin, "/readyz");

    // Assert
    assert!(
        public_metrics.starts_with("HTTP/1.1 404"),
        "{public_metrics}"
    );
    assert!(public_metrics.contains(r#""error":"not_found""#));
    assert!(admin_metrics.starts_with("HTTP/1.1 200"), "{admin_metrics}");
    assert!(
        admin_metrics.contains("faceid_http_request_duration_seconds"),
        "the public listener's requests are counted: {admin_metrics}"
    );
    assert!(admin_api.starts_with("HTTP/1.1 404"), "{admin_api}");
    assert!(public_health.starts_with("HTTP/1.1 200"), "{public_health}");
    assert!(admin_health.starts_with("HTTP/1.1 200"), "{admin_health}");
}
