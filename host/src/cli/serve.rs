//! `sandbox-host serve`: the host as an iii worker. Registers every plugin's functions
//! (and, with `--router`, the bare `sandbox::<leaf>` ids no other worker owns), serves
//! until SIGINT/SIGTERM, then drains in-flight calls within the grace period and exits 0.
//!
//! Several hosts may serve one engine (README "More than one host"): the slot books live
//! in iii state (`--shared-state`, the default here), the first host to register an id
//! owns it and the others wait as standbys (`bridge/iii/ownership.rs`), and
//! `--providers` splits providers across hosts (the router forwards to the one serving).

use super::out::errln;
use super::GlobalArgs;
use crate::bridge::iii::{Bridge, BridgeOptions, Serving};
use crate::plugin::watch::{watch, ReloadListener};
use crate::Host;
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// iii engine WebSocket URL.
    #[arg(long, env = "III_URL", default_value = iii_sdk::DEFAULT_ENGINE_URL)]
    pub iii_url: String,
    /// Also register the `sandbox::<leaf>` router ids, each only if no other worker (such
    /// as the engine's own `iii-sandbox` daemon) owns it; the log names those left alone.
    #[arg(long, conflicts_with = "no_router")]
    pub router: bool,
    /// Do not register the router even if the host config enables it.
    #[arg(long)]
    pub no_router: bool,
    /// Provider the router uses when a call names none.
    #[arg(long, env = "SANDBOX_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,
    /// Serve only these providers (comma-separated), leaving the others to other hosts;
    /// the router forwards calls for those through the engine.
    #[arg(long, value_delimiter = ',')]
    pub providers: Option<Vec<String>>,
    /// Keep the concurrency caps and the record of created sandboxes in iii state
    /// (`state::*`), shared by every host on the engine (the default).
    #[arg(long, conflicts_with = "no_shared_state")]
    pub shared_state: bool,
    /// Keep them in this process instead (one host per engine only).
    #[arg(long)]
    pub no_shared_state: bool,
    /// This host's worker name on the engine, unique among its workers (default: the
    /// SDK's `hostname:pid`).
    #[arg(long, env = "III_WORKER_NAME")]
    pub worker_name: Option<String>,
    /// Seconds in-flight calls may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Send OpenTelemetry data to the engine (default: the SDK's, i.e. OTEL_ENABLED).
    #[arg(long)]
    pub otel: Option<bool>,
    /// Do not watch the plugins directory for new, replaced or deleted plugins.
    #[arg(long)]
    pub no_watch: bool,
    /// How often the plugins directory is polled, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub watch_interval_ms: u64,
    /// Serve Prometheus metrics (GET /metrics) and JSON stats (GET /stats) on this address.
    #[arg(long, env = "SANDBOX_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Also serve the E2B-compatible API (see `e2b-api`), in this process.
    #[arg(long)]
    pub e2b_api: bool,
    /// Its address (default: `[e2b_api] listen`, else 127.0.0.1:3000).
    #[arg(long, requires = "e2b_api")]
    pub e2b_api_listen: Option<std::net::SocketAddr>,
    /// Serve it without API keys; refused unless the address is loopback.
    #[arg(long, requires = "e2b_api")]
    pub e2b_api_insecure_no_auth: bool,
}

/// How long each provider's start-up list may take.
pub(crate) const RECONCILE_AT_START: Duration = Duration::from_secs(15);

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<u8> {
    let mut config = global.host_config()?;
    if args.router {
        config.router = true;
    }
    if args.no_router {
        config.router = false;
    }
    if args.default_provider.is_some() {
        config.default_provider = args.default_provider.clone();
    }
    if let Some(p) = &args.providers {
        config.providers = Some(p.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    }
    let shared_state = !args.no_shared_state;
    let (host, diags) = Host::start(config).await?;
    for d in &diags {
        errln!("warning: plugin not loaded: {d}");
    }
    // Before taking calls: the concurrency cap also counts sandboxes created before this
    // start. Every provider at once, each bounded, so a slow or unreachable one holds
    // neither the worker nor the others back; the ones that failed are retried later.
    // A shared book is counted once connected (the engine holds it), by the bridge.
    let unknown = if shared_state { Vec::new() } else { host.reconcile_all(RECONCILE_AT_START).await };
    if !unknown.is_empty() {
        errln!("warning: could not learn the running sandboxes of {}; retrying in the background", unknown.join(", "));
    }
    let serving = Serving { worker_name: args.worker_name.clone(), shared_state };
    let bridge = Bridge::connect_with(host.clone(), &BridgeOptions { url: args.iii_url.clone(), otel: args.otel }, &serving);
    let book = if shared_state { "slot books in iii state" } else { "slot books in this process" };
    errln!("worker {:?}, {book}; the first host to register an id owns it, later ones wait as standbys", bridge.worker_name());
    // The router's ids are claimed once connected (router_claims.rs logs the outcome).
    let router = if host.config.router { ", plus the router ids no other worker owns" } else { "" };
    if shared_state {
        errln!("serving on {} once the running sandboxes are counted{router} (Ctrl-C to stop)", args.iii_url);
    } else {
        errln!("serving {} functions{router} on {} (Ctrl-C to stop)", bridge.function_ids().len(), args.iii_url);
    }
    for id in bridge.function_ids() {
        tracing::info!("registered {id}");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if !unknown.is_empty() {
        let (host, stop) = (host.clone(), stop_rx.clone());
        tokio::spawn(async move { host.reconcile_until_known(unknown, stop).await });
    }
    if !args.no_watch {
        let listener: Arc<dyn ReloadListener> = bridge.clone();
        tokio::spawn(watch(host.clone(), Duration::from_millis(args.watch_interval_ms.max(10)), Some(listener), stop_rx.clone()));
    }
    if args.e2b_api {
        let bound = crate::cli::e2b_api::start(host.clone(), args.e2b_api_listen, args.e2b_api_insecure_no_auth, stop_rx.clone()).await?;
        errln!("e2b api on http://{bound}");
    }
    if let Some(addr) = args.metrics_addr {
        let bound = crate::cli::stats::serve_metrics(host.clone(), addr, stop_rx).await?;
        errln!("metrics on http://{bound}/metrics");
    }
    wait_for_signal().await;
    let _ = stop_tx.send(true);
    errln!("shutting down: draining {} in-flight call(s), grace {} s (a second signal stops at once)", bridge.in_flight(), args.grace_secs);
    let grace = Duration::from_secs(args.grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    // In-flight calls first, then the abandoned creates being stopped upstream.
    let drain = async {
        let drained = bridge.drain(grace).await;
        let settled = host.settling.wait(deadline.saturating_duration_since(tokio::time::Instant::now())).await;
        (drained, settled)
    };
    tokio::select! {
        (drained, settled) = drain => {
            if !drained {
                errln!("warning: {} call(s) still running after the grace period; they are abandoned", bridge.in_flight());
            }
            if !settled {
                errln!("warning: {} abandoned create(s) not yet settled; check the providers for sandboxes started by them", host.settling.running());
            }
        }
        _ = wait_for_signal() => errln!("second signal: stopping now; {} call(s) abandoned", bridge.in_flight()),
    }
    bridge.shutdown().await;
    Ok(0)
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
