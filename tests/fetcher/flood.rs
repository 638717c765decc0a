//! A flood of unsigned return GETs for fresh biz_ids, from several client addresses, against a
//! whole `serve` instance on the real clock: the per-IP limit of the return GET refuses what
//! one address sends beyond its budget, get_result calls never leave faster than
//! `fetch.max_calls_per_second` (checked on the simulator's own call log), and a legitimate
//! job that is already due is called within the bound the README documents.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use faceid_receiver::Application;
use faceid_receiver::clock::{SharedClock, SystemClock};
use faceid_receiver::store::FetchState;
use faceid_sim::{ResultScript, SimConfig, Simulator};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::common::{Engine, TestDatabase};
use crate::fetcher_tests;
use crate::helpers::*;

fetcher_tests!(a_return_get_flood_never_exceeds_the_call_ceiling_nor_delays_a_due_job);

/// The ceiling under test, in calls per second.
const CEILING: usize = 10;
/// Client addresses the flood comes from (loopback: 127.0.0.2 …).
const FLOOD_ADDRESSES: u8 = 4;
/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(3);
/// Per-IP return GET budget: a burst of 10, then one a second.
const GET_BURST: usize = 10;

async fn a_return_get_flood_never_exceeds_the_call_ceiling_nor_delays_a_due_job(engine: Engine) {
    faceid_receiver::telemetry::init_for_tests();
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::new(SimConfig::default(), clock.clone());
    let upstream = sim.bind("127.0.0.1:0").await.unwrap();
    let mut settings = settings(
        db.url(),
        &upstream.base_url(),
        &[
            ("APP__FETCH__INITIAL_DELAY", "1s"),
            ("APP__FETCH__POLL_INTERVAL", "20ms"),
            ("APP__FETCH__MAX_CALLS_PER_SECOND", "10"),
            ("APP__SERVER__RETURN_GET_PER_MINUTE", "60"),
            ("APP__SERVER__RETURN_GET_BURST", "10"),
        ],
    );
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    let store = faceid_receiver::startup::connect_store(&settings)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let app = Application::build_with(settings, store.clone(), clock.clone())
        .await
        .unwrap();
    // Bound to 127.0.0.1, yet reachable from every 127.0.0.x source address.
    let return_url = format!("http://{}/faceid/return", app.local_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // The legitimate verification: its browser comes back, its job is due a second later.
    let legit = sim.mint_biz(ResultScript::default().steps(["OK"])).unwrap();
    let browser = client_from(Ipv4Addr::LOCALHOST);
    let answer = get(&browser, &return_url, &legit).await;
    assert_eq!(answer, 303);
    let legit_due = store
        .get(&legit)
        .await
        .unwrap()
        .unwrap()
        .fetch
        .next_at
        .unwrap();

    // The flood: fresh, well-formed biz_ids FaceID never issued, as fast as each address can.
    let started = Instant::now();
    let floods = (0..FLOOD_ADDRESSES).map(|n| {
        let client = client_from(Ipv4Addr::new(127, 0, 0, 2 + n));
        let return_url = return_url.clone();
        let secs = clock.now_ms() / 1000;
        tokio::spawn(async move {
            let (mut passed, mut limited, mut i) = (0usize, 0usize, 0usize);
            while started.elapsed() < FLOOD {
                let id = format!("{secs},flood-{n}-{i}");
                match get(&client, &return_url, &id).await {
                    303 => passed += 1,
                    429 => limited += 1,
                    other => panic!("return GET answered {other}"),
                }
                i += 1;
            }
            (passed, limited)
        })
    });
    let floods = futures_util::future::join_all(floods).await;

    // Each address got its burst and about one a second more, the rest was refused.
    let allowed = GET_BURST + FLOOD.as_secs() as usize + 1;
    let mut flood_jobs = 0;
    for (n, flood) in floods.into_iter().enumerate() {
        let (passed, limited) = flood.unwrap();
        assert!(
            (GET_BURST..=allowed).contains(&passed),
            "127.0.0.{}: {passed} GETs passed ({limited} refused), expected at most {allowed}",
            n + 2
        );
        assert!(limited > 0, "the flood reached the limit");
        flood_jobs += passed;
    }

    // The legitimate call was made within the documented bound of its due time.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(&legit).await.unwrap().unwrap().fetch.state == FetchState::Pending {
        assert!(
            Instant::now() < deadline,
            "the legitimate job was never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let legit_call = sim.calls(&legit).calls[0].at_ms;
    let bound = 20 + 1000 * (8 + 1) / CEILING as i64 + 500;
    assert!(
        legit_call - legit_due <= bound,
        "called {} ms after it was due (bound {bound} ms)",
        legit_call - legit_due
    );
    assert_eq!(store.get(&legit).await.unwrap().unwrap().status, "OK");

    // Let the flood's calls run a while longer, then check the ceiling on what FaceID saw.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let mut times: Vec<i64> = sim
        .all_calls()
        .ids
        .iter()
        .flat_map(|report| report.calls.iter().map(|call| call.at_ms))
        .collect();
    times.sort_unstable();
    assert!(
        times.len() > 2 * CEILING,
        "the flood made calls: {} of {flood_jobs} jobs",
        times.len()
    );
    assert!(
        times.len() < flood_jobs,
        "the ceiling left jobs waiting: {} calls for {flood_jobs} jobs",
        times.len()
    );
    for (i, start) in times.iter().enumerate() {
        let in_a_second = times[i..].iter().take_while(|t| **t < start + 1000).count();
        // One more than the ceiling for arrival jitter: each call leaves after its own
        // database write, so two may arrive closer together than they left.
        assert!(
            in_a_second <= CEILING + 1,
            "{in_a_second} calls within a second from {start} (ceiling {CEILING})"
        );
    }
    let span_ms = (times.last().unwrap() - times[0]).max(1);
    let rate = (times.len() - 1) as f64 * 1000.0 / span_ms as f64;
    eprintln!(
        "flood: {flood_jobs} jobs from {FLOOD_ADDRESSES} addresses, {} calls at {rate:.2}/s, \
         legitimate call {} ms after due",
        times.len(),
        legit_call - legit_due
    );
    assert!(
        rate <= CEILING as f64 * 1.05,
        "{rate:.1} calls/s on average"
    );
    store.close().await;
}

/// A client whose connections come from `ip`.
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, return_url: &str, biz_id: &str) -> u16 {
    client
        .get(format!("{return_url}?biz_id={}", encode(biz_id)))
        .send()
        .await
        .expect("the return GET is answered")
        .status()
        .as_u16()
}
