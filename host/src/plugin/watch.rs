//! Hot reload: polls the plugins directory and applies what changed.
//!
//! - a new `<name>.wasm` goes live (after it has stayed unchanged for one poll, so a
//!   file still being copied is not loaded half-written);
//! - a replaced `.wasm` or `.toml` is loaded and checked in full, then swapped in
//!   atomically: in-flight calls finish on the old version (they hold its `Arc`), new
//!   calls get the new one; slot books are keyed by name and survive;
//! - a deleted `.wasm` is unregistered;
//! - a broken or non-conforming file is rejected with a diagnostic and the previous
//!   version keeps serving — so is an entry that cannot be a plugin file (a directory
//!   named `x.wasm`, a dangling or looping link); a `.toml` with no `.wasm` is reported.
//!   Each is logged once while it stays as it is, not on every poll.
//!
//! Polling (not inotify) keeps it dependency-free and works on every filesystem; the
//! cost is one `readdir` + `stat`s per interval.

use super::loader::Diagnostic;
use super::LoadedPlugin;
use crate::Host;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Told about every change the watcher applies (the iii bridge registers/unregisters).
pub trait ReloadListener: Send + Sync {
    fn installed(&self, plugin: &Arc<LoadedPlugin>);
    fn removed(&self, name: &str);
}

/// What identifies one version of a plugin's files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    wasm: (u64, Option<SystemTime>),
    toml: Option<(u64, Option<SystemTime>)>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn stat(path: &Path) -> std::io::Result<(u64, Option<SystemTime>)> {
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified().ok()))
}

/// The optional policy file's fingerprint: absent is `None`, unreadable is an error.
fn stat_optional(path: &Path) -> std::io::Result<Option<(u64, Option<SystemTime>)>> {
    match stat(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One scan of the plugins directory.
struct Scan {
    /// Every plugin file and its fingerprint, by name.
    files: BTreeMap<String, (PathBuf, Fingerprint)>,
    /// Entries that cannot be plugins (`Loader::list_dir`), one diagnostic each.
    bad: Vec<Diagnostic>,
}

impl Scan {
    /// Names still present: a file, or a `.wasm` entry that is broken (a directory, a bad
    /// link). A broken one is rejected like a broken file: the previous version keeps serving.
    fn present(&self, name: &str) -> bool {
        self.files.contains_key(name)
            || self.bad.iter().any(|d| d.file.extension().is_some_and(|x| x == "wasm") && d.file.file_stem().is_some_and(|s| s == name))
    }
}

/// Every plugin in `dir` and its fingerprint. Any I/O error fails the whole scan: a
/// directory that cannot be read says nothing about which plugins were deleted.
fn scan(dir: &Path) -> std::io::Result<Scan> {
    let listing = crate::plugin::loader::Loader::list_dir(dir)?;
    let mut files = BTreeMap::new();
    for wasm in listing.files {
        let Some(name) = wasm.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
        let fp = Fingerprint { wasm: stat(&wasm)?, toml: stat_optional(&wasm.with_extension("toml"))? };
        files.insert(name, (wasm, fp));
    }
    Ok(Scan { files, bad: listing.bad })
}

/// [`scan`], logging a failure once per run of failures.
fn scan_logged(dir: &Path, failing: &mut bool) -> Option<Scan> {
    match scan(dir) {
        Ok(found) => {
            if std::mem::take(failing) {
                tracing::info!("the plugins directory {} is readable again", dir.display());
            }
            Some(found)
        }
        Err(e) => {
            if !std::mem::replace(failing, true) {
                tracing::warn!("cannot read the plugins directory {} ({e}); changing nothing until it can be read", dir.display());
            }
            None
        }
    }
}

/// Logs each unusable entry once, while it stays as it is (not on every poll).
fn report_bad(host: &Host, bad: &[Diagnostic], reported: &mut BTreeMap<PathBuf, String>) {
    let mut now = BTreeMap::new();
    for d in bad {
        if reported.get(&d.file) != Some(&d.reason) {
            let name = d.file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let keeps = if d.file.extension().is_some_and(|x| x == "wasm") && host.registry.get(name).is_some() {
                "; the previous version keeps serving"
            } else {
                ""
            };
            tracing::error!("plugin not (re)loaded: {d}{keeps}");
        }
        now.insert(d.file.clone(), d.reason.clone());
    }
    *reported = now;
}

/// Watches `host.config.plugins_dir` every `interval` until `stop` fires.
pub async fn watch(
    host: Arc<Host>,
    interval: Duration,
    listener: Option<Arc<dyn ReloadListener>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let dir = host.config.plugins_dir.clone();
    let mut failing = false;
    // What is loaded now; changes are measured against it. A plugin counts as applied only
    // if the registry holds exactly its bytes and its policy file's, so anything added or
    // changed between the host's start and this first scan is still picked up.
    let first = loop {
        if let Some(found) = scan_logged(&dir, &mut failing) {
            break found;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    };
    // The host's start reported these already (`Host::start` logs every diagnostic).
    let mut reported: BTreeMap<PathBuf, String> = first.bad.iter().map(|d| (d.file.clone(), d.reason.clone())).collect();
    let mut applied: BTreeMap<String, Fingerprint> = first
        .files
        .iter()
        .filter(|(name, (path, _))| {
            host.registry.get(name).is_some_and(|p| {
                let policy = std::fs::read(path.with_extension("toml")).ok().map(|b| sha256_hex(&b));
                std::fs::read(path).is_ok_and(|b| sha256_hex(&b) == p.sha256) && policy == p.policy_sha256
            })
        })
        .map(|(n, (_, fp))| (n.clone(), fp.clone()))
        .collect();
    let mut previous: BTreeMap<String, Fingerprint> = first.files.into_iter().map(|(n, (_, fp))| (n, fp)).collect();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let Some(mut now) = scan_logged(&dir, &mut failing) else { continue };
        // Another host serves the providers left out of `--providers`.
        now.files.retain(|name, _| host.config.serves(name));
        report_bad(&host, &now.bad, &mut reported);
        for (name, (path, fp)) in &now.files {
            let stable = previous.get(name) == Some(fp);
            if applied.get(name) == Some(fp) || !stable {
                continue;
            }
            applied.insert(name.clone(), fp.clone());
            match host.loader.load_file(path).await {
                Ok(plugin) => {
                    let version = plugin.descriptor.version.clone();
                    host.registry.insert(plugin);
                    // A new version starts out of quarantine.
                    host.metrics.quarantine_reset(name);
                    let installed = host.registry.get(name).expect("just inserted");
                    tracing::info!(plugin = %name, %version, sha256 = %installed.sha256, "plugin (re)loaded");
                    if let Some(l) = &listener {
                        l.installed(&installed);
                    }
                }
                Err(d) => {
                    let keeps = if host.registry.get(name).is_some() { "; the previous version keeps serving" } else { "" };
                    tracing::error!("plugin not (re)loaded: {d}{keeps}");
                }
            }
        }
        let gone: Vec<String> = applied.keys().filter(|n| !now.present(n)).cloned().collect();
        for name in gone {
            applied.remove(&name);
            if host.registry.remove(&name).is_some() {
                host.metrics.quarantine_reset(&name);
                tracing::info!(plugin = %name, "plugin removed");
                if let Some(l) = &listener {
                    l.removed(&name);
                }
            }
        }
        previous = now.files.into_iter().map(|(n, (_, fp))| (n, fp)).collect();
    }
}
