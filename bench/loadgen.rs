//! Load generator for `bench/notify.sh`: the notify path measured against the database's own
//! ceilings for the same write.
//!
//! - `http`: POSTs correctly signed, unique FaceID notify callbacks (the ~3.5 KB seed result,
//!   see [`seed`], with a fresh biz_id each) to `/faceid/notify` from
//!   N concurrent connections for a fixed duration, and prints one JSON line: requests/s,
//!   p50/p99 latency, and any non-2xx answers. `--acked-out` lists the biz_id of every
//!   measured 2xx answer, for `verify`.
//! - `pgbench-script`: writes a pgbench script doing, in one transaction, exactly the
//!   statements `accept_signed` runs for that callback on its own (no group commit: same SQL
//!   text, taken from `faceid_receiver::store::sql`; same body and result bytes). The
//!   per-callback baseline.
//! - `pg-batched`: the batched ceiling on PostgreSQL: `--clients` loops each committing
//!   batches of callbacks with group commit's own writer (`store::pg_batch::write_batch`, on
//!   connections made as group commit's are), batch sizes replayed from `--sizes` (the
//!   distribution our server formed).
//! - `sqlite-baseline`: the same transaction as a raw sqlx loop on N tasks against a SQLite
//!   file (WAL, synchronous=FULL, `BEGIN IMMEDIATE`), for a fixed duration; with `--sizes`,
//!   N callbacks per transaction (the batched ceiling on SQLite).
//! - `verify`: the durability check: how many of the biz_ids in `--ids` lack their journal row
//!   or their record in the database; exits 1 if any does.
//!
//! Callbacks are signed just before sending (SHA-1 over ~3.6 KB: microseconds), not
//! pre-generated: a fixed duration has no fixed count. The baselines bind one precomputed
//! payload (only the biz_id varies), so little client work is timed there.
//!
//! `LOADGEN_FAKE_EXTRA_ACK=N` (self-test of the durability check only) makes `http` list N
//! extra biz_ids that were never sent, as if they had been acknowledged.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use faceid_receiver::store::{pg_batch, sql};
use faceid_sim::sender::SignedCallback;
use sha2::Digest;

/// `data` as FaceID posts it to notify_url: seed 001's result without its `images` member
/// (FaceID's documents: images come only from get_result, never in callbacks).
const NOTIFY_SEED: &str = include_str!("../tests/vectors/seed_notify_ok.json");
/// Seed 001's get_result example as is, with its three image placeholders. Posted as a
/// callback it takes the path of a callback carrying images (none decodes: one WARN line per
/// callback, "result images skipped"); every sweep up to 2026-12-03's `sweep-7/` carried it.
const GET_RESULT_SEED: &str = include_str!("../tests/vectors/seed_get_result_ok.json");
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
        /// Writes the biz_id of every measured 2xx answer here, one per line.
        #[arg(long)]
        acked_out: Option<PathBuf>,
    },
    /// The HTTP floor: answers every request at once, having read its body (see
    /// `null_server`).
    NullServer {
        /// e.g. 127.0.0.1:5001
        #[arg(long)]
        listen: String,
    },
    /// Write the pgbench script for one callback's durable write.
    PgbenchScript {
        #[arg(long)]
        out: PathBuf,
    },
    /// The batched ceiling: group commit's set-based statements, straight to PostgreSQL.
    PgBatched {
        /// A migrated database.
        #[arg(long)]
        url: String,
        /// Concurrent transactions.
        #[arg(long)]
        clients: usize,
        /// Batch sizes to replay, `size:count,…` (from faceid_group_commit_batch_size).
        #[arg(long, default_value = "1:1")]
        sizes: BatchSizes,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// The same transaction as a raw sqlx loop against SQLite (N callbacks per transaction
    /// with `--sizes`).
    SqliteBaseline {
        /// A migrated database file.
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        concurrency: usize,
        /// Callbacks per transaction, `size:count,…`; the default is one per transaction.
        #[arg(long, default_value = "1:1")]
        sizes: BatchSizes,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// SQLite connections the loops share (default: one per loop). SQLite writes one
        /// transaction at a time; loops on fewer connections queue in the pool rather than
        /// in SQLite's busy handler, which sleeps and can time out.
        #[arg(long)]
        connections: Option<u32>,
    },
    /// Durability check: every listed biz_id has its notify journal row and its record.
    Verify {
        /// The service's database (postgres:// or sqlite://).
        #[arg(long)]
        db: String,
        /// biz_ids answered 2xx, one per line (`http --acked-out`).
        #[arg(long)]
        ids: PathBuf,
    },
}

