//! Wiring: settings → store (migrated) → router and background tasks → a bound listener.
//!
//! [`Application::build`] binds before returning (port 0 in tests), so callers know the
//! address before serving. Everything runs until the [`CancellationToken`] passed to
//! [`Application::run_until_stopped`] is cancelled — passed in, never global, so several
//! applications can share one test process.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{DEV_TOKEN, Settings};
use crate::http::{self, AppState};
use crate::store::{self, ConnectOptions, Store};

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects and migrates the configured database, then binds `server.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = connect_store(&settings).await?;
        store
            .migrate()
            .await
            .context("applying database migrations")?;
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
        if settings
            .api
            .tokens
            .iter()
            .any(|t| t.token.expose_secret() == DEV_TOKEN)
        {
            tracing::warn!("development API token in use: Authorization: Bearer {DEV_TOKEN}");
        }
        let state = AppState {
            store,
            settings: Arc::new(settings),
            clock,
            wake_fetcher: Arc::new(tokio::sync::Notify::new()),
            metrics: crate::metrics::install(),
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let router = http::router(self.state.clone());
        tracing::info!(%addr, database = self.state.store.engine(), "listening");
        let server = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let result = server.await.context("HTTP server failed");
        // Whatever ended the server ends everything else too.
        shutdown.cancel();
        result
    }
}

pub async fn connect_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let options = ConnectOptions {
        max_connections: settings.database.max_connections,
        connect_timeout: settings.database.connect_timeout,
        sqlite_synchronous: settings.database.sqlite_synchronous.clone(),
    };
    store::connect(settings.database.url.expose_secret(), &options)
        .await
        .with_context(|| format!("connecting to {}", settings.database.redacted_url()))
}
