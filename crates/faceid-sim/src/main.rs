//! `faceid-sim`: the command line over [`faceid_sim`].
//!
//! - `faceid-sim serve` runs the get_result upstream (and its `/sim/*` control API);
//! - `faceid-sim send notify|return-post|return-get --to URL` delivers one callback;
//! - `faceid-sim listen --port N --secret whsec_…` receives the receiver's pushes, verifies
//!   them and prints one line per event.
//!
//! All logic lives in the library so integration tests use exactly what this binary does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::http::StatusCode;
use clap::{Args, Parser, Subcommand};
use faceid_protocol::clock::{Clock, SystemClock};
use faceid_protocol::webhook::EndpointSecret;
use faceid_sim::server::{DEFAULT_API_KEY, DEFAULT_API_SECRET};
use faceid_sim::{
    CallbackSpec, Delivery, Encoding, Forgery, ListenConfig, Listener, SignedCallback, SimConfig,
    Simulator, http_client, post_callback, return_get,
};

#[derive(Parser)]
#[command(
    name = "faceid-sim",
    version,
    about = "A FaceID Lite simulator: get_result upstream and callback sender"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve GET /faceid/lite/get_result and /faceid/lite/raw/get_result with FaceID's limits,
    /// plus the /sim/* control API (POST /sim/results, POST /sim/biz, GET /sim/calls[/{id}],
    /// POST /sim/reset).
    Serve(ServeArgs),
    /// Send one callback as FaceID would.
    #[command(subcommand)]
    Send(SendCommand),
    /// Receive the receiver's pushes (any path): verify each per Standard Webhooks, print one
    /// line per event, answer 2xx when verified (400/401 when not).
    Listen(ListenArgs),
}

#[derive(Args)]
struct ListenArgs {
    /// Port to listen on (0 picks a free one; the first line printed names it).
    #[arg(long, default_value_t = 8091)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The endpoint's secret, as shown when it was created (`whsec_…`).
    #[arg(long, env = "FACEID_SIM_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// A previous secret still accepted (during a rotation); may be repeated.
    #[arg(long)]
    previous_secret: Vec<String>,
    /// The status verified events are answered with.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    status: u16,
    /// Answer the first N verified events with --fail-status instead (to watch retries).
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(100..=599))]
    fail_status: u16,
    /// How far webhook-timestamp may be from this machine's clock.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    tolerance: std::time::Duration,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090", env = "FACEID_SIM_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    credentials: Credentials,
}

#[derive(Args)]
struct Credentials {
    /// The api_key get_result accepts.
    #[arg(long, default_value = DEFAULT_API_KEY, env = "FACEID_SIM_API_KEY")]
    api_key: String,
    /// The api_secret get_result accepts and callbacks are signed with.
    #[arg(long, default_value = DEFAULT_API_SECRET, env = "FACEID_SIM_API_SECRET", hide_env_values = true)]
    api_secret: String,
}

#[derive(Subcommand)]
enum SendCommand {
    /// POST a signed result to a notify_url (server to server).
    Notify(PostArgs),
    /// POST a signed result to a return_url, as the user's browser does in POST mode.
    ReturnPost(PostArgs),
    /// GET <return_url>?biz_id=… as the user's browser does in GET mode (no signature).
    ReturnGet(GetArgs),
}

#[derive(Args)]
struct PostArgs {
    /// The notify_url or return_url.
    #[arg(long)]
    to: String,
    /// The result's status (OK, FAILED, PROCESSING, NOT_STARTED, CANCELLED, TIMEOUT,
    /// WEBRTC_UNSUPPORTED, or any text).
    #[arg(long, default_value = "OK")]
    status: String,
    /// biz_id of the result; a fresh `<now>,<uuid>` when omitted.
    #[arg(long)]
    biz_id: Option<String>,
    #[arg(long)]
    biz_no: Option<String>,
    #[arg(long)]
    biz_extra_data: Option<String>,
    /// liveness_result.result (default PASS for OK, FAIL otherwise).
    #[arg(long)]
    liveness: Option<String>,
    /// verify_result.result_faceid.confidence.
    #[arg(long)]
    confidence: Option<f64>,
    /// Send this file's bytes as `data`, verbatim (e.g. tests/vectors/seed_get_result_ok.json).
    #[arg(long, conflicts_with_all = ["status", "biz_id", "biz_no", "biz_extra_data", "liveness", "confidence"])]
    data_file: Option<PathBuf>,
    /// How data and sign travel.
    #[arg(long, value_enum, default_value_t = Encoding::Form)]
    encoding: Encoding,
    /// Get the signature wrong on purpose.
    #[arg(long, value_enum)]
    forge: Option<Forgery>,
    /// What `--forge length-extension` appends.
    #[arg(long, default_value = faceid_sim::sender::DEFAULT_EXTENSION_TAIL, requires = "forge")]
    tail: String,
    /// The secret callbacks are signed with.
    #[arg(long, default_value = DEFAULT_API_SECRET, env = "FACEID_SIM_API_SECRET", hide_env_values = true)]
    api_secret: String,
}

