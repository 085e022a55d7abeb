//! The contract's checks, run against one plugin and its upstream, as a plugin author runs
//! them (`sandbox-host conformance PLUGIN.wasm --live | --sim URL`) and as our own suite
//! does (`tests/conformance/live_cases.rs`): one case list ([`cases`]), one way to start
//! the host around the plugin ([`Session`]), one report ([`report`]).
//!
//! A session copies the component into a private plugins directory with the policy it is
//! to run under (the operator's `.toml`; for `--sim`, with `api_base` pointed at the
//! simulator and its address added to `allowed_hosts`), starts a host over it with the
//! credentials from the environment, and switches on the plugin's egress observer
//! (`policy/egress_observer.rs`) so every check lists the upstream calls it made. Every
//! sandbox a check creates is stopped at the end, whatever failed.

pub mod cases;
pub mod report;

use crate::config::HostConfig;
use crate::plugin::loader::Loader;
use crate::Host;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which upstream the plugin talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Its real upstream, as its policy says (`api_base`, `allowed_hosts`, credentials).
    Live,
    /// A simulator at this base URL (`http://127.0.0.1:PORT`): it becomes `api_base`.
    Sim(String),
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// The component; its file stem is the provider name.
    pub wasm: PathBuf,
    /// The policy TOML to run it under (`--policy FILE`, else the `.toml` beside it).
    pub policy: Option<String>,
    pub upstream: Upstream,
}

impl Target {
    /// `wasm` under `policy_file`, or under the `.toml` beside it when there is one.
    pub fn from_files(wasm: &Path, policy_file: Option<&Path>, upstream: Upstream) -> anyhow::Result<Target> {
        let beside = wasm.with_extension("toml");
        let policy = match policy_file {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("cannot read the policy {}: {e}", f.display()))?),
            None if beside.is_file() => Some(std::fs::read_to_string(&beside)?),
            None => None,
        };
        Ok(Target { wasm: wasm.to_path_buf(), policy, upstream })
    }

    /// The provider name: the component's file stem.
    pub fn provider(&self) -> anyhow::Result<String> {
        self.wasm
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("{} has no file name of the form <name>.wasm", self.wasm.display()))
    }

    /// The policy the plugin runs under: the given one, and for a simulator its base as
    /// `api_base` and its `host:port` among `allowed_hosts`.
    pub fn effective_policy(&self) -> anyhow::Result<String> {
        let mut table: toml::Table = match &self.policy {
            Some(text) => text.parse().map_err(|e| anyhow::anyhow!("the policy is not valid TOML: {e}"))?,
            None => toml::Table::new(),
        };
        if let Upstream::Sim(url) = &self.upstream {
            let uri: http::Uri = url.parse().map_err(|e| anyhow::anyhow!("--sim {url:?} is not a URL: {e}"))?;
            let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                anyhow::bail!("--sim {url:?} needs a scheme and a host, e.g. http://127.0.0.1:3000");
            };
            let port = authority.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
            let entry = format!("{}:{port}", authority.host());
            table.insert("api_base".into(), toml::Value::String(url.trim_end_matches('/').to_string()));
            let hosts = table.entry("allowed_hosts").or_insert_with(|| toml::Value::Array(Vec::new()));
            let toml::Value::Array(list) = hosts else { anyhow::bail!("the policy's allowed_hosts is not a list") };
            if !list.iter().any(|h| h.as_str() == Some(entry.as_str())) {
                list.push(toml::Value::String(entry));
            }
        }
        Ok(toml::to_string(&table)?)
    }
}

/// One request the plugin sent upstream during a check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamCall {
    pub method: String,
    /// The URL's path (no query: it may carry ids and filters, never needed to read the table).
    pub path: String,
}

