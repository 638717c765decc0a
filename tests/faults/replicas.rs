//! Three real `serve` replicas on one PostgreSQL database, the FaceID simulator as their
//! upstream, replicas `kill -9`ed and restarted while follow-ups are in flight.
//!
//! Each kill is aimed: while a slow get_result call is in flight, the replica holding that
//! job's lease (its worker's owner id, from its log) is killed, so the call is cut off
//! mid-flight. Asserted: the kills happened, at least one call was cut off (the simulator
//! records it as abandoned when the dead replica's connection closes), and for every biz_id:
//! at most 3 get_result calls reached the upstream, no two call intervals overlapped,
//! abandoned calls included (a killed replica's call can't overlap its successor's because the
//! successor waits for the lease to lapse, and a call leaves only while the lease outlives
//! `megvii.timeout` and a margin, see `fetcher/job.rs`), every call was
//! counted before it was made (`calls reached upstream <= calls_used <= 3`), and every result
//! that was reachable is stored: a follow-up ends `done` with the upstream's final status, or
//! — when the script never ends or a kill lost the answer — only after spending the whole
//! budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faceid_receiver::clock::{SharedClock, SystemClock};
use faceid_receiver::store::FetchState;
use faceid_sim::{ResultScript, SimConfig, Simulator, return_get};

use crate::common::{self, Engine, TestDatabase};
use crate::helpers::*;

const IDS: usize = 40;
const KILLS: usize = 6;

/// Cycled over the biz_ids.
const SCRIPTS: &[&[&str]] = &[
    &["OK"],
    &["PROCESSING", "OK"],
    &["slow:600:PROCESSING", "slow:600:OK"],
    &["500", "OK"],
    &["concurrency", "slow:400:OK"],
    &["NOT_STARTED"],
    &["slow:1500:OK"],
    &["502", "PROCESSING", "OK"],
];