/// A batch-size distribution, replayed in a fixed shuffled order: `size:count,…`.
#[derive(Clone, Debug)]
struct BatchSizes(Arc<Vec<usize>>);

impl std::str::FromStr for BatchSizes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut schedule = Vec::new();
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (size, count) = pair
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{pair:?} is not size:count"))?;
            let size: usize = size.parse().map_err(|e| format!("size {size:?}: {e}"))?;
            let count: usize = count.parse().map_err(|e| format!("count {count:?}: {e}"))?;
            if size == 0 {
                return Err("a batch has at least one callback".into());
            }
            schedule.extend(std::iter::repeat_n(size, count));
        }
        if schedule.is_empty() {
            return Err("no batch sizes".into());
        }
        // Shuffled once (fixed seed), then cycled: large and small batches interleave as
        // they did in the server instead of running in blocks.
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        schedule.shuffle(&mut rand::rngs::StdRng::seed_from_u64(20261202));
        Ok(Self(Arc::new(schedule)))
    }
}

impl BatchSizes {
    /// A shared cursor over the schedule: every client takes the next size.
    fn cursor(&self) -> impl Fn() -> usize + Clone + Send + Sync + 'static {
        let (schedule, next) = (self.0.clone(), Arc::new(AtomicUsize::new(0)));
        move || schedule[next.fetch_add(1, Ordering::Relaxed) % schedule.len()]
    }
}

/// A unique biz_id in FaceID's `<seconds>,<uuid>` shape.
fn fresh_biz_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{secs},{}", uuid::Uuid::new_v4())
}

/// The result every callback and every baseline row carries, chosen by `LOADGEN_SEED`:
/// `notify` (the default: [`NOTIFY_SEED`]) or `get_result` ([`GET_RESULT_SEED`]). Anything
/// else stops the load generator, so a typo cannot measure the wrong payload.
fn seed() -> &'static str {
    static CHOSEN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| {
        let name = std::env::var("LOADGEN_SEED").unwrap_or_default();
        seed_named(&name).unwrap_or_else(|| {
            eprintln!("loadgen: LOADGEN_SEED={name:?}: expected notify or get_result");
            std::process::exit(2)
        })
    })
}

fn seed_named(name: &str) -> Option<&'static str> {
    match name {
        "" | "notify" => Some(NOTIFY_SEED),
        "get_result" => Some(GET_RESULT_SEED),
        _ => None,
    }
}

/// The seed result with `biz_id` in place of the seed's own.
fn seed_data(biz_id: &str) -> String {
    seed().replace(SEED_BIZ_ID, biz_id)
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
            acked_out,
        } => http(url, secret, concurrency, duration, acked_out).await,
        Command::NullServer { listen } => null_server(listen).await,
        Command::PgbenchScript { out } => {
            std::fs::write(&out, pgbench_script())?;
            Ok(())
        }
        Command::PgBatched {
            url,
            clients,
            sizes,
            duration,
        } => pg_batched(url, clients, sizes, duration).await,
        Command::SqliteBaseline {
            path,
            concurrency,
            sizes,
            duration,
            connections,
        } => sqlite_baseline(path, concurrency, connections, sizes, duration).await,
        Command::Verify { db, ids } => verify(&db, &ids).await,
    }
}

/// What one operation (a request, a transaction) did when it succeeded.
struct Done {
    /// Callbacks it made durable.
    callbacks: usize,
    /// The biz_id acknowledged (`http` only).
    acked: Option<String>,
}

impl Done {
    fn callbacks(callbacks: usize) -> Option<Self> {
        Some(Self {
            callbacks,
            acked: None,
        })
    }
}

/// Per-task tallies of the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    callbacks: u64,
    failures: u64,
    acked: Vec<String>,
}

/// Prints the run's JSON line: `ok` operations, `rate` callbacks/s (= operations/s for
/// `http`), `tx_rate` operations/s, latency percentiles per operation.
/// CPU used during a measured window, in clock ticks: the whole machine's busy time (every
/// core: user, nice, system, irq, softirq, steal from `/proc/stat`) and this process's own
/// (user + system from `/proc/self/stat`). Beside the rate it says where a difference between
/// two runs comes from: a run that keeps the 2 cores busy is bound by CPU per callback, one
/// that leaves them idle by waiting.
#[derive(Clone, Copy, Default)]
struct CpuTicks {
    machine_busy: u64,
    machine_all: u64,
    /// The part of `machine_busy` the hypervisor gave to other guests (a shared host's
    /// noise: counted as busy, since the cores were not ours to use then).
    machine_steal: u64,
    own: u64,
}

