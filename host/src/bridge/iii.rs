//! The host as an iii worker (`iii-sdk` =0.25.0).
//!
//! Registers, per loaded plugin `<p>`, `sandbox::provider::<p>::<leaf>` for the lifecycle
//! floor and exactly the optional leaves the plugin offers (an absent leaf is the engine's
//! "function not found"); when the router is enabled (opt-in), the router ids
//! `sandbox::<leaf>` that no other worker owns (`router_claims.rs`); and one
//! `<function>::http` adapter per function named by the HTTP triggers, which every
//! trigger of that function points at. Handlers run on the host's own multi-threaded
//! runtime (the SDK's connection thread only relays), and every error reaches the
//! caller as `Error::Remote { code: "Sxxx", message: "[Sxxx] …" }`. An exec with a
//! `stream` channel ref streams its output there while it runs (`stream.rs`), and every
//! lifecycle event is published on `sandbox.lifecycle` (`events.rs`).
//!
//! Reconnection is the SDK's: it retries every 2 s and replays every registration on
//! reattach. The bridge keeps that replay right: an id removed while the engine is away
//! is unregistered only once it is back (`registrations.rs`), and after every connect
//! the engine's function list is checked and whatever it lacks is registered again
//! (`reattach.rs`). Shutdown drains: new calls are refused with S502, in-flight ones
//! finish within the grace period, then the connection closes.

mod events;
mod forward;
pub mod ownership;
mod reattach;
mod registrations;
mod router_claims;
pub mod stream;

pub use events::TOPIC as LIFECYCLE_TOPIC;
/// The SDK this bridge speaks, for callers and tests that must use the same version.
pub use iii_sdk;
pub use ownership::{Role, ServingReport};
pub use router_claims::RouterReport;

use super::http;
use crate::config::HttpTrigger;
use crate::contract::codes::{CallError, Code};
use crate::contract::schema;
use crate::in_flight::{Entered, InFlight};
use crate::plugin::LoadedPlugin;
use crate::policy::concurrency::BookFuture;
use crate::policy::shared_book::{EngineState, StateError};
use crate::{router, Host, Leaf};
use futures_util::FutureExt;
use iii_sdk::protocol::RegisterTriggerInput;
use iii_sdk::runtime::WorkerMetadata;
use iii_sdk::{Error as IiiError, IIIClient, InitOptions, RegisterFunction};
use registrations::{Recipe, Registrations};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// `sandbox::provider::<p>::<leaf>`.
pub fn provider_function_id(provider: &str, leaf: Leaf) -> String {
    format!("sandbox::provider::{provider}::{leaf}")
}

/// `sandbox::<leaf>`.
pub fn router_function_id(leaf: Leaf) -> String {
    format!("sandbox::{leaf}")
}

/// `<function>::http`: the one adapter every HTTP trigger of `function` points at.
pub fn http_adapter_id(function: &str) -> String {
    format!("{function}::http")
}

/// Options for [`Bridge::connect`].
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    pub url: String,
    /// OpenTelemetry export to the engine (`<url>/otel`); `None` follows `OTEL_ENABLED`.
    pub otel: Option<bool>,
}

/// How this host serves beside others on one engine (`serve`'s defaults differ from
/// [`Bridge::connect`]'s, which keeps the in-process slot books).
#[derive(Debug, Clone, Default)]
pub struct Serving {
    /// The worker name, unique on the engine (default: `III_WORKER_NAME`, else the SDK's
    /// `hostname:pid`).
    pub worker_name: Option<String>,
    /// Keep every provider's slot book in iii state, shared by every host on the engine.
    pub shared_state: bool,
}

/// The engine's `state::*` (and `engine::workers::list`) through this worker's client,
/// for the shared slot book. Fails at once while disconnected: a book that cannot count
/// refuses creates rather than waiting.
struct EngineStateClient {
    client: IIIClient,
    worker: String,
}

/// A state call's deadline.
const STATE_TIMEOUT_MS: u64 = 5_000;

