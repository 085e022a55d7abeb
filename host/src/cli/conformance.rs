//! `sandbox-host conformance PLUGIN.wasm (--live | --sim URL)`: the contract's checks
//! (`conformance/cases.rs`, the list our own suite runs too) against one plugin and its
//! upstream. Prints a pass/fail table with the upstream calls each check made; every
//! sandbox it created is stopped first, whatever failed. Exit status: 0 every check
//! passed, 3 a check (or the clean-up) failed, 1 the plugin or its policy did not load
//! (2 stays clap's usage error),
//! 130 interrupted (Ctrl-C: the check under way finishes, the rest are skipped, the
//! clean-up runs).
//!
//! `--live` runs the plugin under its policy (`--policy FILE`, else the `.toml` beside
//! it) with the credentials it grants read from this process's environment, as `call`
//! does. `--sim URL` points the plugin's `api_base` at a simulator and adds its address
//! to `allowed_hosts`; everything else of the policy (a `[config]`, the grants) stays.

use super::out::{errln, outln};
use super::GlobalArgs;
use crate::conformance::{Session, Target, Upstream};
use crate::plugin::loader::Loader;
use crate::runtime::engine::Runtime;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("upstream").required(true).args(["live", "sim"])))]
pub struct ConformanceArgs {
    /// The component to check; its file stem is the provider name.
    pub plugin: PathBuf,
    /// Against the plugin's real upstream, with the operator's credentials from the environment.
    #[arg(long)]
    pub live: bool,
    /// Against a simulator at this base URL (it becomes the plugin's api_base).
    #[arg(long, value_name = "URL")]
    pub sim: Option<String>,
    /// Policy file to run the plugin under (default: the .toml beside the plugin, if any).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Image / template / snapshot the sandboxes start from.
    #[arg(long, default_value = "base")]
    pub image: String,
    /// Port the expose_port check asks for (a provider that publishes only ports chosen at
    /// create, such as Vercel, needs one its policy lists).
    #[arg(long, default_value_t = crate::conformance::DEFAULT_EXPOSE_PORT)]
    pub port: u16,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: ConformanceArgs) -> anyhow::Result<u8> {
    let upstream = match args.sim {
        Some(url) => Upstream::Sim(url),
        None => Upstream::Live,
    };
    let target = Target::from_files(&args.plugin, args.policy.as_deref(), upstream)?;
    let loader = Loader::new(Runtime::new(global.host_config()?.cache_dir)?)?;
    let mut session = match Session::start(&target, loader).await {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e:#}");
            return Ok(1);
        }
    };
    session.expose_port = args.port;
    // Ctrl-C ends the run after the check under way (a create in flight keeps its id and
    // is stopped); the clean-up still runs and the table is printed. A second Ctrl-C quits.
    // The handler is in place before the first check: a signal at any point is caught.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let session = std::sync::Arc::new(session);
    let watcher = session.clone();
    tokio::spawn(async move {
        if sigint.recv().await.is_some() {
            errln!("interrupted: finishing the check under way, then stopping what this run created (Ctrl-C again quits now)");
            watcher.interrupt();
            if sigint.recv().await.is_some() {
                errln!("warning: quit before the clean-up; check the provider for sandboxes this run created");
                std::process::exit(130);
            }
        }
    });
    let report = session.run(&args.image).await;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        super::out::write_out_bytes(report.table().as_bytes())?;
    }
    Ok(if session.is_interrupted() {
        130
    } else if report.passed() {
        0
    } else {
        3
    })
}