impl CpuTicks {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        let machine_all = fields.iter().sum();
        let machine_busy = machine_all - field(3) - field(4);
        let own_stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // After the command name in parentheses: field 3 is the state; utime and stime are
        // fields 14 and 15.
        let after_name = own_stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("");
        let own_fields: Vec<u64> = after_name
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let own =
            own_fields.get(11).copied().unwrap_or(0) + own_fields.get(12).copied().unwrap_or(0);
        Self {
            machine_busy,
            machine_all,
            machine_steal: field(7),
            own,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_all: self.machine_all.saturating_sub(before.machine_all),
            machine_steal: self.machine_steal.saturating_sub(before.machine_steal),
            own: self.own.saturating_sub(before.own),
        }
    }
}

fn report(label: &str, concurrency: usize, window: &Window, tallies: &[Tally]) {
    let elapsed = window.elapsed;
    let mut latencies: Vec<u32> = Vec::new();
    let (mut failures, mut callbacks) = (0, 0);
    for tally in tallies {
        latencies.extend(&tally.latencies_us);
        failures += tally.failures;
        callbacks += tally.callbacks;
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
    let seconds = elapsed.as_secs_f64();
    // Per measured callback: the machine's busy CPU (every process: server, database, this
    // load generator) and this load generator's own, in ms; `busy` is the share of all cores.
    // `/proc`'s clock ticks per second, from the window itself: every core's ticks (busy and
    // idle) add up to the wall time of the window on each core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ticks = (window.cpu.machine_all as f64 / (seconds * cores)).max(1.0);
    let per_callback_ms = |t: u64| t as f64 / ticks * 1000.0 / (callbacks.max(1) as f64);
    let cpu = window.cpu;
    println!(
        "{{\"mode\":\"{label}\",\"concurrency\":{concurrency},\"ok\":{ok},\"callbacks\":{callbacks},\"failures\":{failures},\"seconds\":{seconds:.3},\"rate\":{:.1},\"tx_rate\":{:.1},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"machine_cpu_ms\":{:.3},\"client_cpu_ms\":{:.3},\"machine_busy\":{:.3},\"machine_steal\":{:.3}}}",
        callbacks as f64 / seconds,
        ok as f64 / seconds,
        pct(0.50),
        pct(0.99),
        per_callback_ms(cpu.machine_busy),
        per_callback_ms(cpu.own),
        cpu.machine_busy as f64 / cpu.machine_all.max(1) as f64,
        cpu.machine_steal as f64 / cpu.machine_all.max(1) as f64,
    );
}

/// The measured window of a run: its length and the CPU used in it.
struct Window {
    elapsed: Duration,
    cpu: CpuTicks,
}

/// Runs `concurrency` loops of `op` for 1 s of warm-up, then `duration` s measured. `op`
/// answers `None` for a failure.
async fn run_loops<F, Fut>(
    concurrency: usize,
    duration: f64,
    op: F,
) -> anyhow::Result<(Window, Vec<Tally>)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<Done>> + Send,
{
    let warm_until = Instant::now() + Duration::from_secs(1);
    let start = warm_until;
    let end = start + Duration::from_secs_f64(duration);
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        CpuTicks::now()
    });
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
                    let done = op().await;
                    if began < start {
                        continue;
                    }
                    match done {
                        Some(done) => {
                            let us = began.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            tally.latencies_us.push(us);
                            tally.callbacks += done.callbacks as u64;
                            tally.acked.extend(done.acked);
                        }
                        None => tally.failures += 1,
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
    let window = Window {
        elapsed: start.elapsed(),
        cpu: CpuTicks::now().since(cpu_at_start.await?),
    };
    Ok((window, tallies))
}

/// Prints the first few errors of a run, then only counts them.
#[derive(Clone, Default)]
struct ErrorLog(Arc<AtomicU64>);

impl ErrorLog {
    fn note(&self, what: impl std::fmt::Display) {
        if self.0.fetch_add(1, Ordering::Relaxed) < 3 {
            eprintln!("loadgen: {what}");
        }
    }

