//! The dispatcher inside `serve`: publishes new outbox events (their stream position, and a
//! delivery for every enabled endpoint that subscribes to them), then attempts the due
//! deliveries, signed, on its own task, at most `push.concurrency` at a time.
//!
//! Owns: the loop ([`run`]), one pass ([`Dispatcher::run_once`]), and what an attempt means
//! for its delivery ([`next_step`]).
//!
//! Invariants:
//! - at least once: a delivery is leased (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas
//!   never attempt one delivery at once while a lease lives) and only marked delivered after
//!   a 2xx; a dispatcher that dies mid-attempt leaves the lease to lapse, and the delivery is
//!   attempted again — with the same `webhook-id` (the event's id), so consumers deduplicate;
//! - every attempt is recorded (time, status, latency, first KiB of the answer, outcome);
//!   retries follow [`super::schedule`] on the injected clock; a 410 disables the endpoint,
//!   and so does failing for `push.disable_after`;
//! - outbound calls never hold up callbacks or follow-ups: they run here, on a task of their
//!   own, bounded in number and in time ([`super::client`]), and the store calls around them
//!   are short transactions of their own;
//! - with `push.enabled = false` events are still published (the pull API and the stream
//!   read them), but no delivery is created or attempted.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{Attempt, AttemptOutcome, PushClient, Verdict};
use super::schedule::{self, JitterSeed};
use super::signature::{EndpointSecret, SigningKeys};
use super::target::Target;
use crate::clock::SharedClock;
use crate::config::PushSettings;
use crate::fetcher::duration_ms;
use crate::store::{
    AccessEntry, AttemptReport, DispatchStore, Endpoint, LeasedDelivery, NextStep, StoreResult,
    VERIFICATION_COMPLETED,
};

/// Events published per transaction.
const PUBLISH_BATCH: i64 = 200;

/// What one dispatcher needs. Each has its own lease owner id, so two dispatchers over one
/// database behave like two replicas.
pub struct Dispatcher {
    pub store: Arc<dyn DispatchStore>,
    pub client: PushClient,
    pub clock: SharedClock,
    pub settings: PushSettings,
    pub owner: String,
}

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    pub published: u64,
    pub attempted: usize,
}

impl Pass {
    pub fn idle(&self) -> bool {
        self.published == 0 && self.attempted == 0
    }
}

impl Dispatcher {
    pub fn new(
        settings: &PushSettings,
        store: Arc<dyn DispatchStore>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        Ok(Self::with_client(
            settings,
            store,
            clock,
            PushClient::new(settings.client())?,
        ))
    }

