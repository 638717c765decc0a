//! Test databases shared by the integration suites: a fresh SQLite file or a fresh
//! PostgreSQL database per test, removed afterwards.
//!
//! Include it at the root of a test target (other helpers refer to `crate::common`):
//! ```ignore
//! #[path = "../common/mod.rs"]
//! mod common;
//! ```
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_URL`]); that URL is
//! only used as the admin connection that creates `t_<uuid>` databases and drops them
//! (`WITH (FORCE)`, so a leaked pool connection cannot keep one alive). When no PostgreSQL
//! answers, tests skip with a loud message, unless `REQUIRE_POSTGRES=1` turns the skip into
//! a failure (CI).

// Each test target uses a different subset of these helpers.
#![allow(dead_code)]

pub mod binary;
pub mod browser;
pub mod capture;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use faceid_receiver::store::{self, ConnectOptions, Store};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long to wait for the admin connection before deciding PostgreSQL is not there.
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A temporary directory holding one SQLite database file; deleted on drop.
pub struct TempDirGuard {
    dir: tempfile::TempDir,
    url: String,
}

impl TempDirGuard {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("faceid-test-")
            .tempdir()
            .expect("create a temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Self { dir, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempDirGuard {
    fn default() -> Self {
        Self::new()
    }
}

/// A migrated SQLite store in its own temp dir; keep the guard alive as long as the store.
pub async fn sqlite_store() -> (Arc<dyn Store>, TempDirGuard) {
    let guard = TempDirGuard::new();
    let store = connect_migrated(guard.url()).await;
    (store, guard)
}

/// A PostgreSQL database created for one test, dropped when this is dropped (or earlier,
/// with [`TestDb::drop_database`]).
pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TestDb {
    /// The URL of the test's own database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, terminating any connection still open on it. Idempotent.
    pub async fn drop_database(&mut self) {
        if !self.dropped {
            drop_database(&self.admin_url, &self.name).await;
            self.dropped = true;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop can't await, and may run inside (or outside) a runtime: do the async drop on
        // a thread of its own with a private runtime, and wait for it so the database is
        // gone before the test process can exit.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(drop_database(&admin_url, &name));
        });
        if dropper.join().is_err() {
            eprintln!("test database {} may not have been dropped", self.name);
        }
    }
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {ADMIN_CONNECT_TIMEOUT:?}")),
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let result = async {
        let mut admin = admin_connection(admin_url).await?;
        // The name is ours (`t_` + hex), so quoting it is enough.
        let statement = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        admin.close().await.map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        eprintln!("could not drop test database {name}: {e}");
    }
}

fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Creates a fresh, empty database `t_<uuid>` on the test server, or `None` (after saying
/// so loudly) when no PostgreSQL answers and `REQUIRE_POSTGRES` is not `1`.
pub async fn postgres_url() -> Option<TestDb> {
    let admin_url =
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let mut admin = match admin_connection(&admin_url).await {
        Ok(admin) => admin,
        Err(e) => {
            let shown = redact(&admin_url);
            if postgres_required() {
                panic!("REQUIRE_POSTGRES=1 but PostgreSQL is not available at {shown}: {e}");
            }
            eprintln!(
                "!!! PostgreSQL not available at {shown} ({e}): skipping this PostgreSQL test"
            );
            eprintln!(
                "!!! set TEST_POSTGRES_URL to run it, REQUIRE_POSTGRES=1 to fail instead of skipping"
            );
            return None;
        }
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(&name);
    Some(TestDb {
        admin_url,
        name,
        url: url.into(),
        dropped: false,
    })
}

/// A migrated store on a fresh PostgreSQL database (see [`postgres_url`]).
pub async fn postgres_store() -> Option<(Arc<dyn Store>, TestDb)> {
    let db = postgres_url().await?;
    let store = connect_migrated(db.url()).await;
    Some((store, db))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.into()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

pub async fn connect_migrated(url: &str) -> Arc<dyn Store> {
    connect_migrated_with(url, &ConnectOptions::default()).await
}

/// [`connect_migrated`] with other connect options (e.g. group commit off).
pub async fn connect_migrated_with(url: &str, options: &ConnectOptions) -> Arc<dyn Store> {
    let store = store::connect(url, options)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate the test database");
    store
}

/// A fresh database of either engine, for suites that connect on their own (by URL).
pub struct TestDatabase {
    engine: Engine,
    guard: DatabaseGuard,
}

enum DatabaseGuard {
    Sqlite(TempDirGuard),
    Postgres(TestDb),
}

impl TestDatabase {
    /// `None` only for PostgreSQL when it is unavailable and not required.
    pub async fn create(engine: Engine) -> Option<Self> {
        let guard = match engine {
            Engine::Sqlite => DatabaseGuard::Sqlite(TempDirGuard::new()),
            Engine::Postgres => DatabaseGuard::Postgres(postgres_url().await?),
        };
        Some(Self { engine, guard })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn url(&self) -> &str {
        match &self.guard {
            DatabaseGuard::Sqlite(dir) => dir.url(),
            DatabaseGuard::Postgres(db) => db.url(),
        }
    }
}

/// Runs each case on both engines, as `sqlite::case` and `postgres::case`.
///
/// `store_tests!(a, b)` takes cases `async fn a(store: Arc<dyn Store>)` on a multi-thread
/// runtime: each gets a migrated store on a fresh database, closed and removed after the case
/// returns (and by the guards' `Drop` if it panics).
///
/// The long form names the test attribute (the runtime), and may add cases that set up their
/// own databases (a second store, other connect options, the URL to reconnect to): `async fn
/// c(engine: Engine)`, which open them with [`TestDatabase::create`] (and return when it
/// gives `None`):
/// ```ignore
/// crate::store_tests! {
///     test: #[tokio::test(flavor = "current_thread")],
///     stores: [a, b],
///     engines: [c],
/// }
/// ```
/// One invocation per module: it defines the modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! store_tests {
    ($($case:ident),* $(,)?) => {
        $crate::store_tests! {
            test: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
            stores: [$($case),*],
            engines: [],
        }
    };
    (
        test: #[$test:meta],
        stores: [$($case:ident),* $(,)?],
        engines: [$($by_engine:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(
                #[$test]
                async fn $case() {
                    let (store, _dir) = $crate::common::sqlite_store().await;
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
            $(
                #[$test]
                async fn $by_engine() {
                    super::$by_engine($crate::common::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[$test]
                async fn $case() {
                    let Some((store, mut db)) = $crate::common::postgres_store().await else {
                        return;
                    };
                    super::$case(store.clone()).await;
                    store.close().await;
                    db.drop_database().await;
                }
            )*
            $(
                #[$test]
                async fn $by_engine() {
                    super::$by_engine($crate::common::Engine::Postgres).await;
                }
            )*
        }
    };
}

/// Overwrites journal row `id`'s stored body with `raw`, byte for byte: how tests put into a
/// database what an older version wrote.
pub async fn force_journal_body(url: &str, id: i64, raw: &[u8]) {
    const SQL: &str = "UPDATE callbacks SET body = $1 WHERE id = $2";
    let done = if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let done = sqlx::query(SQL).bind(raw).bind(id).execute(&pool).await;
        pool.close().await;
        done.unwrap().rows_affected()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let done = sqlx::query(SQL).bind(raw).bind(id).execute(&pool).await;
        pool.close().await;
        done.unwrap().rows_affected()
    };
    assert_eq!(done, 1, "journal row {id}");
}

/// Journal row `id`'s body as stored.
pub async fn stored_journal_body(url: &str, id: i64) -> Vec<u8> {
    const SQL: &str = "SELECT body FROM callbacks WHERE id = $1";
    let body = if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let body = sqlx::query_scalar(SQL).bind(id).fetch_one(&pool).await;
        pool.close().await;
        body
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let body = sqlx::query_scalar(SQL).bind(id).fetch_one(&pool).await;
        pool.close().await;
        body
    };
    body.unwrap_or_else(|e| panic!("journal row {id}: {e}"))
}

/// The one text value `sql` (a query of one row and one column) reads, as stored: how tests
/// look at what reached the database.
pub async fn raw_text(url: &str, sql: &'static str) -> String {
    let value = if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let value = sqlx::query_scalar(sql).fetch_one(&pool).await;
        pool.close().await;
        value
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let value = sqlx::query_scalar(sql).fetch_one(&pool).await;
        pool.close().await;
        value
    };
    value.unwrap_or_else(|e| panic!("{sql}: {e}"))
}