    /// A baseline transaction's outcome: `callbacks` made durable, or a failure noted.
    fn outcome(
        &self,
        label: &str,
        result: Result<(), sqlx::Error>,
        callbacks: usize,
    ) -> Option<Done> {
        match result {
            Ok(()) => Done::callbacks(callbacks),
            Err(e) => {
                self.note(format_args!("{label}: {e}"));
                None
            }
        }
    }
}

/// The notify body of one biz_id, built from the seed cut at its biz_id once
/// ([`CallbackTemplate::new`]): per request only the biz_id is spliced in and the data
/// signed, as `SignedCallback::sign(..).form_body()` would (a test checks they agree).
/// Form encoding is byte by byte, so the encoded seed's pieces joined by the encoded biz_id
/// are the encoding of the whole. Why not `form_body` itself: encoding the 3.6 KB seed takes
/// ≈ 30 µs, a third of this client's CPU per request, on the cores it shares with the server.
struct CallbackTemplate {
    secret: String,
    data_pieces: Vec<&'static str>,
    form_pieces: Vec<String>,
}

impl CallbackTemplate {
    fn new(secret: String) -> Self {
        let data_pieces: Vec<&'static str> = seed().split(SEED_BIZ_ID).collect();
        let form_pieces = data_pieces
            .iter()
            .map(|piece| form_urlencoded::byte_serialize(piece.as_bytes()).collect())
            .collect();
        Self {
            secret,
            data_pieces,
            form_pieces,
        }
    }

    fn form_body(&self, biz_id: &str) -> Vec<u8> {
        let data = self.data_pieces.join(biz_id);
        let sign = faceid_receiver::protocol::sign(&self.secret, data.as_bytes());
        let encoded_biz_id: String = form_urlencoded::byte_serialize(biz_id.as_bytes()).collect();
        let mut body = Vec::with_capacity(data.len() * 2);
        body.extend_from_slice(b"data=");
        body.extend_from_slice(self.form_pieces.join(encoded_biz_id.as_str()).as_bytes());
        body.extend_from_slice(b"&sign=");
        body.extend(form_urlencoded::byte_serialize(sign.as_bytes()).flat_map(str::bytes));
        body
    }
}

/// Keep-alive HTTP/1.1 connections for the closed loops, on hyper's own client connection
/// (no pool logic, redirects, timeouts or header maps beyond the request's): the load
/// generator shares the 2 cores with what it measures, so it should take as little of them
/// as it can. A loop takes a connection, sends, and puts it back.
#[derive(Clone)]
struct Connections {
    addr: String,
    authority: String,
    path: String,
    idle: Arc<std::sync::Mutex<Vec<SendRequest>>>,
}

type SendRequest = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