impl std::fmt::Display for UpstreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// A host serving the one plugin under test, with its upstream calls recorded.
pub struct Session {
    pub host: Arc<Host>,
    pub provider: String,
    /// The port the expose_port check asks for.
    pub expose_port: u16,
    calls: Arc<Mutex<Vec<UpstreamCall>>>,
    ledger: Mutex<cases::Ledger>,
    interrupted: std::sync::atomic::AtomicBool,
    _dir: ScratchDir,
}

/// The expose_port check's port unless `--port` says otherwise.
pub const DEFAULT_EXPOSE_PORT: u16 = 8080;

impl Session {
    /// Loads `target` through `loader` (its runtime and credential lookup) into a host of
    /// its own; the plugin must load, or this fails with the loader's diagnostic.
    pub async fn start(target: &Target, loader: Loader) -> anyhow::Result<Session> {
        let provider = target.provider()?;
        let bytes = std::fs::read(&target.wasm).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", target.wasm.display()))?;
        let dir = ScratchDir::new()?;
        std::fs::write(dir.0.join(format!("{provider}.wasm")), bytes)?;
        std::fs::write(dir.0.join(format!("{provider}.toml")), target.effective_policy()?)?;
        let mut config = HostConfig::new(dir.0.clone());
        config.cache_dir = None;
        let (host, diagnostics) = Host::start_with(config, loader).await?;
        if let Some(d) = diagnostics.first() {
            anyhow::bail!("{} does not load: {}", target.wasm.display(), d.reason);
        }
        let plugin = host.registry.get(&provider).ok_or_else(|| anyhow::anyhow!("{provider} did not load"))?;
        let calls: Arc<Mutex<Vec<UpstreamCall>>> = Arc::default();
        let sink = calls.clone();
        plugin.policy.egress.observer.set(Arc::new(move |method, uri| {
            let call = UpstreamCall { method: method.to_string(), path: uri.path().to_string() };
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        }));
        Ok(Session {
            host,
            provider,
            expose_port: DEFAULT_EXPOSE_PORT,
            calls,
            ledger: Mutex::default(),
            interrupted: Default::default(),
            _dir: dir,
        })
    }

    /// The upstream calls recorded since the last time this was asked.
    pub fn take_calls(&self) -> Vec<UpstreamCall> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs the whole case list with `image`; cleans up what it created.
    pub async fn run(&self, image: &str) -> report::Report {
        cases::run(self, image).await
    }

    /// Ends a run early: the check under way finishes (so a create in flight is not lost
    /// before its id is known), the rest are skipped, and the clean-up runs as usual.
    pub fn interrupt(&self) {
        self.interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, cases::Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A private, empty directory, removed with what it holds when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> std::io::Result<ScratchDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("sandbox-host-conformance-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path)?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulator_becomes_api_base_and_joins_the_allowlist_once() {
        let t = Target {
            wasm: "plugins/e2b.wasm".into(),
            policy: Some("allowed_hosts = [\"api.e2b.app\"]\n[config]\nenvd-url = \"http://127.0.0.1:9001\"\n".into()),
            upstream: Upstream::Sim("http://127.0.0.1:9000/".into()),
        };
        let p: toml::Table = t.effective_policy().unwrap().parse().unwrap();
        assert_eq!(p["api_base"].as_str(), Some("http://127.0.0.1:9000"));
        assert_eq!(p["allowed_hosts"], toml::Value::Array(vec!["api.e2b.app".into(), "127.0.0.1:9000".into()]));
        assert_eq!(p["config"]["envd-url"].as_str(), Some("http://127.0.0.1:9001"), "the rest is kept");
        assert_eq!(t.provider().unwrap(), "e2b");
        let live = Target { upstream: Upstream::Live, ..t };
        assert!(!live.effective_policy().unwrap().contains("api_base"), "live keeps the operator's policy as it is");
        let bad = Target { upstream: Upstream::Sim("127.0.0.1".into()), ..live };
        assert!(bad.effective_policy().unwrap_err().to_string().contains("needs a scheme"));
    }
}
