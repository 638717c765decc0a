//! Wiring: settings → store (migrated) → router and the follow-up worker → bound listeners
//! (`server.listen`, and `server.admin_listen` for `/metrics` when set).
//!
//! [`Application::build`] binds before returning (port 0 in tests), so callers know the
//! address before serving. The HTTP server and the worker run as two tasks sharing the
//! [`CancellationToken`] passed to [`Application::run_until_stopped`] — passed in, never
//! global, so several applications can share one test process. When either task ends, the
//! token is cancelled so the other ends too, and which one ended first is logged. A third
//! task purges identity data by `retention.*` on the same token (idle when retention is
//! off), and a fourth is the push dispatcher (`push::dispatcher`); neither ends by itself,
//! so they are simply stopped with the others.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{DEV_TOKEN, Settings};
use crate::fetcher;
use crate::http::{self, AppState};
use crate::push::dispatcher::{self, Dispatcher};
use crate::store::{self, ApiStore, ConnectOptions, Store};

pub struct Application {
    /// Every part of the store; the tasks each get theirs: the HTTP surface its serving part
    /// (in `state`), the worker its follow-up part, retention its maintenance part.
    store: Arc<dyn Store>,
    listener: TcpListener,
    /// `server.admin_listen`, bound when set.
    admin_listener: Option<TcpListener>,
    state: AppState,
    /// `None` when built [`Application::without_worker`].
    worker: Option<fetcher::Context>,
    /// The push dispatcher; `None` when built [`Application::without_dispatcher`].
    dispatcher: Option<Dispatcher>,
}

impl Application {
    /// Connects and migrates the configured database, then binds `server.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = connect_store(&settings).await?;
        store
            .migrate()
            .await
            .context("applying database migrations")?;
        check_keys(store.as_ref()).await?;
        Self::build_with(settings, store, Arc::new(SystemClock)).await
    }

    /// Like [`Application::build`] with a given (already migrated) store and clock: tests
    /// use this to share a store with their assertions and to step time.
    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let admin_listener = match settings.server.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding server.admin_listen {addr}"))?,
            ),
            None => None,
        };
        if settings
            .api
            .tokens
            .iter()
            .any(|t| t.token.expose_secret() == DEV_TOKEN)
        {
            tracing::warn!("development API token in use: Authorization: Bearer {DEV_TOKEN}");
        }
        let worker = fetcher::Context::new(&settings, store.clone(), clock.clone())?;
        let dispatcher = Dispatcher::new(&settings.push, store.clone(), clock.clone())?;
        let max_streams = settings.push.max_streams as usize;
        let push_client = crate::push::PushClient::new(settings.push.client())?;
        let state = AppState {
            store: store.clone(),
            refused_quota: Arc::new(http::journal::RefusedQuota::new(
                settings.retention.refused_bytes_per_day,
            )),
            settings: Arc::new(settings),
            clock,
            wake_fetcher: Arc::new(tokio::sync::Notify::new()),
            metrics: crate::metrics::install(),
            streams: Arc::new(tokio::sync::Semaphore::new(max_streams)),
            stop_streams: CancellationToken::new(),
            push_client,
        };
        Ok(Self {
            store,
            listener,
            admin_listener,
            state,
            worker: Some(worker),
            dispatcher: Some(dispatcher),
        })
    }

    /// Serves HTTP only, without the follow-up worker (tests that drive
    /// [`fetcher::run_once`] themselves).
    pub fn without_worker(mut self) -> Self {
        self.worker = None;
        self
    }

    /// Serves without the push dispatcher (tests that drive
    /// [`Dispatcher::run_once`] themselves).
    pub fn without_dispatcher(mut self) -> Self {
        self.dispatcher = None;
        self
    }

    /// Replaces the push dispatcher (tests give it a client that resolves names their way).
    pub fn with_dispatcher(mut self, dispatcher: Dispatcher) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin listener's address, when `server.admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves (and follows up) until `shutdown` is cancelled or a task ends, then lets
    /// in-flight requests and the worker's current pass finish — for at most
    /// `server.shutdown_timeout`, after which it returns an error (the binary exits 1).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let limits = http::serve::Limits::from(&self.state.settings.server);
        tracing::info!(%addr, admin = ?self.admin_addr(), database = self.state.store.engine(), "listening");
        let public = http::serve::serve(
            self.listener,
            http::router(self.state.clone()),
            limits,
            shutdown.clone(),
        );
        let admin = self.admin_listener.map(|listener| {
            http::serve::serve(
                listener,
                http::admin_router(self.state.clone()),
                limits,
                shutdown.clone(),
            )
        });
        // Both listeners are "the http server": they stop together, on the token.
        let mut server = tokio::spawn(async move {
            match admin {
                Some(admin) => drop(tokio::join!(public, admin)),
                None => public.await,
            }
            Ok(())
        });
        let retention = tokio::spawn(crate::retention::run(
            self.store.clone(),
            self.state.settings.retention.clone(),
            self.state.clock.clone(),
            shutdown.clone(),
        ));
        // The push dispatcher: on its own task, like retention stopped by the token.
        let push_wake = Arc::new(tokio::sync::Notify::new());
        let push_shutdown = shutdown.clone();
        let push = tokio::spawn(async move {
            match self.dispatcher {
                Some(d) => dispatcher::run(d, push_wake, push_shutdown).await,
                None => Ok(()),
            }
        });
        // Event streams end when the server stops (see `AppState::stop_streams`).
        let (stop_streams, stopping) = (self.state.stop_streams.clone(), shutdown.clone());
        tokio::spawn(async move {
            stopping.cancelled().await;
            stop_streams.cancel();
        });
        let wake = self.state.wake_fetcher.clone();
        let worker_shutdown = shutdown.clone();
        let mut worker = tokio::spawn(async move {
            match self.worker {
                Some(ctx) => fetcher::run(ctx, wake, worker_shutdown).await,
                // Without a worker there is nothing to do but wait for the end.
                None => {
                    worker_shutdown.cancelled().await;
                    Ok(())
                }
            }
        });

        let abort_server = server.abort_handle();
        let abort_worker = worker.abort_handle();
        let abort_retention = retention.abort_handle();
        let abort_push = push.abort_handle();
        // Whichever task ends first ends the other: a receiver that stopped following up,
        // or stopped serving, must not keep running half-alive.
        let both = async {
            let (server_result, worker_result) = tokio::select! {
                result = &mut server => {
                    report_exit("http server", &result);
                    shutdown.cancel();
                    let worker_result = worker.await;
                    report_exit("follow-up worker", &worker_result);
                    (result, worker_result)
                }
                result = &mut worker => {
                    report_exit("follow-up worker", &result);
                    shutdown.cancel();
                    let server_result = server.await;
                    report_exit("http server", &server_result);
                    (server_result, result)
                }
            };
            // Retention stops on the same token, which both branches above have cancelled.
            let retention_result = retention.await;
            report_exit("retention", &retention_result);
            let push_result = push.await;
            report_exit("push dispatcher", &push_result);
            flatten(server_result)
                .and(flatten(worker_result))
                .and(flatten(retention_result))
                .and(flatten(push_result))
        };
        // Once stopping, in-flight requests and the worker's pass get `shutdown_timeout`;
        // a client holding a connection open must not keep the process alive forever.
        let grace = self.state.settings.server.shutdown_timeout;
        let deadline = async {
            shutdown.cancelled().await;
            tracing::info!(
                ?grace,
                "stopping: no new connections; finishing in-flight work"
            );
            tokio::time::sleep(grace).await;
        };
        // `biased`, deadline first: once stopping, the poll that sees the cancellation logs
        // "stopping" before `both` can finish. Unbiased, a fast shutdown (every task already
        // done by the time this future is polled) could skip that line at random.
        tokio::select! {
            biased;
            () = deadline => {
                abort_server.abort();
                abort_worker.abort();
                abort_retention.abort();
                abort_push.abort();
                tracing::error!(?grace, "graceful shutdown did not finish in time; stopping anyway");
                Err(anyhow::anyhow!(
                    "graceful shutdown did not finish within server.shutdown_timeout ({})",
                    humantime::format_duration(grace)
                ))
            }
            result = both => result,
        }
    }
}

