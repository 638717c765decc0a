//! The push client against real HTTP servers on loopback: what it refuses (SSRF), what it
//! sends, and how much of an answer it reads.
//!
//! "Forbidden" targets here are real listening servers, so each refusal is checked both ways:
//! the attempt says `forbidden_address`, *and* the server saw no request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use faceid_receiver::clock::{Clock, SystemClock};
use faceid_receiver::push::client::{AttemptOutcome, FailureKind, KEPT_BODY_BYTES};
use faceid_receiver::push::signature::WebhookHeaders;
use faceid_receiver::push::target::{Forbidden, Resolver};
use faceid_receiver::push::{
    ClientSettings, EndpointSecret, PushClient, SigningKeys, Target, TargetPolicy, Verdict,
    Verifier,
};
use futures_util::stream;

/// Production's address policy, but with http allowed (the test servers have no TLS).
const STRICT: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_private: false,
};
/// Development's policy.
const OPEN: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_private: true,
};

/// One request as the server saw it.
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

/// A local server: `/hook` answers 204 and records the request; `/redirect` answers 307 to
/// `location`; `/stream` answers 200 with `stream_len` bytes, counting what it produced;
/// `/small` answers 400 with a short body; `/hang` never answers.
struct Server {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
    produced: Arc<AtomicUsize>,
}

impl Server {
    async fn start(location: Option<String>, stream_len: usize) -> Self {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let produced = Arc::new(AtomicUsize::new(0));
        let app = {
            let (seen, hits2, produced) = (seen.clone(), hits.clone(), produced.clone());
            Router::new()
                .route(
                    "/hook",
                    any(move |headers: HeaderMap, body: Bytes| {
                        let seen = seen.clone();
                        async move {
                            seen.lock().unwrap().push(Seen { headers, body });
                            StatusCode::NO_CONTENT
                        }
                    }),
                )
                .route(
                    "/redirect",
                    any(move || {
                        let location = location.clone().unwrap_or_default();
                        async move {
                            (
                                StatusCode::TEMPORARY_REDIRECT,
                                [(header::LOCATION, location)],
                            )
                        }
                    }),
                )
                .route(
                    "/stream",
                    any(move || {
                        let produced = produced.clone();
                        async move {
                            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                            let chunks = stream_len.div_ceil(chunk.len());
                            let body = stream::iter(0..chunks).map(move |_| {
                                produced.fetch_add(chunk.len(), Ordering::SeqCst);
                                Ok::<_, std::io::Error>(chunk.clone())
                            });
                            Response::new(Body::from_stream(body))
                        }
                    }),
                )
                .route(
                    "/small",
                    any(|| async { (StatusCode::BAD_REQUEST, "missing field: type") }),
                )
                .route(
                    "/hang",
                    get(std::future::pending::<()>).post(std::future::pending::<()>),
                )
                .layer(axum::middleware::from_fn({
                    let hits = hits2.clone();
                    move |request, next: axum::middleware::Next| {
                        let hits = hits.clone();
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            next.run(request).await.into_response()
                        }
                    }
                }))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            seen,
            hits,
            produced,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

use futures_util::StreamExt as _;

/// Resolves the names it was given, and no others.
struct StubResolver(HashMap<String, Vec<IpAddr>>);

impl Resolver for StubResolver {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let answer = self.0.get(&host).cloned().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such name in the stub")
        });
        Box::pin(async move { answer })
    }
}

fn stub(names: &[(&str, &str)]) -> Arc<StubResolver> {
    Arc::new(StubResolver(
        names
            .iter()
            .map(|(name, ip)| ((*name).to_owned(), vec![ip.parse().unwrap()]))
            .collect(),
    ))
}

fn client(policy: TargetPolicy) -> PushClient {
    client_with(policy, stub(&[]))
}

fn client_with(policy: TargetPolicy, resolver: Arc<StubResolver>) -> PushClient {
    let settings = ClientSettings {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        policy,
    };
    PushClient::with_resolver(settings, resolver).unwrap()
}

