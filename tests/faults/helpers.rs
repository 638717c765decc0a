//! Real `faceid-receiver serve` processes, a notify load generator and store checks.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faceid_receiver::clock::{Clock, SystemClock};
use faceid_receiver::store::{CallbackQuery, Store};
use faceid_sim::{CallbackSpec, Encoding, SignedCallback, post_callback};

/// Credentials of the instances started here (the simulator's defaults, so it can be the
/// upstream too).
pub const KEY: &str = "dev-key";
pub const SECRET: &str = "dev-secret";
pub const TOKEN: &str = "faults-test-token";

/// How long a process gets to bind and answer `/readyz`.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Log lines kept per process, printed when it fails to start.
const KEPT_LOG_LINES: usize = 200;

/// One `faceid-receiver serve` child process, SIGKILLed when dropped.
pub struct Serve {
    child: Child,
    pub base: String,
    log: Arc<Mutex<VecDeque<String>>>,
    /// The lease owner ids of its follow-up workers, from their `follow-up worker started`
    /// log lines.
    owners: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `serve` on 127.0.0.1:0 with `db_url`, waits until it listens and `/readyz`
    /// answers 200. `extra` overrides any variable (`("APP__FETCH__LEASE", "2s")`).
    pub async fn start(db_url: &str, extra: &[(&str, &str)]) -> Serve {
        let serve = Self::spawn(db_url, extra).await;
        serve.wait_ready(START_DEADLINE).await;
        serve
    }

