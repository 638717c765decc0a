//! Load generator for `bench/notify.sh`: the notify path measured against the database's own
//! ceiling for the same write.
//!
//! - `http`: POSTs correctly signed, unique FaceID notify callbacks (the ~3.6 KB seed result of
//!   `tests/vectors/seed_get_result_ok.json` with a fresh biz_id each) to `/faceid/notify` from
//!   N concurrent connections for a fixed duration, and prints one JSON line: requests/s,
//!   p50/p99 latency, and any non-2xx answers.
//! - `pgbench-script`: writes a pgbench script doing, in one transaction, exactly the
//!   statements `accept_signed` runs for that callback on its own (no group commit: same SQL
//!   text, taken from `faceid_receiver::store::sql`; same body and result bytes).
//! - `sqlite-baseline`: the same transaction as a raw sqlx loop on N tasks against a SQLite
//!   file (WAL, synchronous=FULL, `BEGIN IMMEDIATE`), for a fixed duration.
//!
//! Callbacks are signed just before sending (SHA-1 over ~3.6 KB: microseconds), not
//! pre-generated: a fixed duration has no fixed count.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use faceid_receiver::sim::sender::SignedCallback;
use faceid_receiver::store::sql;
use sha2::Digest;

const SEED: &str = include_str!("../tests/vectors/seed_get_result_ok.json");
const SEED_BIZ_ID: &str = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load POST /faceid/notify.
    Http {
        /// e.g. http://127.0.0.1:5000/faceid/notify
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "dev-secret")]
        secret: String,
        #[arg(long)]
        concurrency: usize,
        /// Seconds of measured load (after a 1 s warm-up).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Write the pgbench script for one callback's durable write.
    PgbenchScript {
        #[arg(long)]
        out: PathBuf,
    },
    /// The same transaction as a raw sqlx loop against SQLite.
    SqliteBaseline {
        /// A migrated database file.
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
}

/// A unique biz_id in FaceID's `<seconds>,<uuid>` shape.
fn fresh_biz_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{secs},{}", uuid::Uuid::new_v4())
}

/// The seed result with `biz_id` in place of the seed's own.
fn seed_data(biz_id: &str) -> String {
    SEED.replace(SEED_BIZ_ID, biz_id)
}

fn signed(secret: &str, biz_id: &str) -> SignedCallback {
    SignedCallback::sign(secret, seed_data(biz_id))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Http {
            url,
            secret,
            concurrency,
            duration,
        } => http(url, secret, concurrency, duration).await,
        Command::PgbenchScript { out } => {
            std::fs::write(&out, pgbench_script())?;
            Ok(())
        }
        Command::SqliteBaseline {
            path,
            concurrency,
            duration,
        } => sqlite_baseline(path, concurrency, duration).await,
    }
}

/// Per-task tallies.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    failures: u64,
}

fn report(label: &str, concurrency: usize, elapsed: Duration, tallies: Vec<Tally>) {
    let mut latencies: Vec<u32> = Vec::new();
    let mut failures = 0;
    for tally in tallies {
        latencies.extend(tally.latencies_us);
        failures += tally.failures;
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let ok = latencies.len();
    println!(
        "{{\"mode\":\"{label}\",\"concurrency\":{concurrency},\"ok\":{ok},\"failures\":{failures},\"seconds\":{:.3},\"rate\":{:.1},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
}

/// Runs `concurrency` loops of `op` for 1 s of warm-up, then `duration` s measured.
async fn run_loops<F, Fut>(
    concurrency: usize,
    duration: f64,
    op: F,
) -> anyhow::Result<(Duration, Vec<Tally>)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let warm_until = Instant::now() + Duration::from_secs(1);
    let start = warm_until;
    let end = start + Duration::from_secs_f64(duration);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let ok = op().await;
                    if began < start {
                        continue;
                    }
                    if ok {
                        let us = began.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        tally.latencies_us.push(us);
                    } else {
                        tally.failures += 1;
                    }
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await?);
    }
    // Requests still in flight at `end` finish after it; they were started inside the window.
    Ok((start.elapsed(), tallies))
}

async fn http(
    url: String,
    secret: String,
    concurrency: usize,
    duration: f64,
) -> anyhow::Result<()> {
    let client = faceid_receiver::sim::sender::http_client()?;
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let op = {
        let errors = errors.clone();
        move || {
            let (client, url, secret, errors) =
                (client.clone(), url.clone(), secret.clone(), errors.clone());
            async move {
                let callback = signed(&secret, &fresh_biz_id());
                let response = client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(callback.form_body())
                    .send()
                    .await;
                match response {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        if !ok && errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 {
                            eprintln!("loadgen: answer {}", response.status());
                        }
                        let _ = response.bytes().await;
                        ok
                    }
                    Err(e) => {
                        if errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 {
                            eprintln!("loadgen: {e}");
                        }
                        false
                    }
                }
            }
        }
    };
    let (elapsed, tallies) = run_loops(concurrency, duration, op).await?;
    report("http", concurrency, elapsed, tallies);
    Ok(())
}

