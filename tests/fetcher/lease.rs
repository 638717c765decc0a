//! The lease must outlive the call it covers, whatever happens between counting a call and
//! making it: here the worker is stalled right after its call was counted (the process
//! starved of CPU, a slow database answer, a long wait for its turn under the ceiling), the
//! manual clock moves past its lease meanwhile, and another replica leases the job and calls.
//! The stall is injected through the store seam the worker already has ([`FollowUpStore`]),
//! so the production code runs unchanged and every step is deterministic.
//!
//! What must hold: the simulator sees no two calls of one biz_id overlap, no call leaves after
//! the lease that covered it ended, and every call was counted before it was made.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use faceid_receiver::fetcher::{self, Outcome};
use faceid_receiver::store::{
    FetchState, FollowUpStore, IncomingResult, JobUpdate, LeasedJob, MergeOutcome, NewImage, Store,
    StoreResult,
};
use tokio::sync::{Mutex, oneshot};

use crate::common::Engine;
use crate::fetcher_tests;
use crate::helpers::*;

fetcher_tests!(
    a_worker_stalled_after_counting_its_call_never_calls_beside_the_next_lease_holder,
    a_worker_late_while_still_holding_its_lease_extends_it_and_makes_the_counted_call,
);

/// A [`FollowUpStore`] that, the first time `owner` has a call counted, tells the test and
/// waits for it before handing the answer back: the worker is "stalled" there.
struct StallAfterReserve {
    inner: Arc<dyn Store>,
    owner: &'static str,
    stalled: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

#[async_trait]
impl FollowUpStore for StallAfterReserve {
    async fn lease_due_jobs(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<LeasedJob>> {
        self.inner
            .lease_due_jobs(owner, now, lease_until, limit)
            .await
    }

    async fn reserve_call(
        &self,
        biz_id: &str,
        owner: &str,
        now: i64,
        hold_until: i64,
        max_calls: i32,
    ) -> StoreResult<Option<i32>> {
        let reserved = self
            .inner
            .reserve_call(biz_id, owner, now, hold_until, max_calls)
            .await?;
        let stall = if owner == self.owner && reserved.is_some() {
            self.stalled.lock().await.take()
        } else {
            None
        };
        if let Some((tell, resume)) = stall {
            let _ = tell.send(());
            let _ = resume.await;
        }
        Ok(reserved)
    }

    async fn extend_lease(
        &self,
        biz_id: &str,
        owner: &str,
        valid_beyond: i64,
        lease_until: i64,
    ) -> StoreResult<bool> {
        self.inner
            .extend_lease(biz_id, owner, valid_beyond, lease_until)
            .await
    }

    async fn update_job(
        &self,
        biz_id: &str,
        owner: &str,
        now: i64,
        update: &JobUpdate,
    ) -> StoreResult<()> {
        self.inner.update_job(biz_id, owner, now, update).await
    }

    async fn end_call(
        &self,
        biz_id: &str,
        owner: &str,
        now: i64,
        update: &JobUpdate,
        code: &str,
    ) -> StoreResult<()> {
        self.inner.end_call(biz_id, owner, now, update, code).await
    }

    async fn save_fetched(
        &self,
        owner: &str,
        result: &IncomingResult,
        images: &[NewImage],
        update: &JobUpdate,
        now: i64,
    ) -> StoreResult<MergeOutcome> {
        self.inner
            .save_fetched(owner, result, images, update, now)
            .await
    }
}

async fn a_worker_stalled_after_counting_its_call_never_calls_beside_the_next_lease_holder(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    // The first call to arrive is slow, so it is still in flight when a stalled worker wakes.
    let id = h.mint(&["slow:1500:OK", "OK"]);
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);

    // Replica a: its store stalls it right after its call is counted.
    let (tell, stalled) = oneshot::channel();
    let (resume, wait) = oneshot::channel();
    let mut a = h.replica("replica-a");
    a.store = Arc::new(StallAfterReserve {
        inner: h.store.clone(),
        owner: "replica-a",
        stalled: Mutex::new(Some((tell, wait))),
    });
    let leased_at = h.clock.now_ms();
    let a_lease_ends = leased_at + i64::try_from(h.settings.fetch.lease.as_millis()).unwrap();
    let a_pass = tokio::spawn(async move { fetcher::run_once(&a, leased_at).await });
    tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("replica a had a call counted")
        .unwrap();
    assert_eq!(
        h.record(&id).await.fetch.calls_used,
        1,
        "a's call is counted"
    );