fn ends_ok(script: &[&str]) -> bool {
    script.last().is_some_and(|s| s.ends_with("OK")) && !script.iter().any(|s| s == &"slow:1500:OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_replicas_killed_during_follow_ups_keep_the_budget() {
    let Some(db) = TestDatabase::create(Engine::Postgres).await else {
        return;
    };
    let test_started = Instant::now();
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::new(SimConfig::default(), clock);
    let upstream = sim.bind("127.0.0.1:0").await.unwrap();
    let base_url = upstream.base_url();
    let env: Vec<(&str, &str)> = vec![
        ("APP__MEGVII__BASE_URL", &base_url),
        ("APP__MEGVII__TIMEOUT", "1s"),
        ("APP__FETCH__LEASE", "4s"),
        ("APP__FETCH__INITIAL_DELAY", "0s"),
        ("APP__FETCH__RETRY_DELAY", "200ms"),
        // No slow lane and nothing held back (a flow timeout beyond the one-day window), no
        // call-rate ceiling: this test is about kills and the budget, not the schedule.
        ("APP__FETCH__NOT_STARTED_DELAY", "200ms"),
        ("APP__FETCH__FLOW_TIMEOUT", "48h"),
        ("APP__FETCH__MAX_CALLS_PER_SECOND", "10000"),
        ("APP__FETCH__POLL_INTERVAL", "50ms"),
    ];

    // The first replica migrates; then the other two.
    let mut replicas = vec![Serve::start(db.url(), &env).await];
    let (b, c) = tokio::join!(Serve::start(db.url(), &env), Serve::start(db.url(), &env));
    replicas.push(b);
    replicas.push(c);

    let ids: Vec<(String, &[&str])> = (0..IDS)
        .map(|i| {
            let script = SCRIPTS[i % SCRIPTS.len()];
            let spec = ResultScript::default()
                .steps(script.iter().copied())
                .biz_no(format!("replicas-{i}"));
            (sim.mint_biz(spec).unwrap(), script)
        })
        .collect();

    // Each browser comes back twice, to two different replicas.
    let client = client();
    let gets = ids.iter().enumerate().flat_map(|(i, (id, _))| {
        let client = client.clone();
        [i, i + 1].map(|r| {
            let url = format!("{}/faceid/return", replicas[r % 3].base);
            let (client, id) = (client.clone(), id.clone());
            async move {
                let answer = return_get(&client, &url, &id).await.unwrap();
                assert_eq!(answer.status, 303);
            }
        })
    });
    futures_util::future::join_all(gets).await;

    // Kill the replica making a slow call while the call is in flight; restart it at once.
    let store = common::connect_migrated(db.url()).await;
    let jobs = sqlx::PgPool::connect(db.url()).await.unwrap();
    let mut kills = 0;
    for _ in 0..KILLS {
        let Some(r) = replica_in_a_slow_call(&sim, &ids, &jobs, &replicas).await else {
            break; // no slow call left to cut off
        };
        replicas[r].kill();
        kills += 1;
        replicas[r] = Serve::start(db.url(), &env).await;
    }
    jobs.close().await;
    assert!(kills > 0, "no replica was killed during a call");

    // Wait until no follow-up is pending.
    let deadline = Duration::from_secs(45);
    let settling = Instant::now();
    loop {
        let mut pending = 0;
        for (id, _) in &ids {
            let record = store.get(id).await.unwrap().expect("record");
            if record.fetch.state == FetchState::Pending {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        assert!(
            settling.elapsed() < deadline,
            "{pending} follow-ups still pending after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for replica in &mut replicas {
        assert!(replica.is_running(), "a replica exited on its own");
    }

    let mut done = 0;
    let mut lost_to_kills = 0;
    for (id, script) in &ids {
        let calls = sim.calls(id);
        let record = store.get(id).await.unwrap().unwrap();
        let label = format!("{id} {script:?} calls {} {:?}", calls.count, record.fetch);
        assert!(calls.count <= 3, "{label}: more than 3 calls");
        assert!(
            calls.overlapping().is_empty(),
            "{label}: overlapping calls {:?} in {:?}",
            calls.overlapping(),
            calls.calls
        );
        assert!(
            calls.count <= record.fetch.calls_used as u64 && record.fetch.calls_used <= 3,
            "{label}: a call was made without being counted first"
        );
        match record.fetch.state {
            FetchState::Done => {
                done += 1;
                assert!(ends_ok(script), "{label}: done without a final result");
                assert_eq!(record.status, "OK", "{label}");
                assert!(record.result.is_some(), "{label}: result stored");
            }
            FetchState::Exhausted => {
                assert_eq!(
                    record.fetch.calls_used, 3,
                    "{label}: gave up with budget left"
                );
                if ends_ok(script) {
                    // Reachable, but a kill lost the answer that carried it.
                    lost_to_kills += 1;
                }
            }
            other => panic!("{label}: unexpected end state {other:?}"),
        }
    }
    let reachable = ids.iter().filter(|(_, s)| ends_ok(s)).count();
    // Without kills each script takes exactly this many calls: the surplus is calls whose
    // answer died with a killed replica and had to be made again after the lease lapsed.
    let undisturbed: u64 = ids
        .iter()
        .map(|(_, s)| if ends_ok(s) { s.len() as u64 } else { 3 })
        .sum();
    let total_calls: u64 = ids.iter().map(|(id, _)| sim.calls(id).count).sum();
    let cut_off: usize = ids.iter().map(|(id, _)| sim.calls(id).abandoned()).sum();
    assert!(
        cut_off > 0,
        "{kills} kills cut off no call mid-flight: the kills tested nothing"
    );
    assert!(
        lost_to_kills <= kills * 4,
        "{lost_to_kills} reachable results lost to {kills} kills"
    );
    store.close().await;
    eprintln!(
        "3 replicas: {IDS} biz_ids, {kills} kills, {cut_off} calls cut off mid-flight, {total_calls} upstream calls ({} more than undisturbed), \
         {done}/{reachable} reachable results stored ({lost_to_kills} lost with a killed replica after \
         spending the budget); {:?}",
        total_calls as i64 - undisturbed as i64,
        test_started.elapsed()
    );
}

/// Waits (up to 10 s) for a get_result call that is in flight with at least 300 ms of its
/// scripted delay still to go, and returns the index of the replica whose worker holds that
/// job's lease: killing it cuts the call off. `None` if no such call comes.
async fn replica_in_a_slow_call(
    sim: &Simulator,
    ids: &[(String, &[&str])],
    jobs: &sqlx::PgPool,
    replicas: &[Serve],
) -> Option<usize> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let now = sim.now_ms();
        let slow = ids.iter().map(|(id, _)| id).find(|id| {
            sim.calls(id)
                .calls
                .last()
                .is_some_and(|c| c.ended_ms.is_none() && c.at_ms + c.delay_ms as i64 - now >= 300)
        });
        if let Some(id) = slow {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT lease_owner FROM fetch_jobs WHERE biz_id = $1")
                    .bind(id)
                    .fetch_one(jobs)
                    .await
                    .unwrap();
            if let Some(r) = owner.and_then(|o| replicas.iter().position(|s| s.owns(&o))) {
                return Some(r);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