/// A target as development would register it (the strict client must still refuse it).
fn target(url: &str) -> Target {
    Target::parse(url, &OPEN).unwrap()
}

fn signed(body: &[u8]) -> (EndpointSecret, WebhookHeaders) {
    let secret = EndpointSecret::generate();
    let headers = SigningKeys::new(secret.clone()).sign("evt_test", SystemClock.now_ms(), body);
    (secret, headers)
}

fn forbidden(reason: Forbidden) -> AttemptOutcome {
    AttemptOutcome::Failed(FailureKind::Forbidden(reason))
}

#[tokio::test]
async fn loopback_literals_are_refused_without_a_request() {
    let server = Server::start(None, 0).await;
    let port = server.addr.port();
    let (_, headers) = signed(b"{}");
    let strict = client(STRICT);

    let cases = [
        (server.url("/hook"), Forbidden::Loopback),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            Forbidden::Loopback,
        ),
        (format!("http://[::1]:{port}/hook"), Forbidden::Loopback),
        (
            format!("http://2130706433:{port}/hook"),
            Forbidden::Loopback,
        ),
    ];
    // Off-loopback ranges (169.254.169.254, fd00:ec2::254, 10/8, …) are refused by the same
    // policy, unit-tested in `src/push/target.rs`. They are deliberately not *sent* here: if
    // the guard ever regressed, a test must not put a packet on a real network.
    for (url, reason) in cases {
        let attempt = strict.deliver(&target(&url), &headers, b"{}").await;
        assert_eq!(attempt.outcome, forbidden(reason), "{url}");
        assert_eq!(attempt.verdict(), Verdict::Retry, "{url}");
    }
    assert_eq!(server.hits(), 0, "no request reached the server");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
    let server = Server::start(None, 0).await;
    let port = server.addr.port();
    let (_, headers) = signed(b"{}");
    // The operating system's resolver for `localhost`, a stub for a name an attacker's DNS
    // points at loopback (and at the metadata service).
    let system = PushClient::new(ClientSettings {
        policy: STRICT,
        ..ClientSettings::default()
    })
    .unwrap();
    let rebinding = client_with(
        STRICT,
        stub(&[
            ("hooks.attacker.test", "127.0.0.1"),
            // Another loopback address: an off-loopback one (the metadata service) is never
            // dialled by a test, even to prove it refused (see the literal test above).
            ("meta.attacker.test", "127.0.0.2"),
        ]),
    );

    let by_system = system
        .deliver(
            &target(&format!("http://localhost:{port}/hook")),
            &headers,
            b"{}",
        )
        .await;
    let by_stub = rebinding
        .deliver(
            &target(&format!("http://hooks.attacker.test:{port}/hook")),
            &headers,
            b"{}",
        )
        .await;
    let to_metadata = rebinding
        .deliver(
            &target("http://meta.attacker.test/latest/meta-data/"),
            &headers,
            b"{}",
        )
        .await;

    assert_eq!(by_system.outcome, forbidden(Forbidden::Loopback));
    assert_eq!(by_stub.outcome, forbidden(Forbidden::Loopback));
    assert_eq!(to_metadata.outcome, forbidden(Forbidden::Loopback));
    assert_eq!(server.hits(), 0, "no request reached the server");
}