impl EngineState for EngineStateClient {
    fn trigger<'a>(&'a self, function: &'a str, payload: Value) -> BookFuture<'a, Result<Value, StateError>> {
        Box::pin(async move {
            if !registrations::is_connected(&self.client) {
                return Err(StateError::NotConnected);
            }
            let mut request = iii_sdk::protocol::TriggerRequest::new(function, payload);
            request.timeout_ms = Some(STATE_TIMEOUT_MS);
            match self.client.trigger(request).await {
                Ok(v) => Ok(v),
                Err(IiiError::Remote { code, message, .. }) => Err(StateError::Refused { function: function.to_string(), code, message }),
                Err(IiiError::Timeout) => Err(StateError::Timeout(function.to_string())),
                Err(IiiError::NotConnected) => Err(StateError::NotConnected),
                Err(e) => Err(StateError::Unexpected(e.to_string())),
            }
        })
    }
    fn worker_name(&self) -> &str {
        &self.worker
    }
}

/// Calls in flight, and whether new ones are still accepted.
#[derive(Default)]
struct Gate {
    draining: AtomicBool,
    calls: Arc<InFlight>,
}

impl Gate {
    fn enter(&self) -> Result<Entered, CallError> {
        let ticket = self.calls.enter();
        if self.draining.load(Ordering::Acquire) {
            return Err(CallError::new(
                Code::Unavailable,
                "this sandbox host is shutting down and takes no new calls; retry, another worker may serve it.",
            ));
        }
        Ok(ticket)
    }
}

type Invoke = Arc<dyn Fn(Value) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, CallError>> + Send>> + Send + Sync>;

pub struct Bridge {
    client: IIIClient,
    host: Arc<Host>,
    runtime: tokio::runtime::Handle,
    gate: Arc<Gate>,
    registrations: Mutex<Registrations>,
    /// Bound HTTP routes (method, path as the engine keys it) → the function behind each.
    http_routes: Mutex<BTreeMap<(String, String), String>>,
    /// Set by `shutdown`: the reconnect check stops.
    closed: AtomicBool,
    /// Fires on `shutdown`: the lifecycle publisher stops.
    stop: tokio::sync::watch::Sender<bool>,
    /// The name the engine knows this worker by (`engine::functions::list`'s `worker_name`).
    worker_name: String,
    /// What the router's last claim found (`None` until one finished).
    router_report: Mutex<Option<RouterReport>>,
    /// Active or standby, as last seen (`ownership.rs`).
    serving: Mutex<Option<ServingReport>>,
}

impl Bridge {
    /// Connects to the engine (the SDK keeps retrying in the background) and registers
    /// every loaded plugin and the HTTP triggers; the router (when enabled) is claimed
    /// once connected, and lifecycle events are published from now on.
    pub fn connect(host: Arc<Host>, options: &BridgeOptions) -> Arc<Bridge> {
        Self::connect_with(host, options, &Serving::default())
    }

