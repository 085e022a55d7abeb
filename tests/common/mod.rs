//! Harness shared by every suite: the built plugins, a host over a temporary plugins
//! directory with chosen policies and credentials, and small assertions.
//!
//! Plugins are built by `just build-plugins` (the `test` recipe does it first); a
//! missing artifact fails with the command to run, never silently skips.

pub mod mock_engine;
pub mod upstream;

use sandbox_host::config::HostConfig;
use sandbox_host::plugin::loader::{Diagnostic, Loader};
use sandbox_host::runtime::engine::Runtime;
use sandbox_host::{CallError, Code, Host, Leaf};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `plugins/<name>.wasm`, which must have been built.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let p = root().join("plugins").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `just build-plugins` (or `bash scripts/build-plugins.sh`) first", p.display());
    p
}

/// One engine per test process, with a precompiled cache shared by all tests.
pub fn runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(Some(root().join("target").join("test-plugin-cache"))).expect("engine")).clone()
}

/// A host over a private plugins directory.
pub struct TestHost {
    pub host: Arc<Host>,
    pub diagnostics: Vec<Diagnostic>,
    pub dir: tempfile::TempDir,
}

/// What to put in the plugins directory.
pub struct PluginSetup {
    /// Plugin name; its wasm is copied from `plugins/<wasm>.wasm`.
    pub name: String,
    pub wasm: PathBuf,
    pub policy: Option<String>,
}

impl PluginSetup {
    pub fn new(name: &str, policy: impl Into<String>) -> Self {
        PluginSetup { name: name.into(), wasm: plugin_wasm(name), policy: Some(policy.into()) }
    }
}

impl TestHost {
    /// Starts a host with `plugins` and credentials `env` (name, value).
    pub async fn start(plugins: Vec<PluginSetup>, env: &[(&str, &str)]) -> TestHost {
        Self::start_with(plugins, env, |_| {}).await
    }

    pub async fn start_with(plugins: Vec<PluginSetup>, env: &[(&str, &str)], tweak: impl FnOnce(&mut HostConfig)) -> TestHost {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        for p in &plugins {
            std::fs::copy(&p.wasm, dir.path().join(format!("{}.wasm", p.name))).unwrap();
            if let Some(policy) = &p.policy {
                std::fs::write(dir.path().join(format!("{}.toml", p.name)), policy).unwrap();
            }
        }
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = Arc::new(move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        let loader = Loader::with_env(runtime(), lookup).unwrap();
        let mut config = HostConfig::new(dir.path().to_path_buf());
        config.cache_dir = None;
        tweak(&mut config);
        let (host, diagnostics) = Host::start_with(config, loader).await.unwrap();
        TestHost { host, diagnostics, dir }
    }

    pub async fn call(&self, provider: &str, leaf: Leaf, payload: Value) -> Result<Value, CallError> {
        self.host.call(provider, leaf, &payload).await
    }

    /// Calls and expects success.
    pub async fn ok(&self, provider: &str, leaf: Leaf, payload: Value) -> Value {
        match self.call(provider, leaf, payload.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{provider} {leaf} {payload} failed: {e}"),
        }
    }

    /// Calls and expects `code`; returns the message.
    pub async fn err(&self, provider: &str, leaf: Leaf, payload: Value, code: Code) -> String {
        match self.call(provider, leaf, payload.clone()).await {
            Ok(v) => panic!("{provider} {leaf} {payload} should fail with {code}, got {v}"),
            Err(e) => {
                assert_eq!(e.code, code, "{provider} {leaf} {payload}: {e}");
                let msg = e.message();
                assert!(msg.starts_with(&format!("[{code}] ")), "message form: {msg}");
                msg
            }
        }
    }
}

/// True when `s` is an RFC 3339 timestamp.
pub fn is_rfc3339(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// An exec answer without `duration_ms` (a measurement, not a result), checked present.
pub fn exec_result(v: &serde_json::Value) -> serde_json::Value {
    assert!(v["duration_ms"].is_u64(), "exec answers carry duration_ms: {v}");
    let mut v = v.clone();
    v.as_object_mut().expect("an exec answer is an object").remove("duration_ms");
    v
}

/// `metadata` as the host reports it for a sandbox it created: the caller's entries
/// plus the host's creation tag (`calls::create::CREATED_BY` = this machine).
pub fn with_host_tag(metadata: serde_json::Value) -> serde_json::Value {
    let mut m = metadata;
    m[sandbox_host::calls::create::CREATED_BY] = serde_json::json!(sandbox_host::calls::events::machine_name());
    m
}
