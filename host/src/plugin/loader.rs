//! `plugins/<name>.wasm` (+ `plugins/<name>.toml`) → [`LoadedPlugin`], or a
//! [`Diagnostic`] naming the file and the reason. One bad file never stops the others.
//!
//! Checks, in order: the file is a component this engine can compile; its imports are
//! all provided by the host (our `log`/`config` + WASI 0.2); it exports the provider
//! interface of a known world version; `describe()` returns a sane descriptor whose
//! name equals the file stem; the policy file parses and resolves.

use super::LoadedPlugin;
use crate::policy::{PluginPolicy, RawPolicy};
use crate::runtime::engine::Runtime;
use crate::runtime::invoke;
use crate::runtime::store::StoreState;
use crate::runtime::wit::{self, PluginPre};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::Linker;

/// Why a file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

/// Looks up an environment variable (the process env in production, a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Shared by all loads: the engine and the linker with every host import.
pub struct Loader {
    pub runtime: Runtime,
    linker: Linker<StoreState>,
    /// Environment lookup for credentials (the process env in production).
    env: EnvLookup,
}

impl Loader {
    pub fn new(runtime: Runtime) -> anyhow::Result<Self> {
        Self::with_env(runtime, Arc::new(|k: &str| std::env::var(k).ok()))
    }

    pub fn with_env(runtime: Runtime, env: EnvLookup) -> anyhow::Result<Self> {
        let mut linker = Linker::new(&runtime.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wit::add_to_linker(&mut linker)?;
        Ok(Loader { runtime, linker, env })
    }

    /// Every `*.wasm` directly in `dir`, sorted by name. Any error reading the directory
    /// (or one of its entries) is returned, never taken for "no such plugin".
    pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|x| x != "wasm") {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => files.push(path),
                Ok(_) => {}
                // Gone since the listing, or a dangling link: not a plugin.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        files.sort();
        Ok(files)
    }

    /// Loads every plugin in `dir`.
    pub async fn load_dir(&self, dir: &Path) -> (Vec<LoadedPlugin>, Vec<Diagnostic>) {
        let files = match Self::plugin_files(dir) {
            Ok(f) => f,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![Diagnostic { file: dir.to_path_buf(), reason: format!("cannot read the plugins directory: {e}") }],
                )
            }
        };
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for file in files {
            match self.load_file(&file).await {
                Ok(p) => ok.push(p),
                Err(d) => bad.push(d),
            }
        }
        (ok, bad)
    }

    /// Loads one plugin file and the policy beside it.
    pub async fn load_file(&self, file: &Path) -> Result<LoadedPlugin, Diagnostic> {
        let fail = |reason: String| Diagnostic { file: file.to_path_buf(), reason };
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| valid_name(s))
            .ok_or_else(|| fail("the file name must be <name>.wasm with <name> of a-z, 0-9 and -".into()))?
            .to_string();
        let bytes = std::fs::read(file).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let policy_file = file.with_extension("toml");
        let (raw, policy_sha256) = match std::fs::read_to_string(&policy_file) {
            Ok(text) => (
                RawPolicy::from_toml(&text)
                    .map_err(|e| Diagnostic { file: policy_file.clone(), reason: format!("invalid policy: {e}") })?,
                Some(hex::encode(Sha256::digest(text.as_bytes()))),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (RawPolicy::default(), None),
            Err(e) => return Err(Diagnostic { file: policy_file.clone(), reason: format!("cannot read it: {e}") }),
        };
        // Compiling takes the better part of a second per MiB: off the async workers, so
        // calls and the watcher keep running meanwhile.
        let runtime = self.runtime.clone();
        let (compiled, bytes) = tokio::task::spawn_blocking(move || (runtime.component(&bytes), bytes))
            .await
            .map_err(|e| fail(format!("compiling it failed ({e})")))?;
        let (component, cache) = compiled.map_err(|e| fail(not_a_component(&e)))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            fail(format!(
                "it needs imports the host does not provide ({}); plugins may import only the interfaces of {} and WASI 0.2",
                one_line(&e),
                wit::WORLDS.join(" or ")
            ))
        })?;
        let pre =
            PluginPre::new(instance_pre).map_err(|e| fail(format!("it does not export a known provider interface: {}", one_line(&e))))?;
        // describe() runs with no egress and no credentials.
        let load_policy =
            PluginPolicy::resolve(&stem, &RawPolicy { allowed_hosts: Some(vec![]), ..RawPolicy::default() }, &[], &[], &|_| None)
                .map_err(fail)?;
        let descriptor = invoke::describe(&stem, &pre, &load_policy).await.map_err(|e| fail(one_line(&e)))?;
        if descriptor.name != stem {
            return Err(fail(format!(
                "describe() says its name is {:?}, but the file is {stem}.wasm; rename one to match",
                descriptor.name
            )));
        }
        if let Some(cap) = descriptor.capabilities.iter().find(|c| !pre.knows(**c)) {
            return Err(fail(format!("describe() declares `{cap}`, which {} does not have", pre.world())));
        }
        if descriptor.version.is_empty() {
            return Err(fail("describe() returned an empty version".into()));
        }
        let env = self.env.clone();
        let policy = PluginPolicy::resolve(&stem, &raw, &descriptor.default_egress_hosts, &descriptor.credentials, &move |k| env(k))
            .map_err(|e| Diagnostic { file: policy_file.clone(), reason: format!("invalid policy: {e}") })?;
        let l = policy.limits;
        Ok(LoadedPlugin {
            admission: Arc::new(crate::policy::rate::Admission::new(l.max_calls_in_flight, l.rate_per_sec, l.burst)),
            name: stem.into(),
            file: file.to_path_buf(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            policy_sha256,
            size_bytes: bytes.len(),
            config: Arc::new(policy.config.clone()),
            descriptor,
            policy,
            pre,
            cache,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !s.starts_with('-')
}

fn not_a_component(e: &anyhow::Error) -> String {
    let msg = one_line(e);
    if msg.contains("with a component parser") {
        "it is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
            .to_string()
    } else if msg.contains("core wasm module") || msg.contains("magic header") || msg.contains("unknown binary version") {
        format!("it is not a WebAssembly component ({msg}); build it for wasm32-wasip2")
    } else {
        format!("it could not be compiled ({msg})")
    }
}

fn one_line(e: impl std::fmt::Display) -> String {
    format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn plugin_names_are_lower_kebab() {
        assert!(super::valid_name("e2b"));
        assert!(super::valid_name("my-provider2"));
        assert!(!super::valid_name("E2B"));
        assert!(!super::valid_name("-x"));
        assert!(!super::valid_name("a.b"));
    }
}