fn report_exit(task: &str, result: &Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => tracing::info!(task, "task exited"),
        Ok(Err(e)) => tracing::error!(task, error.cause_chain = %format!("{e:#}"), "task failed"),
        Err(e) => tracing::error!(task, error.message = %e, "task panicked or was cancelled"),
    }
}

fn flatten(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    result.map_err(|e| anyhow::anyhow!("task did not complete: {e}"))?
}

/// Connects the configured database, with the configured encryption keys (values encrypted
/// earlier are recognised, and refused clearly, even if the key was removed from the
/// configuration).
pub async fn connect_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let keys = settings
        .encryption
        .keyring()
        .context("encryption keys are invalid")?;
    let options = ConnectOptions {
        max_connections: settings.database.max_connections,
        connect_timeout: settings.database.connect_timeout,
        sqlite_synchronous: settings.database.sqlite_synchronous.clone(),
        group_commit: settings.database.group_commit,
        group_commit_max: settings.database.group_commit_max,
        keys,
    };
    store::connect(settings.database.url.expose_secret(), &options)
        .await
        .with_context(|| format!("connecting to {}", settings.database.redacted_url()))
}

/// Fails when the newest stored result does not decrypt with the configured keys: a wrong
/// `encryption.key` stops startup with the key id in the message, instead of failing every
/// read afterwards. (A database with no encrypted result yet passes.)
pub async fn check_keys(store: &dyn ApiStore) -> anyhow::Result<()> {
    let newest = store::ListQuery {
        limit: 1,
        ..Default::default()
    };
    match store.list(&newest).await {
        Err(e @ store::StoreError::Decrypt(_)) => Err(anyhow::Error::new(e)
            .context("encryption.key / encryption.previous_keys do not decrypt the stored data")),
        _ => Ok(()),
    }
}