#[derive(Args)]
struct GetArgs {
    /// The return_url; biz_id is appended to its query.
    #[arg(long)]
    to: String,
    /// biz_id to append; a fresh `<now>,<uuid>` when omitted.
    #[arg(long)]
    biz_id: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Send(command) => send(command).await,
        Command::Listen(args) => listen(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faceid-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = SimConfig {
        api_key: args.credentials.api_key,
        api_secret: args.credentials.api_secret,
    };
    let sim = Simulator::new(config, Arc::new(SystemClock));
    let server = sim
        .bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "faceid-sim listening on {} (set megvii.base_url to this)",
        server.base_url()
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    server
        .shutdown()
        .await
        .context("server stopped with an error")
}

async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let parse = |what: &str, text: &str| {
        EndpointSecret::parse(text).with_context(|| format!("{what} is not an endpoint secret"))
    };
    let mut secrets = vec![parse("--secret", &args.secret)?];
    for previous in &args.previous_secret {
        secrets.push(parse("--previous-secret", previous)?);
    }
    let status = |code: u16| StatusCode::from_u16(code).context("not an HTTP status");
    let config = ListenConfig {
        secrets,
        tolerance: args.tolerance,
        status: status(args.status)?,
        fail_first: args.fail_first,
        fail_status: status(args.fail_status)?,
    };
    let listener = Listener::new(config, Arc::new(SystemClock), |received| {
        println!("{received}")
    });
    let addr = SocketAddr::new(args.host, args.port);
    let socket = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!(
        "faceid-sim listening for webhooks on http://{}",
        socket.local_addr().context("no local address")?
    );
    axum::serve(socket, listener.router())
        .with_graceful_shutdown(async {
            // An error here means Ctrl-C cannot be awaited: stop rather than run unstoppable.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server stopped with an error")
}

async fn send(command: SendCommand) -> anyhow::Result<()> {
    let client = http_client().context("cannot build the HTTP client")?;
    let delivery = match command {
        SendCommand::Notify(args) | SendCommand::ReturnPost(args) => {
            let (data, biz_id) = match &args.data_file {
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    (bytes, None)
                }
                None => {
                    let spec = CallbackSpec {
                        status: args.status.clone(),
                        biz_id: args.biz_id.clone(),
                        biz_no: args.biz_no.clone(),
                        biz_extra_data: args.biz_extra_data.clone(),
                        liveness: args.liveness.clone(),
                        confidence: args.confidence,
                    };
                    let (biz_id, data) = spec.build(SystemClock.now_ms());
                    (data.into_bytes(), Some(biz_id))
                }
            };
            let mut callback = SignedCallback::sign(&args.api_secret, data);
            if let Some(forgery) = args.forge {
                callback = callback.forge(&args.api_secret, forgery, Some(args.tail.as_bytes()));
                eprintln!("forged: {forgery}");
            }
            if let Some(biz_id) = biz_id {
                eprintln!("biz_id: {biz_id}");
            }
            eprintln!(
                "sign: {} ({} bytes of data, {:?})",
                callback.sign,
                callback.data.len(),
                args.encoding
            );
            post_callback(&client, &args.to, &callback, args.encoding)
                .await
                .with_context(|| format!("cannot deliver to {}", args.to))?
        }
        SendCommand::ReturnGet(args) => {
            let biz_id = args
                .biz_id
                .unwrap_or_else(|| faceid_sim::mint_biz_id(SystemClock.now_ms()));
            eprintln!("biz_id: {biz_id}");
            return_get(&client, &args.to, &biz_id)
                .await
                .with_context(|| format!("cannot deliver to {}", args.to))?
        }
    };
    print_delivery(&delivery);
    Ok(())
}

fn print_delivery(delivery: &Delivery) {
    println!("HTTP {}", delivery.status);
    if let Some(location) = &delivery.location {
        println!("Location: {location}");
    }
    if !delivery.body.is_empty() {
        println!("{}", delivery.body);
    }
}
