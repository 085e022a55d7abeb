//! The host's one entry point for a contract call: provider lookup (S600), JSON
//! validation (S422), contract semantics and the plugin run. Every front end — the CLI's
//! `call`, the iii bridge, the router, benches — goes through [`Host::call`], and a
//! panic anywhere below it is caught here and reported as S700, never propagated.

use crate::calls::abandoned::Settlements;
use crate::calls::events::Events;
use crate::calls::list::{list_upstream, ListFailure};
use crate::calls::{self, Call};
use crate::config::HostConfig;
use crate::contract::codes::{CallError, Code};
use crate::contract::shapes::Leaf;
use crate::contract::validate;
use crate::plugin::loader::{Diagnostic, Loader};
use crate::plugin::registry::Registry;
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::{Book, LocalBook};
use crate::policy::shared_book::{EngineState, SharedBook};
use crate::runtime::engine::Runtime;
use crate::runtime::invoke::CallStats;
use crate::runtime::output::OutputTap;
use futures_util::FutureExt as _;
use serde_json::Value;
use std::sync::{Arc, OnceLock};

pub struct Host {
    pub config: HostConfig,
    pub loader: Loader,
    pub registry: Registry,
    pub metrics: crate::metrics::Metrics,
    /// Creates abandoned after they reached the upstream, being finished or undone.
    pub settling: Arc<Settlements>,
    /// Lifecycle events (created, paused, resumed, stopped, reaped) for front ends.
    pub events: Events,
    /// Moves absolute upstream lifetimes while sandboxes are used (idle semantics).
    pub keepalive: Arc<crate::calls::keepalive::KeepAlive>,
    /// Set once the slot books live in iii state (`serve --shared-state`); until then,
    /// and for ever under `call` and `e2b-api`, each provider's book is in-process.
    shared_state: OnceLock<Arc<dyn EngineState>>,
    /// The shared books by provider (each remembers the workers it saw on the engine).
    shared_books: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Book>>>,
}

impl Host {
    /// Builds the engine and loads every plugin in the configured directory.
    /// Returns the host and the files that failed to load.
    pub async fn start(config: HostConfig) -> anyhow::Result<(Arc<Host>, Vec<Diagnostic>)> {
        // Whoever may drop a .wasm must not be able to drop native code beside it.
        if let Some(cache) = &config.cache_dir {
            crate::runtime::cache::check_outside_plugins(cache, &config.plugins_dir)?;
        }
        let loader = Loader::new(Runtime::new(config.cache_dir.clone())?)?;
        Self::start_with(config, loader).await
    }

    pub async fn start_with(config: HostConfig, loader: Loader) -> anyhow::Result<(Arc<Host>, Vec<Diagnostic>)> {
        let (plugins, diags) = loader.load_dir(&config.plugins_dir).await;
        for d in &diags {
            tracing::error!("plugin not loaded: {d}");
        }
        let registry = Registry::default();
        for p in plugins {
            if !config.serves(&p.name) {
                tracing::info!(plugin = %p.name, "plugin not served here: it is not in --providers");
                continue;
            }
            tracing::info!(plugin = %p.name, version = %p.descriptor.version, "plugin loaded");
            registry.insert(p);
        }
        let metrics = crate::metrics::Metrics::new(config.metrics);
        let events = Events::default();
        let keepalive = Arc::default();
        let host = Host {
            config,
            loader,
            registry,
            metrics,
            settling: Arc::default(),
            events,
            keepalive,
            shared_state: OnceLock::new(),
            shared_books: Default::default(),
        };
        Ok((Arc::new(host), diags))
    }

    /// From now on every provider's slot book is the one in iii state reached through
    /// `state` (`policy/shared_book.rs`). False when one was set already.
    pub fn share_slot_books(&self, state: Arc<dyn EngineState>) -> bool {
        self.shared_state.set(state).is_ok()
    }

    /// Whether the slot books live in iii state.
    pub fn slot_books_shared(&self) -> bool {
        self.shared_state.get().is_some()
    }

    /// The engine state the slot books live in, when they do.
    pub fn shared_state(&self) -> Option<Arc<dyn EngineState>> {
        self.shared_state.get().cloned()
    }

    /// The slot book `provider`'s calls use: shared through iii state when this host
    /// serves with `--shared-state`, else the in-process one (`registry.book`).
    pub fn book(&self, provider: &str) -> Arc<dyn Book> {
        match self.shared_state.get() {
            Some(state) => {
                let mut books = self.shared_books.lock().unwrap_or_else(|p| p.into_inner());
                books.entry(provider.to_string()).or_insert_with(|| Arc::new(SharedBook::new(state.clone(), provider))).clone()
            }
            None => Arc::new(LocalBook(self.registry.book(provider))),
        }
    }

    /// Runs `leaf` on `provider` with the caller's JSON `payload`.
    pub async fn call(&self, provider: &str, leaf: Leaf, payload: &Value) -> Result<Value, CallError> {
        self.call_tapped(provider, leaf, payload, None).await
    }

    /// As [`Host::call`]; an exec's output also goes to `tap` while the command runs
    /// (the answer still carries it all, as kept within the output budget).
    pub async fn call_streaming(&self, provider: &str, leaf: Leaf, payload: &Value, tap: OutputTap) -> Result<Value, CallError> {
        self.call_tapped(provider, leaf, payload, Some(tap)).await
    }

