//! The `sandbox-host` command line: one module per subcommand. `main.rs` only parses
//! and turns [`run`]'s result into an exit status.
//!
//! Exit statuses: 0 success; 1 usage or start-up failure; for `call`, the S-code's
//! class (see [`crate::Code::exit_status`]): 2 caller error, 3 policy refusal,
//! 4 upstream error, 5 plugin fault. A standard output closed by its reader
//! (`… | head -1`) ends any command quietly with status 0, as ripgrep does (`out.rs`).

pub mod call;
pub mod check;
pub mod conformance;
pub mod e2b_api;
pub mod new;
pub mod out;
pub mod plugins;
pub mod serve;
pub mod stats;

use crate::config::HostConfig;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sandbox-host",
    version,
    about = "Runs sandbox provider plugins (WebAssembly components) and serves them as iii functions."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding <name>.wasm plugins and their <name>.toml policies.
    #[arg(long, global = true, env = "SANDBOX_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Directory for precompiled components, which must be outside the plugins directory
    /// (default: $XDG_CACHE_HOME/sandbox-host, else ~/.cache/sandbox-host).
    #[arg(long, global = true, env = "SANDBOX_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every plugin afresh and write no cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Host settings file (plugins_dir, cache_dir, default_provider, router, http_triggers).
    #[arg(long, global = true, env = "SANDBOX_HOST_CONFIG")]
    pub config: Option<PathBuf>,
}

impl GlobalArgs {
    /// Flags override the config file, which overrides the defaults. A cache directory
    /// inside the plugins directory is an error here, at start: it is the operator's
    /// explicit choice and cannot be made safe, and a warning would leave a host that
    /// quietly recompiles every plugin on every start.
    pub fn host_config(&self) -> anyhow::Result<HostConfig> {
        let mut c = match &self.config {
            Some(path) => HostConfig::load(path)?,
            None => HostConfig::new(PathBuf::from("plugins")),
        };
        if let Some(dir) = &self.plugins_dir {
            c.plugins_dir = dir.clone();
        }
        if let Some(dir) = &self.cache_dir {
            c.cache_dir = Some(dir.clone());
        }
        if self.no_cache {
            c.cache_dir = None;
        }
        if let Some(cache_dir) = &c.cache_dir {
            crate::runtime::cache::check_outside_plugins(cache_dir, &c.plugins_dir)?;
        }
        Ok(c)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List loaded plugins: version, capabilities, leaves and resolved policy.
    Plugins(plugins::PluginsArgs),
    /// Check that a .wasm satisfies the provider world and print its describe().
    Check(check::CheckArgs),
    /// Run one contract call locally and print the JSON result.
    Call(call::CallArgs),
    /// Serve every plugin as iii functions (plus, with --router, the sandbox::<leaf> router).
    Serve(serve::ServeArgs),
    /// Per-plugin metrics of a running `serve --metrics-addr`.
    Stats(stats::StatsArgs),
    /// Serve the E2B-compatible API (control plane and envd) for every plugin; no engine needed.
    E2bApi(e2b_api::E2bApiArgs),
    /// Write a provider skeleton (Rust on the guest kit, or Python for componentize-py).
    New(new::NewArgs),
    /// Run the contract's checks against a plugin and its upstream (--live) or a simulator (--sim URL).
    Conformance(conformance::ConformanceArgs),
}

/// Runs the parsed command; returns the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Plugins(a) => plugins::run(&cli.global, a).await,
        Command::Check(a) => check::run(&cli.global, a).await,
        Command::Call(a) => call::run(&cli.global, a).await,
        Command::Serve(a) => serve::run(&cli.global, a).await,
        Command::Stats(a) => stats::run(&cli.global, a).await,
        Command::E2bApi(a) => e2b_api::run(&cli.global, a).await,
        Command::New(a) => new::run(&cli.global, a).await,
        Command::Conformance(a) => conformance::run(&cli.global, a).await,
    }
}
