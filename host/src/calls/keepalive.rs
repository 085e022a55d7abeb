//! `idle_timeout_secs` means idle, on every provider. Daytona's auto-stop is idle
//! upstream; E2B's `timeout` and Morph's `ttl_seconds` are absolute countdowns that
//! nothing extends, so a sandbox in use would die `idle_timeout_secs` after create. For
//! those the host keeps the end moving: a sandbox whose create reported an end time is
//! tracked, and each exec, file call, `get` or `expose_port` on it — at most once per
//! quarter of its window — sets its upstream lifetime to the window again (plus an
//! exec's deadline), in the background, through the plugin's `set_timeout`.
//!
//! A caller's own `set_timeout` (or `resume` with a timeout) fixes the end: the host stops
//! moving it. Only sandboxes this host created since it started are tracked.

use crate::contract::shapes::{Capability, Request};
use crate::plugin::LoadedPlugin;
use crate::runtime::invoke;
use crate::runtime::wit::ErrorKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct KeepAlive {
    sandboxes: Mutex<HashMap<(String, String), Tracked>>,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    idle_secs: u64,
    refreshed: Instant,
}

impl KeepAlive {
    /// Starts keeping `sandbox_id` alive while used, if its provider can move its end.
    pub fn track(&self, plugin: &LoadedPlugin, sandbox_id: &str, idle_secs: u64) {
        if idle_secs == 0 || !plugin.capabilities().contains(&Capability::SetTimeout) {
            return;
        }
        let tracked = Tracked { idle_secs, refreshed: Instant::now() };
        self.lock().insert((plugin.name.to_string(), sandbox_id.to_string()), tracked);
    }

    /// The caller set the end (or the sandbox is gone): stop moving it.
    pub fn forget(&self, provider: &str, sandbox_id: &str) {
        self.lock().remove(&(provider.to_string(), sandbox_id.to_string()));
    }

    /// Activity on `sandbox_id` that may last `busy_secs` more: the lifetime to set now,
    /// if a refresh is due (a quarter of the window passed since the last one).
    fn due(&self, provider: &str, sandbox_id: &str, busy_secs: u64, now: Instant) -> Option<u64> {
        let mut map = self.lock();
        let t = map.get_mut(&(provider.to_string(), sandbox_id.to_string()))?;
        if now.saturating_duration_since(t.refreshed) < Duration::from_secs(t.idle_secs) / 4 {
            return None;
        }
        t.refreshed = now;
        Some(t.idle_secs.saturating_add(busy_secs))
    }

    /// Marks activity; refreshes the upstream lifetime in the background when due.
    pub fn touch(self: &Arc<Self>, plugin: &Arc<LoadedPlugin>, sandbox_id: &str, busy_secs: u64) {
        let Some(secs) = self.due(&plugin.name, sandbox_id, busy_secs, Instant::now()) else { return };
        let secs = secs.min(plugin.policy.limits.max_timeout_secs).max(1);
        let (this, plugin, sandbox_id) = (self.clone(), plugin.clone(), sandbox_id.to_string());
        tokio::spawn(async move {
            let req = Request::SetTimeout { sandbox_id: sandbox_id.clone(), timeout_secs: secs };
            let (outcome, _) = invoke::run(&plugin, &req, plugin.policy.limits.call_timeout).await;
            match outcome {
                Ok(Ok(_)) => tracing::debug!(plugin = %plugin.name, sandbox = %sandbox_id, secs, "idle lifetime moved"),
                Ok(Err(f)) if f.kind == ErrorKind::NotFound => this.forget(&plugin.name, &sandbox_id),
                Ok(Err(f)) => {
                    tracing::warn!(plugin = %plugin.name, sandbox = %sandbox_id, "moving the idle lifetime failed: {}", f.message)
                }
                Err(e) => tracing::warn!(plugin = %plugin.name, sandbox = %sandbox_id, "moving the idle lifetime failed: {e}"),
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Tracked>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(k: &KeepAlive, idle_secs: u64, at: Instant) {
        k.lock().insert(("p".into(), "s".into()), Tracked { idle_secs, refreshed: at });
    }

    #[test]
    fn a_refresh_is_due_once_per_quarter_window_and_covers_the_work_ahead() {
        let k = KeepAlive::default();
        let t0 = Instant::now();
        tracked(&k, 400, t0);
        assert_eq!(k.due("p", "s", 0, t0 + Duration::from_secs(99)), None, "within a quarter of the window");
        assert_eq!(k.due("p", "s", 60, t0 + Duration::from_secs(100)), Some(460), "the window plus the exec's deadline");
        assert_eq!(k.due("p", "s", 0, t0 + Duration::from_secs(150)), None, "the refresh restarted the quarter");
        assert_eq!(k.due("p", "other", 0, t0 + Duration::from_secs(1000)), None, "untracked");
    }

    #[test]
    fn a_forgotten_sandbox_is_never_refreshed() {
        let k = KeepAlive::default();
        let t0 = Instant::now();
        tracked(&k, 4, t0);
        k.forget("p", "s");
        assert_eq!(k.due("p", "s", 0, t0 + Duration::from_secs(10)), None);
    }
}