/// What one notify writes, as the handler computes it.
struct Write {
    data: String,
    body: Vec<u8>,
    body_sha256: String,
}

fn write_for(biz_id: &str) -> Write {
    let callback = signed("dev-secret", biz_id);
    let body = callback.form_body().into_bytes();
    Write {
        data: seed_data(biz_id),
        body_sha256: hex::encode(sha2::Sha256::digest(&body)),
        body,
    }
}

/// `$n` → `values[n-1]`, highest first so `$1` never eats `$10`'s prefix.
fn bind_literally(statement: &str, values: &[&str]) -> String {
    let mut out = statement.to_owned();
    for (i, value) in values.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), value);
    }
    out
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The pgbench transaction: the statements of `accept_signed` for a signed final notify
/// (`JobEffect::CancelPending`), bound to the seed's bytes, with a unique biz_id per
/// transaction (client id + a random 60-bit number) and a timestamp that only varies with it.
fn pgbench_script() -> String {
    let w = write_for(SEED_BIZ_ID);
    let biz = "(:client_id::text || ',' || :r::text)";
    let now = "1795392000000";
    let merge = bind_literally(
        sql::MERGE_RESULT,
        &[
            biz,
            &quote("cc47190f-5502-44a2-ab74-ea4f0f649f61"),
            "'OK'",
            "3",
            "'PASS'",
            "89.5",
            "'notify'",
            "TRUE",
            &quote(&w.data),
            now,
        ],
    );
    let journal = bind_literally(
        sql::INSERT_CALLBACK,
        &[
            "'notify'",
            biz,
            "TRUE",
            "'stored'",
            "NULL",
            now,
            "'127.0.0.1'",
            "'application/x-www-form-urlencoded'",
            &quote(&w.body_sha256),
            &w.body.len().to_string(),
            &format!("'\\x{}'::bytea", hex::encode(&w.body)),
            "'current'",
        ],
    );
    let cancel = bind_literally(sql::CANCEL_PENDING_JOB, &[biz, now]);
    let read = bind_literally(sql::GET_VERIFICATION, &[biz]);
    format!(
        "-- Generated by `faceid-loadgen pgbench-script`: accept_signed for one\n\
         -- signed final notify (CancelPending), body {} bytes, result {} bytes.\n\
         \\set r random(1, 1152921504606846975)\n\
         BEGIN;\n{merge};\n{journal};\n{cancel};\n{read};\nCOMMIT;\n",
        w.body.len(),
        w.data.len()
    )
}

async fn sqlite_baseline(path: PathBuf, concurrency: usize, duration: f64) -> anyhow::Result<()> {
    use sqlx::sqlite::SqliteSynchronous;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(concurrency as u32)
        .connect_with(options)
        .await?;
    // One payload for every transaction (only the biz_id varies): no client work is timed.
    let w = std::sync::Arc::new(write_for(SEED_BIZ_ID));
    let op = move || {
        let (pool, w) = (pool.clone(), w.clone());
        async move {
            let biz_id = fresh_biz_id();
            let now = 1_795_392_000_000_i64;
            let result: Result<(), sqlx::Error> = async {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let _revision: Option<i32> = sqlx::query_scalar(sql::MERGE_RESULT)
                    .bind(&biz_id)
                    .bind("cc47190f-5502-44a2-ab74-ea4f0f649f61")
                    .bind("OK")
                    .bind(3_i32)
                    .bind("PASS")
                    .bind(89.5_f64)
                    .bind("notify")
                    .bind(true)
                    .bind(&w.data)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                let _id: i64 = sqlx::query_scalar(sql::INSERT_CALLBACK)
                    .bind("notify")
                    .bind(&biz_id)
                    .bind(true)
                    .bind("stored")
                    .bind(None::<String>)
                    .bind(now)
                    .bind("127.0.0.1")
                    .bind("application/x-www-form-urlencoded")
                    .bind(&w.body_sha256)
                    .bind(w.body.len() as i64)
                    .bind(&w.body)
                    .bind("current")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(sql::CANCEL_PENDING_JOB)
                    .bind(&biz_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let _row = sqlx::query(sql::GET_VERIFICATION)
                    .bind(&biz_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("sqlite-baseline: {e}");
                    false
                }
            }
        }
    };
    let (elapsed, tallies) = run_loops(concurrency, duration, op).await?;
    report("sqlite-baseline", concurrency, elapsed, tallies);
    Ok(())
}
