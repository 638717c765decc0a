//! `kill -9` of the real `serve` while its dispatcher is pushing: no event is lost. Every
//! acknowledged final result has its `verification.completed` event, and after a restart on
//! the same database every event reaches the endpoint (at least once; a delivery cut short
//! by the kill goes out again with the same `webhook-id`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use faceid_receiver::store::NewEndpoint;

use crate::common::{self, Engine, TestDatabase};
use crate::helpers::*;

/// Senders posting at once: few, so that this test leaves CPU to the timing-sensitive
/// replica test running beside it in this binary.
const CONCURRENCY: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_no_event_is_lost_when_serve_is_killed_while_pushing() {
    no_event_is_lost_when_serve_is_killed_while_pushing(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_no_event_is_lost_when_serve_is_killed_while_pushing() {
    no_event_is_lost_when_serve_is_killed_while_pushing(Engine::Postgres).await;
}

/// A slow local endpoint: every push takes 100 ms to answer 200; it keeps each push's
/// `webhook-id` and biz_id.
#[derive(Clone, Default)]
struct SlowEndpoint {
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl SlowEndpoint {
    async fn start() -> (Self, String) {
        let endpoint = Self::default();
        let state = endpoint.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let id = headers["webhook-id"].to_str().unwrap().to_owned();
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let biz_id = event["data"]["biz_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    state.seen.lock().unwrap().push((id, biz_id));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (endpoint, url)
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&[(String, String)]) -> bool,
    ) {
        let start = Instant::now();
        while !pred(&self.seen()) {
            assert!(start.elapsed() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn no_event_is_lost_when_serve_is_killed_while_pushing(engine: Engine) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let (endpoint, url) = SlowEndpoint::start().await;
    let store = common::connect_migrated(db.url()).await;
    store
        .create_endpoint(
            &NewEndpoint {
                id: "ep_kill9".into(),
                url,
                events: vec!["verification.completed".into()],
                include_pii: false,
                description: None,
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                now: 0,
            },
            10,
        )
        .await
        .unwrap()
        .unwrap();
    // Short timeouts make a short lease (5 s beyond them): what a killed dispatcher held is
    // taken over soon after the restart.
    let push = [
        ("APP__PUSH__POLL_INTERVAL", "50ms"),
        ("APP__PUSH__CONNECT_TIMEOUT", "500ms"),
        ("APP__PUSH__TIMEOUT", "1s"),
        ("APP__PUSH__CONCURRENCY", "2"),
    ];
    let mut serve = Serve::start(db.url(), &push).await;
    let load = NotifyLoad::start(&serve.base, CONCURRENCY);
    // Pushing is slower than accepting (two at a time, 100 ms each): the kill comes while
    // deliveries are in flight and many events are still waiting.
    endpoint
        .wait_for("the first pushes", Duration::from_secs(60), |seen| {
            seen.len() >= 10
        })
        .await;
    serve.kill();
    let killed_at = Instant::now();
    load.wait_for("refused connections", Duration::from_secs(30), |sent| {
        sent.iter().filter(|s| s.started > killed_at).count() >= CONCURRENCY
    })
    .await;
    let sent = load.stop().await;
    let acked: HashSet<String> = sent
        .iter()
        .filter(|s| s.is_2xx())
        .map(|s| s.biz_id.clone())
        .collect();
    let pushed_before = endpoint.seen().len();
    assert!(
        pushed_before < acked.len(),
        "the kill came mid-dispatch: {pushed_before} pushed of {} acknowledged",
        acked.len()
    );

    let _serve = Serve::start(db.url(), &push).await;
    endpoint
        .wait_for(
            "every acknowledged outcome pushed",
            Duration::from_secs(120),
            |seen| {
                let pushed: HashSet<&str> =
                    seen.iter().map(|(_, biz_id)| biz_id.as_str()).collect();
                acked.iter().all(|b| pushed.contains(b.as_str()))
            },
        )
        .await;
    let seen = endpoint.seen();
    let mut ids_by_biz: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (id, biz_id) in &seen {
        ids_by_biz.entry(biz_id).or_default().insert(id);
    }
    assert!(
        ids_by_biz.values().all(|ids| ids.len() == 1),
        "one event per outcome, every attempt with its webhook-id"
    );
    let repeats = seen.len() - ids_by_biz.len();
    store.close().await;
    eprintln!(
        "push kill -9 ({engine:?}): {} acknowledged, {pushed_before} pushed before the kill, \
         all pushed after the restart ({repeats} pushed twice: cut short by the kill)",
        acked.len()
    );
}