    /// As [`Bridge::connect`], under `serving`'s worker name, with the slot books in iii
    /// state when it asks for that (set before any function is registered, so no call
    /// ever counts in the in-process book).
    pub fn connect_with(host: Arc<Host>, options: &BridgeOptions, serving: &Serving) -> Arc<Bridge> {
        let mut init = InitOptions::default();
        if let Some(enabled) = options.otel {
            init.otel = Some(iii_helpers::observability::OtelConfig { enabled: Some(enabled), ..Default::default() });
        }
        // The SDK's default name (`hostname:pid`), renamed by III_WORKER_NAME as the SDK's
        // managed identity mode does (iii-sdk `apply_managed_identity_from_env`): the
        // router's claim must recognise its own registrations in the engine's list.
        let mut metadata = WorkerMetadata::default();
        if let Some(name) = std::env::var("III_WORKER_NAME").ok().filter(|n| !n.is_empty()) {
            metadata.name = name;
        }
        if let Some(name) = serving.worker_name.clone().filter(|n| !n.is_empty()) {
            metadata.name = name;
        }
        let worker_name = metadata.name.clone();
        init.metadata = Some(metadata);
        let client = iii_sdk::register_worker(&options.url, init);
        if serving.shared_state
            && !host.share_slot_books(Arc::new(EngineStateClient { client: client.clone(), worker: worker_name.clone() }))
        {
            tracing::warn!("the slot books were already shared through another engine connection; keeping that one");
        }
        let bridge = Arc::new(Bridge {
            client,
            host: host.clone(),
            runtime: tokio::runtime::Handle::current(),
            gate: Arc::default(),
            registrations: Mutex::default(),
            http_routes: Mutex::default(),
            closed: AtomicBool::new(false),
            stop: tokio::sync::watch::channel(false).0,
            worker_name,
            router_report: Mutex::default(),
            serving: Mutex::default(),
        });
        // Subscribed before any call can be served, so none of their events is missed.
        bridge.runtime.spawn(events::publish_all(bridge.client.clone(), host.events.subscribe(), bridge.stop.subscribe()));
        if host.slot_books_shared() {
            // The books are in the engine: count what already runs there first, then serve.
            let b = bridge.clone();
            bridge.runtime.spawn(async move {
                if let Err(e) = b.client.wait_until_registered(ownership::FIRST_CONNECT).await {
                    tracing::warn!("the engine has not acknowledged this worker yet ({e}); registering anyway");
                }
                ownership::count_running(&b).await;
                b.register_everything();
                tracing::info!("registered {} functions once the running sandboxes were counted", b.function_ids().len());
            });
        } else {
            bridge.register_everything();
        }
        bridge.runtime.spawn(reattach::watch(Arc::downgrade(&bridge)));
        bridge.runtime.spawn(ownership::watch(Arc::downgrade(&bridge)));
        bridge
    }

    fn register_everything(&self) {
        for plugin in self.host.registry.all() {
            self.register_provider(&plugin);
        }
        for t in &self.host.config.http_triggers {
            if let Err(e) = self.register_http_trigger(t) {
                tracing::error!("http trigger {} {} -> {} not registered: {e}", t.method, t.path, t.function);
            }
        }
    }

