//! Whole `serve` instances with their own workers, on the real clock: two replicas racing over
//! one database, and a worker aborted mid-call whose jobs a restarted one finishes.
//!
//! Everything here runs in the test's process: the "aborted" worker is its tokio task
//! cancelled at an await point (its in-flight call's connection closes, nothing after the
//! await runs, its leases stay), which is what a crash looks like to the database and the
//! upstream, but not a real process death. The real `kill -9` of `serve` processes is
//! tests/faults/replicas.rs.
//!
//! These run in real time (short delays, and polling the store with a deadline), because the
//! point is the workers' own loops, leases and wake-ups, not a driven `run_once`.

use std::sync::Arc;
use std::time::Duration;

use faceid_receiver::Application;
use faceid_receiver::clock::{SharedClock, SystemClock};
use faceid_receiver::fetcher;
use faceid_receiver::store::{FetchState, Store};
use faceid_sim::{ResultScript, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

use crate::common::{Engine, TestDatabase};
use crate::fetcher_tests;
use crate::helpers::*;

fetcher_tests!(
    two_instances_racing_over_100_biz_ids_never_exceed_the_budget_or_overlap,
    a_worker_aborted_mid_call_leaves_jobs_a_restarted_worker_finishes,
    cancelling_an_application_stops_its_server_and_its_worker,
);

/// Fast real-time settings: no initial delay, short retries and slow lane, a lease a few
/// times the timeout. A flow timeout longer than the one-day window holds nothing back: the
/// last call comes at once (these tests are about leases and the budget, not the schedule).
const FAST: &[(&str, &str)] = &[
    ("APP__FETCH__INITIAL_DELAY", "0s"),
    ("APP__FETCH__RETRY_DELAY", "50ms"),
    ("APP__FETCH__NOT_STARTED_DELAY", "50ms"),
    ("APP__FETCH__FLOW_TIMEOUT", "48h"),
    ("APP__FETCH__POLL_INTERVAL", "20ms"),
    ("APP__FETCH__LEASE", "4s"),
    ("APP__MEGVII__TIMEOUT", "1s"),
];

/// Scripts covering every kind of follow-up, cycled over the biz_ids.
const SCRIPTS: &[&[&str]] = &[
    &["OK"],
    &["PROCESSING", "OK"],
    &["slow:40:PROCESSING", "slow:40:OK"],
    &["500", "OK"],
    &["concurrency", "PROCESSING", "OK"],
    &["NOT_STARTED"],
    &["slow:30:502"],
];

fn expected_state(script: &[&str]) -> FetchState {
    if script.last().is_some_and(|s| s.ends_with("OK")) {
        FetchState::Done
    } else {
        FetchState::Exhausted
    }
}

/// Polls until no job of `ids` is pending, or panics after `deadline`.
async fn wait_settled(store: &Arc<dyn Store>, ids: &[String], deadline: Duration) {
    let started = tokio::time::Instant::now();
    loop {
        let mut pending = 0;
        for id in ids {
            let record = store.get(id).await.unwrap().expect("record");
            if record.fetch.state == FetchState::Pending {
                pending += 1;
            }
        }
        if pending == 0 {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "{pending} jobs still pending after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn two_instances_racing_over_100_biz_ids_never_exceed_the_budget_or_overlap(engine: Engine) {
    faceid_receiver::telemetry::init_for_tests();
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::new(SimConfig::default(), clock.clone());
    let upstream = sim.bind("127.0.0.1:0").await.unwrap();
    let settings = settings(db.url(), &upstream.base_url(), FAST);

    // Two `serve` instances: each its own pool, HTTP listener and worker (random owner id).
    let shutdown = CancellationToken::new();
    let mut bases = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = faceid_receiver::startup::connect_store(&settings)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let app = Application::build_with(settings.clone(), store.clone(), clock.clone())
            .await
            .unwrap();
        bases.push(format!("http://{}", app.local_addr()));
        stores.push(store);
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
    }

    let ids: Vec<(String, &[&str])> = (0..100)
        .map(|i| {
            let script = SCRIPTS[i % SCRIPTS.len()];
            let spec = ResultScript::default().steps(script.iter().copied());
            (sim.mint_biz(spec).unwrap(), script)
        })
        .collect();

    // Every browser comes back three times, to either instance, all at once.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let gets = ids
        .iter()
        .flat_map(|(id, _)| (0..3).map(move |n| (id, n)))
        .map(|(id, n)| {
            let url = format!(
                "{}/faceid/return?biz_id={}",
                bases[(n + id.len()) % 2],
                encode(id)
            );
            let client = client.clone();
            async move {
                let response = client.get(url).send().await.unwrap();
                assert_eq!(response.status(), 303);
            }
        });
    futures_util::future::join_all(gets).await;

    let just_ids: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    wait_settled(&stores[0], &just_ids, Duration::from_secs(90)).await;
    shutdown.cancel();

    for (id, script) in &ids {
        let calls = sim.calls(id);
        assert!(
            calls.count <= 3,
            "{id} ({script:?}) saw {} calls",
            calls.count
        );
        assert_eq!(
            calls.max_in_flight, 1,
            "{id} ({script:?}) saw overlapping calls"
        );
        assert!(
            calls.overlapping().is_empty(),
            "{id} ({script:?}): call intervals overlap: {:?}",
            calls.calls
        );
        let record = stores[1].get(id).await.unwrap().unwrap();
        assert_eq!(
            record.fetch.state,
            expected_state(script),
            "{id} ({script:?}): {:?}",
            record.fetch
        );
        assert_eq!(
            record.fetch.calls_used as u64, calls.count,
            "{id}: counted calls are the calls made"
        );
    }
    let total: u64 = ids.iter().map(|(id, _)| sim.calls(id).count).sum();
    // A script that never ends in OK repeats its last step until the budget is spent.
    let expected: usize = ids
        .iter()
        .map(|(_, script)| {
            if expected_state(script) == FetchState::Done {
                script.len()
            } else {
                3
            }
        })
        .sum();
    assert_eq!(
        total, expected as u64,
        "each script used exactly the calls it needed"
    );
    for store in stores {
        store.close().await;
    }
}

async fn a_worker_aborted_mid_call_leaves_jobs_a_restarted_worker_finishes(engine: Engine) {
    faceid_receiver::telemetry::init_for_tests();
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::new(SimConfig::default(), clock.clone());
    let upstream = sim.bind("127.0.0.1:0").await.unwrap();
    let settings = settings(db.url(), &upstream.base_url(), FAST);
    let store = faceid_receiver::startup::connect_store(&settings)
        .await
        .unwrap();
    store.migrate().await.unwrap();

    // Jobs scheduled by an instance that is then stopped before following up.
    let app = Application::build_with(settings.clone(), store.clone(), clock.clone())
        .await
        .unwrap()
        .without_worker();
    let base = format!("http://{}", app.local_addr());
    let stop_http = CancellationToken::new();
    let served = tokio::spawn(app.run_until_stopped(stop_http.clone()));
    let ids: Vec<String> = (0..20)
        .map(|_| {
            sim.mint_biz(ResultScript::default().steps(["slow:400:PROCESSING", "OK"]))
                .unwrap()
        })
        .collect();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for id in &ids {
        let response = client
            .get(format!("{base}/faceid/return?biz_id={}", encode(id)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
    }
    stop_http.cancel();
    served.await.unwrap().unwrap();

    // Worker 1 starts, and its task is aborted while calls are in flight.
    let first = fetcher::Context::new(&settings, store.clone(), clock.clone())
        .unwrap()
        .with_owner("aborted");
    let aborted = tokio::spawn(fetcher::run(
        first,
        Arc::new(tokio::sync::Notify::new()),
        CancellationToken::new(),
    ));
    let started = tokio::time::Instant::now();
    while ids.iter().map(|id| sim.in_flight(id)).sum::<u64>() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "worker 1 never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    aborted.abort();
    let _ = aborted.await;
    let interrupted: Vec<&String> = ids.iter().filter(|id| sim.calls(id).count > 0).collect();
    assert!(!interrupted.is_empty());
    let started = tokio::time::Instant::now();
    while ids
        .iter()
        .map(|id| sim.calls(id).abandoned())
        .sum::<usize>()
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "aborting the worker cut off no call"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A restarted instance (fresh worker, new owner id) finishes everything, after the dead
    // worker's leases lapse.
    let app = Application::build_with(settings.clone(), store.clone(), clock.clone())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    wait_settled(&store, &ids, Duration::from_secs(60)).await;
    shutdown.cancel();

    for id in &ids {
        let calls = sim.calls(id);
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            record.fetch.state,
            FetchState::Done,
            "{id}: {:?}",
            record.fetch
        );
        assert_eq!(record.status, "OK");
        assert!(calls.count <= 3, "{id}: {} calls", calls.count);
        assert_eq!(
            calls.max_in_flight, 1,
            "{id}: a call overlapped the aborted one"
        );
        assert!(
            calls.overlapping().is_empty(),
            "{id}: call intervals overlap: {:?}",
            calls.calls
        );
        assert!(
            record.fetch.calls_used as u64 >= calls.count,
            "{id}: a made call was not counted"
        );
    }
    store.close().await;
}

async fn cancelling_an_application_stops_its_server_and_its_worker(engine: Engine) {
    faceid_receiver::telemetry::init_for_tests();
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let settings = settings(db.url(), "http://127.0.0.1:9", FAST);
    let store = faceid_receiver::startup::connect_store(&settings)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let app = Application::build_with(settings, store.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    let base = format!("http://{}/healthz", app.local_addr());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    assert_eq!(reqwest::get(&base).await.unwrap().status(), 200);

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("both tasks end");
    result.unwrap().expect("a clean stop");
    assert!(reqwest::get(&base).await.is_err(), "the listener is closed");
    store.close().await;
}