    /// With a given client (tests resolve names their own way).
    pub fn with_client(
        settings: &PushSettings,
        store: Arc<dyn DispatchStore>,
        clock: SharedClock,
        client: PushClient,
    ) -> Self {
        Self {
            store,
            client,
            clock,
            settings: settings.clone(),
            owner: format!("push-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Replaces the random owner id (tests name their replicas).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// One pass: publish what is new, then attempt every delivery due now (leased in one go,
    /// attempted `push.concurrency` at a time). Never sleeps.
    pub async fn run_once(&self) -> StoreResult<Pass> {
        let mut pass = Pass::default();
        loop {
            let published = self
                .store
                .publish_events(self.clock.now_ms(), self.settings.enabled, PUBLISH_BATCH)
                .await?;
            pass.published += published;
            if published < PUBLISH_BATCH as u64 {
                break;
            }
        }
        if !self.settings.enabled {
            return Ok(pass);
        }
        let now = self.clock.now_ms();
        let lease_until = now.saturating_add(duration_ms(self.settings.lease()));
        let limit = i64::from(self.settings.concurrency) * 4;
        let leased = self
            .store
            .lease_deliveries(&self.owner, now, lease_until, limit)
            .await?;
        pass.attempted = leased.len();
        let results: Vec<StoreResult<()>> = futures_util::stream::iter(leased)
            .map(|delivery| self.attempt(delivery))
            .buffer_unordered(self.settings.concurrency as usize)
            .collect()
            .await;
        for result in results {
            result?;
        }
        Ok(pass)
    }

    /// One attempt of one leased delivery, recorded.
    async fn attempt(&self, delivery: LeasedDelivery) -> StoreResult<()> {
        let attempt_no = delivery.attempts + 1;
        let Some(endpoint) = self
            .store
            .dispatch_endpoint(&delivery.endpoint_id)
            .await?
            .filter(|e| e.disabled_at.is_none())
        else {
            // Deleted or disabled since the lease: leave the delivery as it was.
            let report = self.report(&delivery, attempt_no, None, NextStep::Skip);
            self.store.record_attempt(&self.owner, &report).await?;
            return Ok(());
        };
        let body = super::render::body(&*self.store, &delivery.event, endpoint.include_pii).await?;
        if endpoint.include_pii && delivery.event.kind == VERIFICATION_COMPLETED {
            // A push with identity data is a disclosure like an API read: logged before it.
            self.store
                .record_access(&[AccessEntry {
                    token_fp: format!("endpoint:{}", endpoint.id),
                    route: format!("PUSH {VERIFICATION_COMPLETED}"),
                    biz_id: Some(delivery.event.subject.clone()),
                    accessed_at: self.clock.now_ms(),
                }])
                .await?;
        }
        let now = self.clock.now_ms();
        let attempt = match (
            Target::parse(&endpoint.url, &self.settings.policy()),
            signing_keys(&endpoint),
        ) {
            (Ok(target), Some(keys)) => {
                let headers = keys.sign(&delivery.event.id, now, body.as_bytes());
                self.client
                    .deliver(&target, &headers, body.as_bytes())
                    .await
            }
            // The URL no longer passes the policy (it was changed since), or the stored secret
            // does not parse: an attempt that never left, recorded like any failure.
            _ => Attempt {
                latency: Duration::ZERO,
                outcome: AttemptOutcome::Failed(super::client::FailureKind::Forbidden(
                    super::target::Forbidden::Unspecified,
                )),
            },
        };
        let next = next_step(&attempt, attempt_no as u32, now, &delivery, &endpoint);
        crate::metrics::push_attempt(next.outcome(), attempt.latency);
        if next == NextStep::Delivered {
            let waited = now.saturating_sub(delivery.event.created_at).max(0) as u64;
            crate::metrics::push_delivered(Duration::from_millis(waited));
        }
        tracing::info!(
            event = %delivery.event.id,
            endpoint = %endpoint.id,
            attempt = attempt_no,
            code = %attempt.code(),
            outcome = next.outcome(),
            "push attempt"
        );
        let report = self.report(&delivery, attempt_no, Some((now, &attempt)), next);
        if self.store.record_attempt(&self.owner, &report).await? {
            tracing::warn!(endpoint = %endpoint.id, "push endpoint disabled");
        }
        Ok(())
    }

    fn report(
        &self,
        delivery: &LeasedDelivery,
        attempt_no: i32,
        attempt: Option<(i64, &Attempt)>,
        next: NextStep,
    ) -> AttemptReport {
        let (at, status, latency_ms, code, answer) = match attempt {
            Some((at, attempt)) => (
                at,
                attempt.status().map(i32::from),
                duration_ms(attempt.latency),
                attempt.code(),
                match &attempt.outcome {
                    AttemptOutcome::Answered { body, .. } => body.clone(),
                    AttemptOutcome::Failed(_) => Vec::new(),
                },
            ),
            None => (
                self.clock.now_ms(),
                None,
                0,
                "skipped".to_owned(),
                Vec::new(),
            ),
        };
        AttemptReport {
            delivery_id: delivery.id,
            event_seq: delivery.event.seq,
            endpoint_id: delivery.endpoint_id.clone(),
            attempt: attempt_no,
            at,
            status,
            latency_ms,
            code,
            answer,
            next,
            disable_after_ms: duration_ms(self.settings.disable_after),
        }
    }
}

/// The endpoint's signing keys (the previous secret beside the current one until it expires).
fn signing_keys(endpoint: &Endpoint) -> Option<SigningKeys> {
    let mut keys = SigningKeys::new(EndpointSecret::parse(&endpoint.secret).ok()?);
    if let (Some(previous), Some(expires_at)) =
        (&endpoint.previous_secret, endpoint.previous_expires_at)
        && let Ok(previous) = EndpointSecret::parse(previous)
    {
        keys = keys.with_previous(previous, expires_at);
    }
    Some(keys)
}

/// What attempt number `attempt_no`, made at `now`, means for its delivery: 2xx delivered,
/// 410 gone, anything else a retry on the schedule, or giving up after the last one.
pub fn next_step(
    attempt: &Attempt,
    attempt_no: u32,
    now: i64,
    delivery: &LeasedDelivery,
    endpoint: &Endpoint,
) -> NextStep {
    match attempt.verdict() {
        Verdict::Delivered => NextStep::Delivered,
        Verdict::Gone => NextStep::Gone,
        Verdict::Retry => {
            let seed = JitterSeed::of(&delivery.event.id, &endpoint.id);
            match schedule::next_attempt_at(attempt_no, now, seed) {
                Some(at) => NextStep::RetryAt(at),
                None => NextStep::GiveUp,
            }
        }
    }
}

/// Runs passes until `shutdown`: straight on while there is work, otherwise waiting for
/// `push.poll_interval` (or `wake`). A pass in progress is finished before stopping; an
/// attempt cut short by the process dying is attempted again once its lease lapses.
pub async fn run(
    dispatcher: Dispatcher,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let poll = dispatcher.settings.poll_interval;
    tracing::info!(owner = %dispatcher.owner, enabled = dispatcher.settings.enabled, "push dispatcher started");
    let mut failures: u32 = 0;
    let mut sampled_at = 0;
    while !shutdown.is_cancelled() {
        let pause = match dispatcher.run_once().await {
            Ok(pass) if !pass.idle() => {
                failures = 0;
                tokio::task::yield_now().await;
                continue;
            }
            Ok(_) => {
                failures = 0;
                poll
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error.message = %e, error.cause_chain = %crate::telemetry::error_chain(&e), "push pass failed");
                poll * 2u32.saturating_pow(failures.min(5))
            }
        };
        // The gauges, at most every 10 s: three counts, off the accept path.
        let now = dispatcher.clock.now_ms();
        if now.saturating_sub(sampled_at) >= 10_000 {
            sampled_at = now;
            if let Ok(gauges) = dispatcher.store.push_gauges().await {
                crate::metrics::push_gauges(&gauges);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!(owner = %dispatcher.owner, "push dispatcher stopped");
    Ok(())
}
