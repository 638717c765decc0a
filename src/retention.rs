//! Retention: removing identity data once it is older than configured.
//!
//! Owns when and what is purged: raw results and images of verifications created more than
//! `retention.result_days` ago, journal bodies received more than `retention.journal_days`
//! ago, and refused deliveries (journal rows, whole) received more than
//! `retention.refused_days` ago, the console's audit rows written more than
//! `retention.console_audit_days` ago, and push events created more than `retention.push_days`
//! ago once nothing is left to deliver of them (0 = keep forever). The verification and accepted journal
//! rows themselves stay (status, liveness, confidence, timestamps; journal metadata and
//! `body_sha256`), so the service still answers "what happened" after it has forgotten
//! "who"; refused rows go entirely, since they are what strangers sent, bounded in time.
//!
//! Invariants: the cutoffs come from the injected clock, never the database's; a purge is
//! one store transaction ([`MaintenanceStore::purge`]), so a dry run counts exactly what a real run at
//! the same instant removes; the periodic task logs counts only, never record content, and a
//! failed pass (database down) is logged and retried at the next interval, never fatal.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::RetentionSettings;
use crate::store::{MaintenanceStore, PurgeCounts, PurgePlan, StoreResult};

/// One purge at the clock's current time.
pub async fn purge_once(
    store: &dyn MaintenanceStore,
    settings: &RetentionSettings,
    clock: &SharedClock,
    dry_run: bool,
) -> StoreResult<PurgeCounts> {
    let now = clock.now_ms();
    let cutoffs = settings.cutoffs(now);
    if !settings.enabled() {
        return Ok(PurgeCounts::default());
    }
    store
        .purge(&PurgePlan {
            results_before: cutoffs.results,
            journal_before: cutoffs.journal,
            refused_before: cutoffs.refused,
            console_audit_before: cutoffs.console_audit,
            push_events_before: cutoffs.push,
            dry_run,
            now,
        })
        .await
}

/// Purges every `settings.interval` (the first pass right away) until `shutdown`. Returns
/// at once when retention is off.
pub async fn run(
    store: Arc<dyn MaintenanceStore>,
    settings: RetentionSettings,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !settings.enabled() {
        shutdown.cancelled().await;
        return Ok(());
    }
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        match purge_once(store.as_ref(), &settings, &clock, false).await {
            Ok(counts) => tracing::info!(
                results = counts.results,
                images = counts.images,
                journal_bodies = counts.journal_bodies,
                refused = counts.refused,
                console_audit = counts.console_audit,
                push_events = counts.push_events,
                "retention purge"
            ),
            Err(e) => tracing::warn!(
                error.message = %e,
                error.cause_chain = %crate::telemetry::error_chain(&e),
                "retention purge failed; retrying at the next interval"
            ),
        }
    }
}
