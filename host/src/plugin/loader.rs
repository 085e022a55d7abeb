//! `plugins/<name>.wasm` (+ `plugins/<name>.toml`) → [`LoadedPlugin`], or a
//! [`Diagnostic`] naming the file and the reason. One bad file never stops the others.
//!
//! Checks, in order: the file is a component this engine can compile; its imports are
//! all provided by the host (our `log`/`config` + WASI 0.2); it exports the provider
//! interface of a known world version; `describe()` returns a sane descriptor whose
//! name equals the file stem; the policy file parses and resolves.
//!
//! A directory is listed first ([`Loader::list_dir`]): entries that cannot be plugins (a
//! directory named `x.wasm`, a dangling or looping link, a `.toml` with no `.wasm`) get one
//! diagnostic each and never stop the others. The provider name is the file stem, so two
//! files cannot register one name: a second copy of a plugin is refused by the name check,
//! naming the file that holds the name.

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

    /// What `dir` holds: every `*.wasm` directly in it that is a file (or a link to one),
    /// sorted, and one diagnostic for each entry that looks like a plugin but cannot be one —
    /// a `.wasm` that is a directory, a special file or a link that cannot be followed
    /// (dangling, a loop), and a `.toml` with no `.wasm` of its name (a policy that applies
    /// to nothing). Those are properties of the entry, not of the directory: the rest of
    /// the directory still loads. Any error reading the directory itself (or statting an
    /// ordinary entry) is returned, never taken for "no such plugin".
    pub fn list_dir(dir: &Path) -> std::io::Result<Listing> {
        let mut listing = Listing::default();
        let (mut wasm_stems, mut policies) = (std::collections::BTreeSet::new(), Vec::new());
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let (Some(ext), Some(stem)) = (path.extension(), path.file_stem()) else { continue };
            if ext == "toml" {
                // Hidden files are an editor's or a deploy tool's, mid-write.
                if !stem.to_string_lossy().starts_with('.') {
                    policies.push(path);
                }
                continue;
            }
            if ext != "wasm" {
                continue;
            }
            wasm_stems.insert(stem.to_os_string());
            match entry_problem(&path) {
                Ok(None) => listing.files.push(path),
                Ok(Some(reason)) => listing.bad.push(Diagnostic { file: path, reason }),
                // Gone since the listing: not a plugin.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for policy in policies {
            let stem = policy.file_stem().unwrap_or_default().to_os_string();
            if !wasm_stems.contains(&stem) {
                let name = stem.to_string_lossy();
                listing.bad.push(Diagnostic {
                    file: policy,
                    reason: format!(
                        "a policy with no plugin: there is no {name}.wasm beside it, so it applies to nothing; \
                         add {name}.wasm, rename the policy to <plugin>.toml of the plugin it is for, or remove it"
                    ),
                });
            }
        }
        listing.files.sort();
        listing.bad.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(listing)
    }

    /// Loads every plugin in `dir`; the diagnostics cover the files that failed to load
    /// and the entries [`Loader::list_dir`] found unusable, one each.
    pub async fn load_dir(&self, dir: &Path) -> (Vec<LoadedPlugin>, Vec<Diagnostic>) {
        let listing = match Self::list_dir(dir) {
            Ok(l) => l,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![Diagnostic { file: dir.to_path_buf(), reason: format!("cannot read the plugins directory: {e}") }],
                )
            }
        };
        let (mut ok, mut bad) = (Vec::new(), listing.bad);
        for file in listing.files {
            match self.load_file(&file).await {
                Ok(p) => ok.push(p),
                Err(d) => bad.push(d),
            }
        }
        bad.sort_by(|a, b| a.file.cmp(&b.file));
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
        match entry_problem(file) {
            Ok(None) => {}
            Ok(Some(reason)) => return Err(fail(reason)),
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        }
        let bytes = std::fs::read(file).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if bytes.is_empty() {
            return Err(fail(
                "it is empty (0 bytes): a copy not yet written or a failed build; copy the component again \
                 (to a temporary name, then rename it into place)"
                    .into(),
            ));
        }
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
        let descriptor = invoke::describe_checked(&stem, &pre, &load_policy).await.map_err(|e| fail(one_line(&e)))?;
        if descriptor.name != stem {
            // The provider name is the file stem, so two files can never register one name;
            // a second copy of a plugin under another file name is refused here, by name.
            let holder = file.with_file_name(format!("{}.wasm", descriptor.name));
            let advice = if valid_name(&descriptor.name) && holder.exists() {
                format!(
                    "{} beside it declares that name too: two files for one provider; remove this copy \
                     (or, if it is a different plugin, give it its own name in describe() and the file)",
                    holder.display()
                )
            } else {
                "rename one to match".to_string()
            };
            return Err(fail(format!("describe() says its name is {:?}, but the file is {stem}.wasm; {advice}", descriptor.name)));
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
            quarantine: crate::policy::quarantine::Quarantine::new(&stem, l.quarantine),
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

/// What `dir` holds (see [`Loader::list_dir`]).
#[derive(Debug, Default)]
pub struct Listing {
    /// `<name>.wasm` files (or links to one), sorted.
    pub files: Vec<PathBuf>,
    /// Entries that look like plugins but cannot be, one diagnostic each, sorted by file.
    pub bad: Vec<Diagnostic>,
}

/// Why the entry at `path` cannot be a plugin file without reading it (a FIFO would block
/// a read), or `None` for a regular file or a link to one. `NotFound` means it is gone.
fn entry_problem(path: &Path) -> std::io::Result<Option<String>> {
    let remedy = "plugins are component files: move it out of the plugins directory or rename it";
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(None),
        Ok(m) if m.is_dir() => Ok(Some(format!("it is a directory, not a component file; {remedy}"))),
        Ok(_) => Ok(Some(format!("it is not a regular file (a socket, FIFO or device); {remedy}"))),
        Err(e) => {
            // A link that cannot be followed is the entry's own fault, not the directory's.
            let Ok(link) = std::fs::symlink_metadata(path) else { return Err(e) };
            if !link.file_type().is_symlink() {
                return Err(e);
            }
            let target = std::fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            let why = match e.raw_os_error() {
                Some(libc::ELOOP) => "a loop of links".to_string(),
                _ if e.kind() == std::io::ErrorKind::NotFound => "nothing (a dangling link)".to_string(),
                _ => format!("something that cannot be read ({e})"),
            };
            Ok(Some(format!("it is a symbolic link to {target:?}, which leads to {why}; point it at a component file or remove it")))
        }
    }
}

/// A provider name: `[a-z0-9-]+`, at most 64 bytes, not starting with `-`.
pub fn valid_name(s: &str) -> bool {
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