    /// Starts `serve` and waits until it listens (the database may be down).
    pub async fn spawn(db_url: &str, extra: &[(&str, &str)]) -> Serve {
        let db_url = db_url.to_owned();
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || Self::spawn_blocking(&db_url, &extra))
            .await
            .expect("spawn serve")
    }

    fn spawn_blocking(db_url: &str, extra: &[(String, String)]) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_faceid-receiver"));
        command
            .arg("serve")
            .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")))
            .env_clear()
            .env("APP_ENVIRONMENT", "development")
            .env("APP__SERVER__LISTEN", "127.0.0.1:0")
            // All load comes from one loopback address: the per-IP limit would measure itself.
            .env("APP__SERVER__RATE_LIMIT_PER_SECOND", "0")
            .env("APP__SERVER__RETURN_GET_PER_MINUTE", "0")
            .env("APP__DATABASE__URL", db_url)
            .env("APP__MEGVII__API_KEY", KEY)
            .env("APP__MEGVII__API_SECRET", SECRET)
            // Nothing listens there: no follow-up leaves the machine unless a test says so.
            .env("APP__MEGVII__BASE_URL", "http://127.0.0.1:9")
            .env("APP__API__TOKENS", TOKEN)
            .env("APP__TELEMETRY__FORMAT", "json")
            .env("APP__TELEMETRY__FILTER", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start faceid-receiver serve");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let owners = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
        // Drain both pipes for the life of the process (a full pipe would block it), keeping
        // the last lines for diagnostics and reporting the `listening` address once.
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (pipe, tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(addr_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let (log, owners) = (log.clone(), owners.clone());
            std::thread::spawn(move || {
                let mut tx = tx;
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(sender) = &tx
                        && let Some(addr) = listening_addr(&line)
                    {
                        let _ = sender.send(addr);
                        tx = None;
                    }
                    if let Some(owner) = worker_owner(&line) {
                        owners.lock().unwrap().push(owner);
                    }
                    let mut log = log.lock().unwrap();
                    if log.len() == KEPT_LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        match addr_rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => Serve {
                child,
                base: format!("http://{addr}"),
                log,
                owners,
            },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "serve did not listen within {START_DEADLINE:?} ({status:?}); last lines:\n{}",
                    log.lock()
                        .unwrap()
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }

    /// Polls `/readyz` until it answers `want`, or panics after `deadline`.
    pub async fn wait_readyz(&self, want: u16, deadline: Duration) {
        let client = client();
        let started = Instant::now();
        loop {
            let status = client
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok();
            if status == Some(want) {
                return;
            }
            assert!(
                started.elapsed() < deadline,
                "/readyz still {status:?} (want {want}) after {deadline:?}; last lines:\n{}",
                self.last_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, deadline: Duration) {
        self.wait_readyz(200, deadline).await;
    }

    /// `kill -9`, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether one of its follow-up workers leases jobs as `owner`.
    pub fn owns(&self, owner: &str) -> bool {
        self.owners.lock().unwrap().iter().any(|o| o == owner)
    }

    /// Still running (never exited on its own)?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn last_log(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `addr` of a JSON `listening` log line.
fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "listening" {
        return None;
    }
    Some(value.get("addr")?.as_str()?.to_owned())
}

/// The `owner` of a JSON `follow-up worker started` log line.
fn worker_owner(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "follow-up worker started" {
        return None;
    }
    Some(value.get("owner")?.as_str()?.to_owned())
}

/// A client that follows no redirects.
pub fn client() -> reqwest::Client {
    faceid_receiver::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// A signed notify for a fresh, unique biz_id.
pub fn unique_notify(n: usize) -> (String, SignedCallback) {
    let now_ms = SystemClock.now_ms();
    let (biz_id, data) = CallbackSpec::new("OK")
        .biz_no(format!("faults-{n}"))
        .build(now_ms);
    (biz_id, SignedCallback::sign(SECRET, data))
}

/// One notify sent by [`NotifyLoad`].
#[derive(Debug, Clone)]
pub struct Sent {
    pub biz_id: String,
    /// `None`: no HTTP answer (connection refused or reset, timeout).
    pub status: Option<u16>,
    pub started: Instant,
    pub finished: Instant,
}

impl Sent {
    pub fn is_2xx(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// `concurrency` tasks posting signed unique notifies back to back until stopped.
pub struct NotifyLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NotifyLoad {
    pub fn start(base: &str, concurrency: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let url = format!("{base}/faceid/notify");
        let client = client();
        let tasks = (0..concurrency)
            .map(|task| {
                let (stop, sent, url, client) =
                    (stop.clone(), sent.clone(), url.clone(), client.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let (biz_id, callback) = unique_notify(task * 1_000_000 + n);
                        let started = Instant::now();
                        let status = post_callback(&client, &url, &callback, Encoding::Form)
                            .await
                            .ok()
                            .map(|d| d.status);
                        let finished = Instant::now();
                        let no_answer = status.is_none();
                        sent.lock().unwrap().push(Sent {
                            biz_id,
                            status,
                            started,
                            finished,
                        });
                        if no_answer {
                            // Connection refused after a kill comes back at once: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Self { stop, sent, tasks }
    }

    pub fn snapshot(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Polls until `pred` holds over what was sent, or panics after `deadline`.
    pub async fn wait_for(&self, what: &str, deadline: Duration, pred: impl Fn(&[Sent]) -> bool) {
        let started = Instant::now();
        loop {
            if pred(&self.sent.lock().unwrap()) {
                return;
            }
            assert!(
                started.elapsed() < deadline,
                "no {what} after {deadline:?}: {}",
                summary(&self.snapshot())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the senders and waits for the requests in flight to end.
    pub async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("sender task");
        }
        Arc::try_unwrap(self.sent)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|arc| arc.lock().unwrap().clone())
    }
}

/// Counts by status, for messages: `200: 512, 503: 40, none: 16`.
pub fn summary(sent: &[Sent]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for s in sent {
        let key = s
            .status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "no answer".into());
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Panics unless every 2xx'd biz_id has its verification row and at least one journal row.
pub async fn assert_all_acked_stored(store: &Arc<dyn Store>, sent: &[Sent]) -> usize {
    let acked: Vec<&Sent> = sent.iter().filter(|s| s.is_2xx()).collect();
    let mut missing = Vec::new();
    for s in &acked {
        let row = store.get(&s.biz_id).await.expect("read verification");
        let journal = store
            .callbacks(&CallbackQuery {
                biz_id: Some(s.biz_id.clone()),
                verified: None,
                limit: 10,
                before_id: None,
            })
            .await
            .expect("read journal");
        if row.is_none() || journal.is_empty() {
            missing.push(format!(
                "{} (verification: {}, journal rows: {})",
                s.biz_id,
                row.is_some(),
                journal.len()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged callbacks are not stored: {:?}",
        missing.len(),
        acked.len(),
        missing
    );
    acked.len()
}