#[tokio::test]
async fn the_same_name_goes_through_when_private_targets_are_allowed() {
    let server = Server::start(None, 0).await;
    let port = server.addr.port();
    let body = br#"{"type":"verification.completed","data":{}}"#;
    let (secret, headers) = signed(body);
    let open = client_with(OPEN, stub(&[("hooks.merchant.test", "127.0.0.1")]));

    let attempt = open
        .deliver(
            &target(&format!("http://hooks.merchant.test:{port}/hook")),
            &headers,
            body,
        )
        .await;

    assert_eq!(attempt.verdict(), Verdict::Delivered, "{attempt:?}");
    assert_eq!(attempt.status(), Some(204));
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(&request.body[..], body);
    assert_eq!(request.headers[header::CONTENT_TYPE], "application/json");
    let got = WebhookHeaders::read(|name| request.headers.get(name)?.to_str().ok()).unwrap();
    assert_eq!(got, headers);
    assert_eq!(
        Verifier::new(vec![secret]).verify(&got, &request.body, SystemClock.now_ms()),
        Ok(0)
    );
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_never_followed() {
    // The redirect points at a second server that the client *could* reach (private targets
    // allowed, so the first one is reachable at all): following it would show as a hit there.
    let elsewhere = Server::start(None, 0).await;
    let server = Server::start(Some(elsewhere.url("/hook")), 0).await;
    let (_, headers) = signed(b"{}");

    let attempt = client(OPEN)
        .deliver(&target(&server.url("/redirect")), &headers, b"{}")
        .await;

    assert_eq!(attempt.status(), Some(307));
    assert_eq!(attempt.verdict(), Verdict::Retry);
    assert_eq!(server.hits(), 1);
    assert_eq!(elsewhere.hits(), 0, "the redirect was followed");
}

#[tokio::test]
async fn only_the_first_kib_of_an_answer_is_kept_and_a_huge_one_is_cut_off() {
    const HUGE: usize = 64 * 1024 * 1024;
    let server = Server::start(None, HUGE).await;
    let (_, headers) = signed(b"{}");
    let open = client(OPEN);

    let small = open
        .deliver(&target(&server.url("/small")), &headers, b"{}")
        .await;
    let huge = open
        .deliver(&target(&server.url("/stream")), &headers, b"{}")
        .await;

    assert_eq!(
        small.outcome,
        AttemptOutcome::Answered {
            status: 400,
            body: b"missing field: type".to_vec(),
            truncated: false
        }
    );
    match huge.outcome {
        AttemptOutcome::Answered {
            status,
            body,
            truncated,
        } => {
            assert_eq!(
                (status, body.len(), truncated),
                (200, KEPT_BODY_BYTES, true)
            );
        }
        other => panic!("expected an answer, got {other:?}"),
    }
    // Reading it all takes well under a second on loopback; the client stopped long before.
    let produced = server.produced.load(Ordering::SeqCst);
    assert!(produced < HUGE / 2, "the server produced {produced} bytes");
}

#[tokio::test]
async fn a_silent_endpoint_times_out_and_a_closed_port_is_a_connect_error() {
    let server = Server::start(None, 0).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (_, headers) = signed(b"{}");
    let impatient = PushClient::with_resolver(
        ClientSettings {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_millis(300),
            policy: OPEN,
        },
        stub(&[]),
    )
    .unwrap();

    let silent = impatient
        .deliver(&target(&server.url("/hang")), &headers, b"{}")
        .await;
    let refused = impatient
        .deliver(
            &target(&format!("http://127.0.0.1:{closed}/hook")),
            &headers,
            b"{}",
        )
        .await;
    let unknown = impatient
        .deliver(&target("http://no-such-name.test/hook"), &headers, b"{}")
        .await;

    assert_eq!(silent.outcome, AttemptOutcome::Failed(FailureKind::Timeout));
    assert_eq!(
        refused.outcome,
        AttemptOutcome::Failed(FailureKind::Connect)
    );
    assert_eq!(unknown.outcome, AttemptOutcome::Failed(FailureKind::Dns));
}

#[tokio::test]
async fn nothing_in_an_attempt_repeats_the_urls_path_or_query() {
    let (_, headers) = signed(b"{}");
    let url = "http://meta.attacker.test/SECRETPATH?token=SECRETQUERY";
    let strict = client_with(STRICT, stub(&[("meta.attacker.test", "127.0.0.1")]));

    let attempt = strict.deliver(&target(url), &headers, b"{}").await;

    assert_eq!(attempt.outcome, forbidden(Forbidden::Loopback));
    let shown = format!("{attempt:?} {} {:?}", attempt.code(), target(url));
    assert!(!shown.contains("SECRET"), "{shown}");
}
