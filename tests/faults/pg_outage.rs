//! PostgreSQL stopped (`pg_ctl stop -m immediate`, i.e. a crash) and restarted under notify
//! load, without restarting `serve`: 503s during the outage and never a 2xx, `/readyz` 503
//! during and 200 after, acknowledgements again after, and every 2xx'd callback stored.
//!
//! The shared cluster on 5432 is never touched: the test runs a private PostgreSQL (`initdb`
//! into a temp dir, its own port and socket dir), as the `postgres` user when run as root,
//! since PostgreSQL refuses to run as root. Without PostgreSQL's binaries it skips loudly,
//! unless `REQUIRE_POSTGRES=1`, under which it fails: CI installs PostgreSQL, so a skip there
//! would hide a broken test.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use crate::helpers::*;

const CONCURRENCY: usize = 8;

/// A throwaway PostgreSQL server in a temp dir; stopped (immediately) when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server tools through `runuser -u postgres` (we are root).
    as_postgres: bool,
}

impl PrivatePostgres {
    /// `Err` says why a private server can't be had here.
    pub fn create() -> Result<Self, String> {
        let bin = postgres_bin().ok_or("no /usr/lib/postgresql/*/bin/initdb (and no PG_BIN)")?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("faceid-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()))
                .map_err(|e| format!("chown the temp dir to postgres: {e}"))?;
        }
        let port = free_port();
        let pg = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        pg.tool(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        pg.start()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn tool(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.args(args).current_dir(self.dir.path());
        run(&mut command).map_err(|e| format!("{name}: {e}"))
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl -w`).
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops it the way a crash would: no checkpoint, clients cut off.
    pub fn stop_immediately(&self) -> Result<(), String> {
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop_immediately();
    }
}

fn postgres_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(bin));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A private PostgreSQL, or `None` after saying loudly why not (a failure under
/// `REQUIRE_POSTGRES=1`).
pub async fn private_postgres() -> Option<PrivatePostgres> {
    match tokio::task::spawn_blocking(PrivatePostgres::create)
        .await
        .unwrap()
    {
        Ok(pg) => Some(pg),
        Err(why) => {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "REQUIRE_POSTGRES=1 but no private PostgreSQL instance could be made: {why}"
                );
            }
            eprintln!("!!! no private PostgreSQL instance ({why}): skipping this outage test");
            eprintln!("!!! install PostgreSQL (apt-get install postgresql) to run it");
            None
        }
    }
}

async fn blocking(what: &'static str, f: impl FnOnce() -> Result<(), String> + Send + 'static) {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_load() {
    let Some(pg) = private_postgres().await else {
        return;
    };
    let pg = std::sync::Arc::new(pg);
    let test_started = Instant::now();
    let mut serve = Serve::start(
        &pg.url(),
        &[
            ("APP__DATABASE__CONNECT_TIMEOUT", "1s"),
            ("APP__DATABASE__MAX_CONNECTIONS", "8"),
        ],
    )
    .await;
    let load = NotifyLoad::start(&serve.base, CONCURRENCY);
    load.wait_for("acknowledgements before", Duration::from_secs(60), |s| {
        s.iter().filter(|s| s.is_2xx()).count() >= 100
    })
    .await;

    // Crash the database under load.
    let p = pg.clone();
    blocking("pg_ctl stop", move || p.stop_immediately()).await;
    serve.wait_readyz(503, Duration::from_secs(30)).await;
    let outage_seen = Instant::now();
    load.wait_for("503s during the outage", Duration::from_secs(60), |s| {
        s.iter()
            .filter(|s| s.started > outage_seen && s.status == Some(503))
            .count()
            >= 2 * CONCURRENCY
    })
    .await;

    // Bring it back; the same `serve` process must recover on its own.
    let restart_at = Instant::now();
    let p = pg.clone();
    blocking("pg_ctl start", move || p.start()).await;
    serve.wait_ready(Duration::from_secs(60)).await;
    let recovered_at = Instant::now();
    load.wait_for("acknowledgements after", Duration::from_secs(60), |s| {
        s.iter()
            .filter(|s| s.started > recovered_at && s.is_2xx())
            .count()
            >= 100
    })
    .await;
    let sent = load.stop().await;
    assert!(serve.is_running(), "serve exited during the outage");

    // During the outage (sent after /readyz said 503, answered before the restart began):
    // 503 only.
    let during: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.started > outage_seen && s.finished < restart_at)
        .collect();
    let not_503: Vec<_> = during.iter().filter(|s| s.status != Some(503)).collect();
    assert!(
        not_503.is_empty(),
        "{} of {} requests during the outage were not answered 503: {not_503:?}",
        not_503.len(),
        during.len()
    );
    let unavailable = sent.iter().filter(|s| s.status == Some(503)).count();

    // No 2xx without a write: every acknowledged callback, before, across and after the
    // outage, is in the database.
    let store = common::connect_migrated(&pg.url()).await;
    let acked = assert_all_acked_stored(&store, &sent).await;
    store.close().await;
    eprintln!(
        "PostgreSQL outage: {} requests ({}); {} during the outage, all 503 ({unavailable} 503s in all); \
         all {acked} acknowledged stored; recovery {:?} after restart; {:?} in all",
        sent.len(),
        summary(&sent),
        during.len(),
        recovered_at - restart_at,
        test_started.elapsed()
    );
    drop(serve);
}