    // While a is stalled its lease ends; replica b leases the job and calls.
    h.clock.set(a_lease_ends + 1);
    let b = h.replica("replica-b");
    let b_now = h.clock.now_ms();
    let b_pass = tokio::spawn(async move { fetcher::run_once(&b, b_now).await });
    let started = tokio::time::Instant::now();
    while h.sim.calls(&id).in_flight == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica b never called"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // b's call is in flight; a wakes up a moment later (by the clock).
    h.clock.advance(1);
    resume.send(()).unwrap();
    let a_outcome = a_pass.await.unwrap().expect("a's pass");
    assert_eq!(a_outcome, Outcome::Worked(1));
    h.clock.advance(1);
    assert_eq!(b_pass.await.unwrap().expect("b's pass"), Outcome::Worked(1));

    let calls = h.sim.calls(&id);
    assert!(
        calls.overlapping().is_empty(),
        "overlapping calls {:?} in {:?}",
        calls.overlapping(),
        calls.calls
    );
    assert_eq!(calls.max_in_flight, 1, "two calls in flight at once");
    // b called at a_lease_ends + 1; only a, woken later, could call after that.
    for call in &calls.calls {
        assert!(
            call.at_ms <= a_lease_ends + 1,
            "a call left at {} after a's lease ended at {a_lease_ends}: {:?}",
            call.at_ms,
            calls.calls
        );
    }
    assert_eq!(calls.count, 1, "only b called: {:?}", calls.calls);
    let record = h.record(&id).await;
    // a's counted call was never made: lost, as in a crash, never added.
    assert_eq!(record.fetch.calls_used, 2, "{:?}", record.fetch);
    assert_eq!(record.fetch.state, FetchState::Done, "{:?}", record.fetch);
    assert_eq!(record.status, "OK");
}

/// Late, but the lease is still ours: the counted call must be made (after extending the
/// lease), not thrown away — every get_result call is precious. Here the worker stalls after
/// counting until its lease no longer covers a whole call, yet nobody else can have leased
/// the job (the lease has not ended).
async fn a_worker_late_while_still_holding_its_lease_extends_it_and_makes_the_counted_call(
    engine: Engine,
) {
    let Some(h) = harness(engine).await else {
        return;
    };
    let id = h.mint(&["OK"]);
    h.return_get(&id).await;
    h.clock.advance(5 * SECOND);

    let (tell, stalled) = oneshot::channel();
    let (resume, wait) = oneshot::channel();
    let mut a = h.replica("replica-a");
    a.store = Arc::new(StallAfterReserve {
        inner: h.store.clone(),
        owner: "replica-a",
        stalled: Mutex::new(Some((tell, wait))),
    });
    let leased_at = h.clock.now_ms();
    let a_lease_ends = leased_at + i64::try_from(h.settings.fetch.lease.as_millis()).unwrap();
    let a_pass = tokio::spawn(async move { fetcher::run_once(&a, leased_at).await });
    tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("replica a had a call counted")
        .unwrap();

    // The worker wakes with its lease still running, but too short to cover a whole call.
    let call_timeout = i64::try_from(h.settings.megvii.timeout.as_millis()).unwrap();
    h.clock.set(a_lease_ends - call_timeout / 2);
    // Another replica finds nothing to lease meanwhile: the lease is a's.
    let b = h.replica("replica-b");
    assert_eq!(
        fetcher::run_once(&b, h.clock.now_ms())
            .await
            .expect("b's pass"),
        Outcome::Idle,
        "b leased a job a still holds"
    );
    resume.send(()).unwrap();
    assert_eq!(a_pass.await.unwrap().expect("a's pass"), Outcome::Worked(1));

    let calls = h.sim.calls(&id);
    assert_eq!(
        calls.count, 1,
        "a's counted call was not made: {:?}",
        calls.calls
    );
    let record = h.record(&id).await;
    assert_eq!(record.fetch.calls_used, 1, "{:?}", record.fetch);
    assert_eq!(record.fetch.state, FetchState::Done, "{:?}", record.fetch);
}