    /// Active or standby, as last seen (`None` before the first look).
    pub fn serving_report(&self) -> Option<ServingReport> {
        self.serving.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The worker name this host registers under.
    pub fn worker_name(&self) -> &str {
        &self.worker_name
    }

    /// What the router's last claim found: `None` while the router is disabled or its
    /// first claim has not finished.
    pub fn router_report(&self) -> Option<RouterReport> {
        self.router_report.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn client(&self) -> &IIIClient {
        &self.client
    }

    /// Waits until the engine has acknowledged this worker.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<(), IiiError> {
        self.client.wait_until_registered(timeout).await
    }

    /// Function ids this host serves, sorted.
    pub fn function_ids(&self) -> Vec<String> {
        self.lock().ids()
    }

    fn lock(&self) -> MutexGuard<'_, Registrations> {
        self.registrations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the SDK holds a live connection to the engine right now.
    pub fn is_connected(&self) -> bool {
        registrations::is_connected(&self.client)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Registers `ids` again (the engine lacks them); returns those still served.
    fn re_register(&self, ids: &[String]) -> Vec<String> {
        let mut registrations = self.lock();
        ids.iter().filter(|id| registrations.re_register(&self.client, id)).cloned().collect()
    }

    /// Registers `sandbox::provider::<p>::<leaf>` for every leaf `plugin` offers. On a
    /// new version only the difference is applied: leaves it still offers stay registered
    /// (their handlers look the plugin up per call), so a swap leaves no gap.
    pub fn register_provider(&self, plugin: &LoadedPlugin) {
        let name = plugin.name.to_string();
        let wanted: Vec<(Leaf, String)> = plugin.leaves().into_iter().map(|l| (l, provider_function_id(&name, l))).collect();
        let mut registrations = self.lock();
        for id in registrations.ids_of(&name) {
            if !wanted.iter().any(|(_, w)| *w == id) {
                registrations.retire(&self.client, &id);
            }
        }
        for (leaf, id) in wanted {
            if registrations.is_served(&id) {
                continue;
            }
            let (host, provider, engine) = (self.host.clone(), name.clone(), self.engine_url());
            let invoke: Invoke = Arc::new(move |payload| {
                let (host, provider, engine) = (host.clone(), provider.clone(), engine.clone());
                Box::pin(async move { stream::call(&host, &engine, &provider, leaf, payload).await })
            });
            let description = format!("{} Provider `{name}` ({}).", leaf.description(), plugin.descriptor.version);
            let recipe = self.recipe(description, schema::request(leaf, false), schema::response(leaf), invoke);
            registrations.serve(&self.client, &id, &name, recipe);
        }
    }

    /// Unregisters every function of provider `name` (after a plugin is removed).
    pub fn unregister_provider(&self, name: &str) {
        let mut registrations = self.lock();
        for id in registrations.ids_of(name) {
            registrations.retire(&self.client, &id);
        }
    }

    /// The engine's WebSocket address, where channels are opened too.
    fn engine_url(&self) -> Arc<str> {
        self.client.address().into()
    }

    /// Serves the router ids of `leaves` (`router_claims.rs` decides which).
    fn serve_router(&self, leaves: &[Leaf]) {
        let mut registrations = self.lock();
        for &leaf in leaves {
            let (host, engine, client) = (self.host.clone(), self.engine_url(), self.client.clone());
            let invoke: Invoke = Arc::new(move |payload| {
                let (host, engine, client) = (host.clone(), engine.clone(), client.clone());
                Box::pin(async move { routed(&host, &engine, &client, leaf, payload).await })
            });
            let description = format!("{} Routed to `provider` (default: the configured default_provider).", leaf.description());
            let recipe = self.recipe(description, schema::request(leaf, true), schema::response(leaf), invoke);
            registrations.serve(&self.client, &router_function_id(leaf), "", recipe);
        }
    }

    /// Stops serving router ids another worker owns.
    fn give_up_router_ids<'a>(&self, ids: impl IntoIterator<Item = &'a String>) {
        let mut registrations = self.lock();
        for id in ids {
            registrations.retire(&self.client, id);
        }
    }

    /// Binds `trigger.function` to an iii `http` trigger through its `<function>::http`
    /// adapter, registered with the function's first trigger and shared by the others.
    /// A route (method and path) already bound is refused.
    #[allow(deprecated)] // register_trigger is 0.25's documented way to bind http triggers.
    pub fn register_http_trigger(&self, trigger: &HttpTrigger) -> Result<(), String> {
        let route = trigger.route();
        let mut routes = self.http_routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bound) = routes.get(&route) {
            return Err(format!("{} {} is already bound to {bound}", route.0, trigger.path));
        }
        let adapter_id = http_adapter_id(&trigger.function);
        if !self.lock().is_served(&adapter_id) {
            let target = self.resolve_function(&trigger.function)?;
            let invoke: Invoke = Arc::new(move |envelope| {
                let target = target.clone();
                Box::pin(async move { Ok(http::response(target(http::payload(&envelope)).await)) })
            });
            let description = format!("HTTP adapter for {}", trigger.function);
            let recipe = self.recipe(description, json!({"type": "object"}), json!({"type": "object"}), invoke);
            self.lock().serve(&self.client, &adapter_id, &format!("http:{}", trigger.function), recipe);
        }
        let config = json!({"api_path": trigger.path, "http_method": route.0});
        self.client.register_trigger(RegisterTriggerInput::new("http", adapter_id, config)).map_err(|e| e.to_string())?;
        routes.insert(route, trigger.function.clone());
        Ok(())
    }

    /// The in-process call behind a contract function id.
    fn resolve_function(&self, id: &str) -> Result<Invoke, String> {
        let (host, engine) = (self.host.clone(), self.engine_url());
        if let Some(rest) = id.strip_prefix("sandbox::provider::") {
            let (provider, leaf) = rest.split_once("::").ok_or_else(|| format!("{id} is not a provider function id"))?;
            let leaf = Leaf::parse(leaf).ok_or_else(|| format!("{id}: unknown leaf"))?;
            let provider = provider.to_string();
            return Ok(Arc::new(move |p| {
                let (host, provider, engine) = (host.clone(), provider.clone(), engine.clone());
                Box::pin(async move { stream::call(&host, &engine, &provider, leaf, p).await })
            }));
        }
        let leaf = id.strip_prefix("sandbox::").and_then(Leaf::parse).ok_or_else(|| format!("{id} is not a sandbox function id"))?;
        let client = self.client.clone();
        Ok(Arc::new(move |p| {
            let (host, engine, client) = (host.clone(), engine.clone(), client.clone());
            Box::pin(async move { routed(&host, &engine, &client, leaf, p).await })
        }))
    }

