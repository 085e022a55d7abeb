//! `sandbox-host e2b-api`: the E2B-compatible API on its own, no engine needed
//! (`serve --e2b-api` runs the same beside the iii bridge, in one process).

use super::GlobalArgs;
use crate::e2b_api::config::{check_auth, Settings, DEFAULT_LISTEN};
use crate::e2b_api::E2bApi;
use crate::plugin::watch::watch;
use crate::Host;
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct E2bApiArgs {
    /// Address to serve on (default: `[e2b_api] listen`, else 127.0.0.1:3000).
    #[arg(long, env = "SANDBOX_E2B_API_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve without API keys; refused unless the address is loopback.
    #[arg(long = "e2b-api-insecure-no-auth")]
    pub insecure_no_auth: bool,
    /// Do not watch the plugins directory for new, replaced or deleted plugins.
    #[arg(long)]
    pub no_watch: bool,
    /// Seconds abandoned creates may take to be settled after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
}

/// Resolves `[e2b_api]`, binds and serves the API until `stop`; returns the bound address.
pub async fn start(
    host: Arc<Host>,
    listen: Option<SocketAddr>,
    insecure_no_auth: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let raw = host.config.e2b_api.clone();
    let listen = listen.or(raw.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default address"));
    let mut settings = Settings::resolve(&raw, |name| std::env::var(name).ok())?;
    settings.insecure_no_auth = insecure_no_auth;
    check_auth(&settings, listen)?;
    let api = E2bApi::new(host, settings)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("e2b api: cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = api.serve(listener, stop).await {
            tracing::error!("e2b api stopped: {e}");
        }
    });
    Ok(bound)
}

pub async fn run(global: &GlobalArgs, args: E2bApiArgs) -> anyhow::Result<u8> {
    let config = global.host_config()?;
    let (host, diags) = Host::start(config).await?;
    for d in &diags {
        eprintln!("warning: plugin not loaded: {d}");
    }
    let unknown = host.reconcile_all(super::serve::RECONCILE_AT_START).await;
    if !unknown.is_empty() {
        eprintln!("warning: could not learn the running sandboxes of {}; retrying in the background", unknown.join(", "));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if !unknown.is_empty() {
        let (host, stop) = (host.clone(), stop_rx.clone());
        tokio::spawn(async move { host.reconcile_until_known(unknown, stop).await });
    }
    if !args.no_watch {
        tokio::spawn(watch(host.clone(), Duration::from_secs(1), None, stop_rx.clone()));
    }
    let bound = start(host.clone(), args.listen, args.insecure_no_auth, stop_rx).await?;
    eprintln!("e2b api on http://{bound} for {} (E2B_API_URL and E2B_SANDBOX_URL; Ctrl-C to stop)", host.registry.names().join(", "));
    super::serve::wait_for_signal().await;
    let _ = stop_tx.send(true);
    if !host.settling.wait(Duration::from_secs(args.grace_secs)).await {
        eprintln!(
            "warning: {} abandoned create(s) not yet settled; check the providers for sandboxes started by them",
            host.settling.running()
        );
    }
    Ok(0)
}