    async fn call_tapped(&self, provider: &str, leaf: Leaf, payload: &Value, tap: Option<OutputTap>) -> Result<Value, CallError> {
        let started = std::time::Instant::now();
        let Some(plugin) = self.registry.get(provider) else {
            return Err(self.unknown_provider(provider));
        };
        // A quarantined plugin's calls fail fast: no validation, no instance (policy/quarantine.rs).
        let ticket = match plugin.quarantine.admit() {
            Ok(t) => t,
            Err(e) => {
                self.metrics.quarantine_refused(provider, leaf, started.elapsed());
                return Err(e);
            }
        };
        let (result, stats) = self.call_plugin(&plugin, leaf, payload, tap).await;
        if let Some(change) = ticket.finish(crate::policy::quarantine::Outcome::of(&result, stats.is_some())) {
            self.metrics.quarantine_changed(provider, &change);
        }
        self.metrics.record(provider, leaf, result.as_ref().err().map(|e| e.code), started.elapsed(), stats.as_ref());
        result
    }

    async fn call_plugin(
        &self,
        plugin: &Arc<LoadedPlugin>,
        leaf: Leaf,
        payload: &Value,
        tap: Option<OutputTap>,
    ) -> (Result<Value, CallError>, Option<CallStats>) {
        let provider = &*plugin.name;
        if !leaf.offered_by(plugin.capabilities()) {
            let offered = plugin.leaves().iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ");
            let msg = format!("provider `{provider}` does not support `{leaf}`; it offers: {offered}.");
            return (Err(CallError::new(Code::Unsupported, msg)), None);
        }
        let req = match validate::parse_request(leaf, payload) {
            Ok(r) => r,
            Err(e) => return (Err(e), None),
        };
        let _admitted = match plugin.admission.admit(provider) {
            Ok(a) => a,
            Err(e) => return (Err(e), None),
        };
        let book = self.book(provider);
        let call = Call { plugin, book: &book, settling: &self.settling, events: &self.events, keepalive: &self.keepalive };
        let run = std::panic::AssertUnwindSafe(calls::execute(&call, req, tap)).catch_unwind();
        match run.await {
            Ok(done) => done,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(plugin = provider, %leaf, "host panic while serving a call: {what}");
                let msg = format!(
                    "the host failed while running `{leaf}` on `{provider}` ({what}); the call was abandoned, other calls are unaffected."
                );
                (Err(CallError::new(Code::PluginTrapped, msg)), None)
            }
        }
    }

    /// Learns what is already running upstream for `provider` (a `list` whose answer
    /// replaces the slot book), so the cap also counts sandboxes created before this
    /// host started. `serve` does it for every provider at start, `call` before a create.
    /// It is the host's own request, not a caller's: it takes no admission or rate token.
    pub async fn reconcile(&self, provider: &str) -> Result<(), CallError> {
        let plugin = self.registry.get(provider).ok_or_else(|| self.unknown_provider(provider))?;
        if let Some(refused) = calls::answer::credential_refusal(&plugin) {
            return Err(refused);
        }
        let started = std::time::Instant::now();
        let book = self.book(provider);
        let wall = plugin.policy.limits.call_timeout;
        let list = std::panic::AssertUnwindSafe(list_upstream(&plugin, &*book, Some(&self.events), wall)).catch_unwind();
        let (result, stats) = match list.await {
            Ok((listed, stats)) => (listed.map(drop).map_err(|(ListFailure::Unusable(e) | ListFailure::Fault(e))| e), Some(stats)),
            Err(_) => (Err(CallError::new(Code::PluginTrapped, format!("the host failed while listing `{provider}`'s sandboxes."))), None),
        };
        self.metrics.record(provider, Leaf::List, result.as_ref().err().map(|e| e.code), started.elapsed(), stats.as_ref());
        result
    }

    /// [`Host::reconcile`] for every loaded provider at once, each within `limit`, so one
    /// slow provider cannot leave the others uncounted. Returns the providers that failed.
    pub async fn reconcile_all(&self, limit: std::time::Duration) -> Vec<String> {
        let names = self.registry.names();
        let runs = names.iter().map(|name| async move {
            let result = match tokio::time::timeout(limit, self.reconcile(name)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::new(Code::Unavailable, format!("listing took over {} s", limit.as_secs()))),
            };
            result.err().map(|e| {
                tracing::warn!(plugin = %name, "could not learn the running sandboxes: {e}");
                name.clone()
            })
        });
        futures_util::future::join_all(runs).await.into_iter().flatten().collect()
    }

    /// Retries [`Host::reconcile`] for `pending` providers with growing pauses until each
    /// succeeds, is unloaded, or `stop` fires.
    pub async fn reconcile_until_known(&self, mut pending: Vec<String>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut pause = std::time::Duration::from_secs(5);
        while !pending.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
            let mut still = Vec::new();
            for name in pending {
                if self.registry.get(&name).is_none() {
                    continue;
                }
                match self.reconcile(&name).await {
                    Ok(()) => tracing::info!(plugin = %name, "learnt the running sandboxes (retry)"),
                    Err(_) => still.push(name),
                }
            }
            pending = still;
            pause = (pause * 2).min(std::time::Duration::from_secs(300));
        }
    }

    /// S600 naming the loaded providers.
    pub fn unknown_provider(&self, provider: &str) -> CallError {
        let names = self.registry.names();
        CallError::new(
            Code::UnknownProvider,
            format!(
                "no provider named {} is loaded; loaded providers: {}.",
                crate::policy::plugin_text::bounded_debug(&provider, 80),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
        )
    }
}