    /// How to register a function that runs `invoke` behind the drain gate.
    fn recipe(&self, description: String, request: Value, response: Value, invoke: Invoke) -> Recipe {
        let (gate, runtime) = (self.gate.clone(), self.runtime.clone());
        let handler = move |payload: Value| {
            let (gate, runtime, invoke) = (gate.clone(), runtime.clone(), invoke.clone());
            async move {
                let ticket = gate.enter().map_err(remote)?;
                // Run on the host's runtime; a panic there is contained and reported. The
                // ticket lives in that task, so a drain waits for the work itself even if
                // the SDK drops this handler future.
                let work = runtime.spawn(async move {
                    let result = invoke(payload).await;
                    drop(ticket);
                    result
                });
                let result = match work.await {
                    Ok(r) => r,
                    Err(e) => Err(CallError::new(
                        Code::PluginTrapped,
                        format!("the host task serving this call failed ({e}); other calls are unaffected."),
                    )),
                };
                result.map_err(remote)
            }
        };
        Arc::new(move || {
            RegisterFunction::new_async(handler.clone())
                .description(description.clone())
                .request_format(request.clone())
                .response_format(response.clone())
        })
    }

    /// Stops taking calls and waits up to `grace` for in-flight ones. Returns true when
    /// every call finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.gate.draining.store(true, Ordering::Release);
        self.gate.calls.idle_within(grace).await
    }

    pub fn in_flight(&self) -> usize {
        self.gate.calls.count()
    }

    /// Unregisters everything, lets the frames flush, and closes the connection.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let all = self.lock().take_all();
        for f in all {
            f.unregister();
        }
        // The SDK drops frames still queued when the socket closes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.client.shutdown_async().await;
    }
}

/// The SDK's connection runs on a thread of its own that outlives every runtime: a
/// bridge dropped without [`Bridge::shutdown`] would keep dialling the engine's address
/// every 2 s for the life of the process, whatever listens there by then.
impl Drop for Bridge {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.stop.send(true);
        // `shutdown_async` only flips flags and queues the close frame (it never waits),
        // so one poll completes it; `shutdown` would block here joining the thread.
        let _ = self.client.shutdown_async().now_or_never();
    }
}

impl crate::plugin::watch::ReloadListener for Bridge {
    fn installed(&self, plugin: &Arc<LoadedPlugin>) {
        self.register_provider(plugin);
    }
    fn removed(&self, name: &str) {
        self.unregister_provider(name);
    }
}

/// One `sandbox::<leaf>` call: the router picks the provider, then it runs as the
/// provider's own function would (an exec may stream) — here when the provider is
/// loaded here, else on the worker that serves it, through the engine (`forward.rs`).
async fn routed(host: &Host, engine: &str, client: &IIIClient, leaf: Leaf, payload: Value) -> Result<Value, CallError> {
    let (provider, payload) = router::split(host, leaf, payload)?;
    if host.registry.get(&provider).is_none() {
        if leaf == Leaf::Exec {
            // A malformed stream ref is refused here first, as for a provider loaded here;
            // a well-formed one travels on for the serving host to write to.
            stream::take_ref(&mut payload.clone())?;
        }
        return forward::forward(host, client, &provider, leaf, payload).await;
    }
    stream::call(host, engine, &provider, leaf, payload).await
}

/// A contract error as the iii error callers branch on.
pub fn remote(e: CallError) -> IiiError {
    IiiError::Remote { code: e.code.as_str().to_string(), message: e.message(), stacktrace: None }
}
