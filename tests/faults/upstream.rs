//! Upstream faults never block callbacks: while every follow-up the worker makes hangs until
//! it times out, or answers 500 / 502 / CONCURRENCY_LIMIT_EXCEEDED, notify and return requests
//! to the same real `serve` process still answer promptly.
//!
//! The latency bound is generous (a functional assertion, not a performance target): far
//! below the upstream's hang, so a callback that waited for the worker would fail it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faceid_receiver::clock::{Clock, SharedClock, SystemClock};
use faceid_sim::{
    CallbackSpec, Encoding, ResultScript, SignedCallback, SimConfig, Simulator, post_callback,
    return_get,
};

use crate::common::{Engine, TestDatabase};
use crate::helpers::*;

/// Each callback must be answered within this while the worker is stuck.
const BOUND: Duration = Duration::from_secs(2);
/// The upstream hangs this long on `slow` steps; the client gives up after `megvii.timeout`.
const HANG: &str = "slow:6000:OK";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_callbacks_answer_promptly_while_the_upstream_misbehaves() {
    callbacks_answer_promptly_while_the_upstream_misbehaves(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_callbacks_answer_promptly_while_the_upstream_misbehaves() {
    callbacks_answer_promptly_while_the_upstream_misbehaves(Engine::Postgres).await;
}

async fn callbacks_answer_promptly_while_the_upstream_misbehaves(engine: Engine) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::new(SimConfig::default(), clock);
    let upstream = sim.bind("127.0.0.1:0").await.unwrap();
    let serve = Serve::start(
        db.url(),
        &[
            ("APP__MEGVII__BASE_URL", &upstream.base_url()),
            ("APP__MEGVII__TIMEOUT", "3s"),
            ("APP__FETCH__LEASE", "10s"),
            ("APP__FETCH__INITIAL_DELAY", "0s"),
            ("APP__FETCH__RETRY_DELAY", "100ms"),
            // Nothing held back, no ceiling: this test is about callbacks under upstream
            // trouble, not the schedule.
            ("APP__FETCH__FLOW_TIMEOUT", "48h"),
            ("APP__FETCH__MAX_CALLS_PER_SECOND", "10000"),
            ("APP__FETCH__POLL_INTERVAL", "20ms"),
        ],
    )
    .await;
    let client = client();
    let return_url = format!("{}/faceid/return", serve.base);
    let notify_url = format!("{}/faceid/notify", serve.base);

    // Phase 1: follow-ups that fail (500, 502) or are refused (concurrency limit), retried.
    let failing: [&str; 3] = ["500", "502", "concurrency"];
    let mut faulty = Vec::new();
    for i in 0..18 {
        let step = failing[i % failing.len()];
        let id = sim.mint_biz(ResultScript::default().steps([step])).unwrap();
        let answer = return_get(&client, &return_url, &id).await.unwrap();
        assert_eq!(answer.status, 303);
        faulty.push(id);
    }
    let mut latencies: Vec<(&str, Duration)> = Vec::new();
    let started = Instant::now();
    let mut round = 0;
    while faulty.iter().any(|id| sim.calls(id).count == 0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never called the upstream for every failing id"
        );
        latencies.extend(callback_round(&client, &notify_url, &return_url, &sim, round).await);
        round += 1;
    }

    // Phase 2: follow-ups that hang past the client's timeout.
    let mut stuck = Vec::new();
    for _ in 0..6 {
        let id = sim.mint_biz(ResultScript::default().steps([HANG])).unwrap();
        let answer = return_get(&client, &return_url, &id).await.unwrap();
        assert_eq!(answer.status, 303);
        stuck.push(id);
    }
    let in_flight = || stuck.iter().map(|id| sim.in_flight(id)).sum::<u64>();
    let started = Instant::now();
    while in_flight() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never called the upstream; calls per stuck id: {:?}; serve's last log \
             lines:\n{}",
            stuck
                .iter()
                .map(|id| sim.calls(id).count)
                .collect::<Vec<_>>(),
            serve.last_log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The worker is now waiting on the hung calls.
    for _ in 0..10 {
        latencies.extend(callback_round(&client, &notify_url, &return_url, &sim, round).await);
        round += 1;
    }
    // Still stuck afterwards: the callbacks above were answered while calls hung.
    assert!(
        in_flight() > 0,
        "the upstream calls ended before the callbacks did: the test proved nothing"
    );
    let worst = latencies.iter().max_by_key(|(_, d)| *d).unwrap();
    assert!(
        worst.1 < BOUND,
        "a {} took {:?} while the upstream hung (bound {BOUND:?})",
        worst.0,
        worst.1
    );
    let calls = sim.all_calls();
    eprintln!(
        "upstream faults ({engine:?}): {} callbacks, worst {:?} ({}), upstream saw {} calls",
        latencies.len(),
        worst.1,
        worst.0,
        calls.total
    );
    drop(serve);
}

/// Four callbacks at once — two notifies, a return POST, a return GET — each checked for
/// its answer and timed.
async fn callback_round(
    client: &reqwest::Client,
    notify_url: &str,
    return_url: &str,
    sim: &Simulator,
    round: usize,
) -> Vec<(&'static str, Duration)> {
    let requests = ["notify", "return POST", "return GET", "notify"].map(|kind| {
        let fresh = sim.mint_biz(ResultScript::default().steps([HANG])).unwrap();
        async move {
            let t = Instant::now();
            let status = match kind {
                "notify" => {
                    let (_, callback) = unique_notify(round);
                    post_callback(client, notify_url, &callback, Encoding::Form)
                        .await
                        .unwrap()
                        .status
                }
                "return POST" => {
                    let now_ms = SystemClock.now_ms();
                    let (_, data) = CallbackSpec::new("PROCESSING").build(now_ms);
                    let callback = SignedCallback::sign(SECRET, data);
                    post_callback(client, return_url, &callback, Encoding::Form)
                        .await
                        .unwrap()
                        .status
                }
                _ => return_get(client, return_url, &fresh).await.unwrap().status,
            };
            let expected = if kind == "notify" { 200 } else { 303 };
            assert_eq!(status, expected, "{kind}");
            (kind, t.elapsed())
        }
    });
    futures_util::future::join_all(requests).await
}
