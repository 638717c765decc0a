//! The `faceid-receiver` command: `serve` (default), `migrate`, `check-config`, `healthcheck`,
//! `purge`, `reencrypt`, `replay`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faceid_receiver::config::Settings;
use faceid_receiver::startup::{self, Application};
use faceid_receiver::telemetry;
use tokio_util::sync::CancellationToken;

// mimalloc rather than glibc's malloc: every request allocates and frees many short-lived
// buffers across the worker threads, where glibc's arenas spent about a tenth of the server's
// CPU (`bench/results/2026-12-03/profile/session-10/base-c16/perf-flat.txt`). Version 2,
// without transparent huge pages (Cargo.toml): mimalloc 3 with them doubled the peak RSS at
// 64 connections (BENCHMARKS.md, "The tenth session").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "faceid-receiver",
    version,
    about = "Receives and verifies Megvii FaceID Lite callbacks, and follows up with get_result."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service and the follow-up worker (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and print the URLs to register with FaceID's get_token.
    CheckConfig,
    /// Purge identity data older than retention.result_days / retention.journal_days, and
    /// refused deliveries older than retention.refused_days, now; print how much went.
    Purge {
        /// Only count what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite stored results, images and journal bodies with the current encryption.key
    /// (after a rotation, or to encrypt data stored before encryption was turned on; with no
    /// key set, decrypts everything). Prints how many values were rewritten.
    Reencrypt {
        /// Only count what would be rewritten; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-verify refused callbacks whose body the journal kept, against the secrets configured
    /// now (megvii.api_secret, then megvii.previous_secrets), and store those that verify
    /// (journaled as `replayed`). Idempotent, and safe while `serve` runs. Prints counts.
    Replay {
        /// Only deliveries received at or after this time (RFC 3339, or epoch milliseconds).
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        /// Only count what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Exit 0 when URL answers 2xx (for container health checks; no curl needed).
    Healthcheck {
        /// e.g. http://127.0.0.1:5000/healthz
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command.unwrap_or(Command::Serve)))
}

async fn run(command: Command) -> ExitCode {
    if let Command::Healthcheck { url } = &command {
        return healthcheck(url).await;
    }
    let loaded = match Settings::load() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = loaded.settings;
    if matches!(command, Command::CheckConfig) {
        return check_config(&settings, &loaded.warnings);
    }
    telemetry::init(settings.telemetry.format, &settings.telemetry.filter);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let result = match command {
        Command::Migrate => migrate(&settings).await,
        Command::Purge { dry_run } => purge(&settings, dry_run).await,
        Command::Reencrypt { dry_run } => reencrypt(&settings, dry_run).await,
        Command::Replay { since, dry_run } => replay(&settings, since, dry_run).await,
        _ => serve(settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error.cause_chain = %format!("{e:#}"), "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = startup::connect_store(settings).await?;
    store.migrate().await?;
    tracing::info!(database = store.engine(), "migrations applied");
    Ok(())
}

async fn purge(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let retention = &settings.retention;
    if !retention.enabled() {
        println!(
            "retention is off (retention.result_days, journal_days, refused_days, console_audit_days and push_days are 0): nothing to purge"
        );
        return Ok(());
    }
    let store = startup::connect_store(settings).await?;
    store.migrate().await?;
    let clock: faceid_receiver::clock::SharedClock =
        std::sync::Arc::new(faceid_receiver::clock::SystemClock);
    let counts =
        faceid_receiver::retention::purge_once(store.as_ref(), retention, &clock, dry_run).await?;
    let verb = if dry_run { "would purge" } else { "purged" };
    println!(
        "{verb}: {} results, {} images, {} journal bodies, {} refused deliveries, {} console audit rows, {} push events",
        counts.results,
        counts.images,
        counts.journal_bodies,
        counts.refused,
        counts.console_audit,
        counts.push_events
    );
    Ok(())
}

async fn reencrypt(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let store = startup::connect_store(settings).await?;
    store.migrate().await?;
    let counts = store.reencrypt(dry_run).await?;
    let verb = if dry_run {
        "would re-encrypt"
    } else {
        "re-encrypted"
    };
    println!(
        "{verb}: {} results, {} images, {} journal bodies",
        counts.results, counts.images, counts.journal_bodies
    );
    if counts.unreadable_journal_bodies > 0 {
        println!(
            "{} journal bodies of unverified deliveries could not be read and were left as they are (journal ids in the log)",
            counts.unreadable_journal_bodies
        );
    }
    Ok(())
}

fn parse_since(text: &str) -> Result<i64, String> {
    faceid_receiver::clock::parse_time(text)
        .ok_or_else(|| "expected an RFC 3339 time or epoch milliseconds".to_owned())
}

async fn replay(settings: &Settings, since: Option<i64>, dry_run: bool) -> anyhow::Result<()> {
    let store = startup::connect_store(settings).await?;
    store.migrate().await?;
    let clock: faceid_receiver::clock::SharedClock =
        std::sync::Arc::new(faceid_receiver::clock::SystemClock);
    let options = faceid_receiver::replay::ReplayOptions {
        since,
        dry_run,
        ..Default::default()
    };
    let report =
        faceid_receiver::replay::replay(store.as_ref(), settings, &clock, &options).await?;
    let c = report.counts;
    if dry_run {
        println!(
            "would replay: {} of {} refused deliveries now verify ({} still refused)",
            c.verified, c.examined, c.still_refused
        );
    } else {
        println!(
            "replayed: {} stored, {} already stored, {} still refused (of {} examined)",
            c.stored, c.duplicate, c.still_refused, c.examined
        );
    }
    if c.unreadable > 0 {
        println!(
            "{} of the still refused could not be read (journal ids in the log)",
            c.unreadable
        );
    }
    Ok(())
}

fn check_config(settings: &Settings, warnings: &[String]) -> ExitCode {
    println!(
        "configuration OK (profile {})",
        settings.environment.as_str()
    );
    println!("database: {}", settings.database.redacted_url());
    println!("FaceID API: {}", settings.megvii.base_url);
    let days = |d: u32| match d {
        0 => "kept forever".to_owned(),
        d => format!("purged after {d} days"),
    };
    println!(
        "retention: results and images {}, journal bodies {}, refused deliveries {}, console audit {}, push events {}",
        days(settings.retention.result_days),
        days(settings.retention.journal_days),
        days(settings.retention.refused_days),
        days(settings.retention.console_audit_days),
        days(settings.retention.push_days)
    );
    println!(
        "encryption at rest: {} ({} previous key(s))",
        if settings.encryption.key.is_some() {
            "on"
        } else {
            "off"
        },
        settings.encryption.previous_keys.len()
    );
    println!(
        "callback secrets: the current one and {} previous",
        settings.megvii.previous_secrets.len()
    );
    match settings.callback_urls() {
        Some((notify, ret)) => {
            println!("register with get_token:");
            println!("  notify_url = {notify}");
            println!("  return_url = {ret}");
        }
        None => println!(
            "server.public_url is not set: set APP__SERVER__PUBLIC_URL to see the URLs to register"
        ),
    }
    for warning in warnings {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

async fn healthcheck(url: &str) -> ExitCode {
    faceid_receiver::install_crypto_provider();
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("unhealthy: {}", e.without_url());
            return ExitCode::FAILURE;
        }
    };
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("unhealthy: HTTP {}", response.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {}", e.without_url());
            ExitCode::FAILURE
        }
    }
}

async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}
