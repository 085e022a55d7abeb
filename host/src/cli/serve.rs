//! `sandbox-host serve`: the host as an iii worker. Registers every plugin's functions
//! and the router, serves until SIGINT/SIGTERM, then drains in-flight calls within the
//! grace period and exits 0.

use super::GlobalArgs;
use crate::bridge::iii::{Bridge, BridgeOptions};
use crate::Host;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// iii engine WebSocket URL.
    #[arg(long, env = "III_URL", default_value = iii_sdk::DEFAULT_ENGINE_URL)]
    pub iii_url: String,
    /// Do not register the `sandbox::<leaf>` router (another worker provides it).
    #[arg(long)]
    pub no_router: bool,
    /// Provider the router uses when a call names none.
    #[arg(long, env = "SANDBOX_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,
    /// Seconds in-flight calls may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Send OpenTelemetry data to the engine (default: the SDK's, i.e. OTEL_ENABLED).
    #[arg(long)]
    pub otel: Option<bool>,
}

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<u8> {
    let mut config = global.host_config()?;
    if args.no_router {
        config.router = false;
    }
    if args.default_provider.is_some() {
        config.default_provider = args.default_provider.clone();
    }
    let (host, diags) = Host::start(config).await?;
    for d in &diags {
        eprintln!("warning: plugin not loaded: {d}");
    }
    let bridge = Bridge::connect(host.clone(), &BridgeOptions { url: args.iii_url.clone(), otel: args.otel });
    eprintln!("serving {} functions on {} (Ctrl-C to stop)", bridge.function_ids().len(), args.iii_url);
    for id in bridge.function_ids() {
        tracing::info!("registered {id}");
    }
    wait_for_signal().await;
    eprintln!("shutting down: draining {} in-flight call(s), grace {} s", bridge.in_flight(), args.grace_secs);
    let drained = bridge.drain(Duration::from_secs(args.grace_secs)).await;
    if !drained {
        eprintln!("warning: {} call(s) still running after the grace period; they are abandoned", bridge.in_flight());
    }
    bridge.shutdown().await;
    Ok(0)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