impl Connections {
    fn new(url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(url)?;
        anyhow::ensure!(url.scheme() == "http", "http:// only: {url}");
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("no host: {url}"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Self {
            addr: format!("{host}:{port}"),
            authority: format!("{host}:{port}"),
            path: url.path().to_owned(),
            idle: Arc::default(),
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest> {
        let stream = tokio::net::TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// POSTs `body` as a form; the status, with the answer read whole.
    async fn post_form(&self, body: Vec<u8>) -> anyhow::Result<hyper::StatusCode> {
        use http_body_util::BodyExt;
        let idle = self.idle.lock().unwrap().pop();
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        sender.ready().await?;
        let request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, FORM)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        self.idle.lock().unwrap().push(sender);
        Ok(status)
    }
}

async fn http(
    url: String,
    secret: String,
    concurrency: usize,
    duration: f64,
    acked_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let connections = Connections::new(&url)?;
    let template = Arc::new(CallbackTemplate::new(secret));
    let errors = ErrorLog::default();
    let op = move || {
        let (connections, template, errors) =
            (connections.clone(), template.clone(), errors.clone());
        async move {
            let biz_id = fresh_biz_id();
            match connections.post_form(template.form_body(&biz_id)).await {
                Ok(status) if status.is_success() => Some(Done {
                    callbacks: 1,
                    acked: Some(biz_id),
                }),
                Ok(status) => {
                    errors.note(format_args!("answer {status}"));
                    None
                }
                Err(e) => {
                    errors.note(e);
                    None
                }
            }
        }
    };
    let (window, mut tallies) = run_loops(concurrency, duration, op).await?;
    let fake: usize = std::env::var("LOADGEN_FAKE_EXTRA_ACK")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if fake > 0 {
        eprintln!(
            "loadgen: LOADGEN_FAKE_EXTRA_ACK={fake}: listing {fake} never-sent biz_ids as acknowledged"
        );
        let tally = &mut tallies[0];
        for _ in 0..fake {
            tally.acked.push(fresh_biz_id());
            tally.latencies_us.push(0);
            tally.callbacks += 1;
        }
    }
    if let Some(path) = acked_out {
        let mut text = String::new();
        for id in tallies.iter().flat_map(|t| &t.acked) {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(&path, text)?;
    }
    report("http", concurrency, &window, &tallies);
    Ok(())
}

/// The HTTP floor: a server that reads each request's body whole and answers a fixed
/// notify-sized JSON, on the same hyper HTTP/1.1 server connection as ours (keep-alive, no
/// TCP_NODELAY, as `http::serve` has), and nothing else: no routing, middleware, logging,
/// parsing, signature or database. Its CPU per request is what any service built on this
/// HTTP stack pays before doing anything; `bench/notify.sh` loads it with `http` beside the
/// batched ceiling to bound the ratio an HTTP front can reach on this machine.
async fn null_server(listen: String) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    const ANSWER: &str = r#"{"result":"stored","biz_id":"0000000000,00000000-0000-0000-0000-000000000000","status":"OK"}"#;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("null-server listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    request.into_body().collect().await?;
                    let mut response = hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(ANSWER.as_bytes()),
                    ));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, hyper::Error>(response)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
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
/// (`JobEffect::CancelPending`; the outbox's `verification.completed` row included), bound to the seed's bytes, with a unique biz_id per
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
    // The outbox row our transaction writes for a final result (`verification.completed`),
    // with an id unique per transaction as `push::event::new_event_id`'s are.
    let event_id = "('evt_' || :client_id::text || '_' || :r::text)";
    let outbox = bind_literally(
        sql::INSERT_EVENT,
        &[
            event_id,
            &quote(faceid_receiver::store::VERIFICATION_COMPLETED),
            biz,
            "NULL",
            now,
        ],
    );
    let read = bind_literally(sql::GET_VERIFICATION, &[biz]);
    format!(
        "-- Generated by `faceid-loadgen pgbench-script`: accept_signed for one\n\
         -- signed final notify (CancelPending), body {} bytes, result {} bytes.\n\
         \\set r random(1, 1152921504606846975)\n\
         BEGIN;\n{merge};\n{journal};\n{cancel};\n{outbox};\n{read};\nCOMMIT;\n",
        w.body.len(),
        w.data.len()
    )
}

/// The values every baseline binds: what the handler binds for the seed callback.
const SEED_BIZ_NO: &str = "cc47190f-5502-44a2-ab74-ea4f0f649f61";
const NOW_MS: i64 = 1_795_392_000_000;
const FORM: &str = "application/x-www-form-urlencoded";

/// `count` fresh biz_ids in the order group commit writes a batch (sorted).
fn fresh_batch(count: usize) -> Vec<String> {
    let mut biz_ids: Vec<String> = (0..count).map(|_| fresh_biz_id()).collect();
    biz_ids.sort();
    biz_ids
}

/// The batched ceiling on PostgreSQL: `clients` loops, each writing one batch at a time with
/// group commit's own writer, [`pg_batch::write_batch`] (the very function our server's
/// writers call, so its statements, its round trips and its transaction are ours), on
/// connections made as group commit's are ([`pg_batch::writer_options`]) and kept from one
/// batch to the next as its writers keep theirs ([`pg_batch::WriterConnection`]). Each member is
/// the seed callback as the handler hands it over for a signed final notify (merge, journal,
/// cancel the pending job, the outbox event), with only the biz_id changed.
async fn pg_batched(
    url: String,
    clients: usize,
    sizes: BatchSizes,
    duration: f64,
) -> anyhow::Result<()> {
    use faceid_receiver::store::{CallbackKind, JobEffect, NewCallback};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        .min_connections(clients as u32)
        .connect_with(pg_batch::writer_options(&PgConnectOptions::from_str(&url)?))
        .await?;
    let seed = faceid_receiver::protocol::payload::parse_callback_data(seed().as_bytes())
        .map_err(|e| anyhow::anyhow!("the seed callback: {e}"))?;
    let (result, _) = faceid_receiver::megvii::signed_callback(&seed, CallbackKind::Notify);
    // Connections kept from one batch to the next as group commit's writers keep theirs: a
    // loop takes one (or a new one), writes its batch on it, and puts it back.
    type Kept = Arc<std::sync::Mutex<Vec<pg_batch::WriterConnection<sqlx::Postgres>>>>;
    let kept: Kept = Arc::default();
    let write = move |(pool, kept): (sqlx::PgPool, Kept), w: Arc<Write>, biz_ids: Vec<String>| {
        let result = result.clone();
        async move {
            let n = biz_ids.len();
            let members: Vec<pg_batch::Member> = biz_ids
                .into_iter()
                .map(|biz_id| pg_batch::Member {
                    entry: NewCallback {
                        kind: CallbackKind::Notify,
                        biz_id: Some(biz_id.clone()),
                        verified: true,
                        reason: None,
                        received_at: NOW_MS,
                        remote_addr: Some("127.0.0.1".into()),
                        content_type: Some(FORM.into()),
                        body_sha256: w.body_sha256.clone(),
                        body_len: w.body.len() as i64,
                        body: w.body.clone(),
                        key_id: Some("current".into()),
                    },
                    result: faceid_receiver::store::IncomingResult {
                        biz_id,
                        result: w.data.clone(),
                        ..result.clone()
                    },
                    job: JobEffect::CancelPending,
                })
                .collect();
            let mut connection = kept.lock().unwrap().pop().unwrap_or_default();
            let answers = connection
                .write(&pool, async |conn| {
                    pg_batch::write_batch(conn, &members).await
                })
                .await;
            kept.lock().unwrap().push(connection);
            let answers = answers?;
            let accepted = answers.iter().filter(|answer| answer.is_ok()).count();
            if accepted != n {
                return Err(sqlx::Error::Protocol(format!(
                    "batch of {n}: {accepted} accepted"
                )));
            }
            Ok(())
        }
    };
    batched_loops("pg-batched", (pool, kept), clients, sizes, duration, write).await
}

/// The same statements as `accept_signed` on its own, as a raw sqlx loop on `concurrency`
/// tasks: each transaction (`BEGIN IMMEDIATE`) writes the next batch size's worth of
/// callbacks one after another, as SQLite's group commit does.
async fn sqlite_baseline(
    path: PathBuf,
    concurrency: usize,
    connections: Option<u32>,
    sizes: BatchSizes,
    duration: f64,
) -> anyhow::Result<()> {
    use sqlx::sqlite::SqliteSynchronous;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(connections.unwrap_or(concurrency as u32))
        .connect_with(options)
        .await?;
    let write = |pool: sqlx::SqlitePool, w: Arc<Write>, biz_ids: Vec<String>| async move {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        for biz_id in &biz_ids {
            let _revision: Option<i32> = sqlx::query_scalar(sql::MERGE_RESULT)
                .bind(biz_id)
                .bind(SEED_BIZ_NO)
                .bind("OK")
                .bind(3_i32)
                .bind("PASS")
                .bind(89.5_f64)
                .bind("notify")
                .bind(true)
                .bind(&w.data)
                .bind(NOW_MS)
                .fetch_optional(&mut *tx)
                .await?;
            let _id: i64 = sqlx::query_scalar(sql::INSERT_CALLBACK)
                .bind("notify")
                .bind(biz_id)
                .bind(true)
                .bind("stored")
                .bind(None::<String>)
                .bind(NOW_MS)
                .bind("127.0.0.1")
                .bind(FORM)
                .bind(&w.body_sha256)
                .bind(w.body.len() as i64)
                .bind(&w.body)
                .bind("current")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(sql::CANCEL_PENDING_JOB)
                .bind(biz_id)
                .bind(NOW_MS)
                .execute(&mut *tx)
                .await?;
            let _row = sqlx::query(sql::GET_VERIFICATION)
                .bind(biz_id)
                .fetch_one(&mut *tx)
                .await?;
        }
        tx.commit().await
    };
    batched_loops("sqlite-baseline", pool, concurrency, sizes, duration, write).await
}

/// The baselines' harness: `clients` loops for `duration` seconds, each committing batches of
/// fresh biz_ids (sizes replayed from `sizes`) with `write`, then one report line as `label`.
/// Every batch binds one precomputed payload (only the biz_id varies): no client work is timed.
async fn batched_loops<P, F, Fut>(
    label: &'static str,
    pool: P,
    clients: usize,
    sizes: BatchSizes,
    duration: f64,
    write: F,
) -> anyhow::Result<()>
where
    P: Clone + Send + Sync + 'static,
    F: Fn(P, Arc<Write>, Vec<String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), sqlx::Error>> + Send,
{
    let w = Arc::new(write_for(SEED_BIZ_ID));
    let (next_size, errors) = (sizes.cursor(), ErrorLog::default());
    let op = move || {
        let (pool, w, next_size, errors, write) = (
            pool.clone(),
            w.clone(),
            next_size.clone(),
            errors.clone(),
            write.clone(),
        );
        async move {
            let biz_ids = fresh_batch(next_size());
            let n = biz_ids.len();
            errors.outcome(label, write(pool, w, biz_ids).await, n)
        }
    };
    let (window, tallies) = run_loops(clients, duration, op).await?;
    report(label, clients, &window, &tallies);
    Ok(())
}

/// The durability check: of the biz_ids in `ids` (each answered 2xx), how many lack their
/// notify journal row or their record. Prints one JSON line; fails if any is missing.
async fn verify(db: &str, ids: &std::path::Path) -> anyhow::Result<()> {
    let mut acked: Vec<String> = std::fs::read_to_string(ids)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    acked.sort();
    acked.dedup();
    // The acknowledged biz_ids with no journal row or no record.
    const MISSING: &str = "SELECT k.biz_id FROM {ids} \
         WHERE NOT EXISTS (SELECT 1 FROM callbacks c WHERE c.biz_id = k.biz_id AND c.kind = 'notify') \
            OR NOT EXISTS (SELECT 1 FROM verifications v WHERE v.biz_id = k.biz_id)";
    let missing: Vec<String> = if db.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(db).await?;
        let query = MISSING.replace("{ids}", "unnest($1::text[]) AS k(biz_id)");
        let missing = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .bind(&acked)
            .fetch_all(&pool)
            .await?;
        pool.close().await;
        missing
    } else {
        let pool = sqlx::SqlitePool::connect(db).await?;
        let query = MISSING.replace("{ids}", "(SELECT value AS biz_id FROM json_each($1)) AS k");
        let missing = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .bind(serde_json::to_string(&acked)?)
            .fetch_all(&pool)
            .await?;
        pool.close().await;
        missing
    };
    println!(
        "{{\"acked\":{},\"stored\":{},\"missing\":{}}}",
        acked.len(),
        acked.len() - missing.len(),
        missing.len()
    );
    if !missing.is_empty() {
        eprintln!(
            "loadgen verify: {} of {} acknowledged callbacks are not in the database, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(3)]
        );
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notify_seed_is_the_get_result_seed_without_its_images() {
        let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let mut get_result = parse(GET_RESULT_SEED);
        let images = get_result.as_object_mut().unwrap().remove("images");
        assert!(images.is_some(), "the get_result seed carries images");
        assert_eq!(parse(NOTIFY_SEED), get_result);
        let notify =
            faceid_receiver::protocol::payload::parse_callback_data(NOTIFY_SEED.as_bytes())
                .expect("the notify seed is a valid callback");
        assert_eq!(notify.biz_id.as_str(), SEED_BIZ_ID);
        assert!(
            !NOTIFY_SEED.contains("image"),
            "FaceID's callbacks carry no images"
        );
    }

    #[test]
    fn only_the_two_seeds_are_named() {
        assert_eq!(seed_named(""), Some(NOTIFY_SEED));
        assert_eq!(seed_named("notify"), Some(NOTIFY_SEED));
        assert_eq!(seed_named("get_result"), Some(GET_RESULT_SEED));
        assert_eq!(seed_named("get-result"), None);
    }

    #[test]
    fn the_template_body_is_the_signed_callbacks_form_body() {
        let template = CallbackTemplate::new("dev-secret".into());
        assert!(template.data_pieces.len() > 1, "the seed holds its biz_id");
        for biz_id in [
            fresh_biz_id(),
            SEED_BIZ_ID.to_owned(),
            "a b+c&d=é".to_owned(),
        ] {
            let expected = signed("dev-secret", &biz_id).form_body();
            assert_eq!(
                String::from_utf8(template.form_body(&biz_id)).unwrap(),
                expected,
                "biz_id {biz_id}"
            );
        }
    }
}
