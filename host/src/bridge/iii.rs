//! The host as an iii worker (`iii-sdk` =0.25.0).
//!
//! Registers, per loaded plugin `<p>`, `sandbox::provider::<p>::<leaf>` for the lifecycle
//! floor and exactly the optional leaves the plugin offers (an absent leaf is the engine's
//! "function not found"); the router ids `sandbox::<leaf>` unless disabled; and one
//! `<function>::http` adapter per configured HTTP trigger. Handlers run on the host's own
//! multi-threaded runtime (the SDK's connection thread only relays), and every error
//! reaches the caller as `Error::Remote { code: "Sxxx", message: "[Sxxx] …" }`.
//!
//! Reconnection is the SDK's: it retries every 2 s and replays every registration on
//! reattach. Shutdown drains: new calls are refused with S502, in-flight ones finish
//! within the grace period, then the connection closes.

use super::http;
use crate::config::HttpTrigger;
use crate::contract::codes::{CallError, Code};
use crate::contract::schema;
use crate::plugin::LoadedPlugin;
use crate::{router, Host, Leaf};
use iii_sdk::protocol::RegisterTriggerInput;
use iii_sdk::{Error as IiiError, IIIClient, InitOptions, RegisterFunction};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `sandbox::provider::<p>::<leaf>`.
pub fn provider_function_id(provider: &str, leaf: Leaf) -> String {
    format!("sandbox::provider::{provider}::{leaf}")
}

/// `sandbox::<leaf>`.
pub fn router_function_id(leaf: Leaf) -> String {
    format!("sandbox::{leaf}")
}

/// Options for [`Bridge::connect`].
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    pub url: String,
    /// OpenTelemetry export to the engine (`<url>/otel`); `None` follows `OTEL_ENABLED`.
    pub otel: Option<bool>,
}

/// Calls in flight, and whether new ones are still accepted.
#[derive(Default)]
struct Gate {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

struct Ticket(Arc<Gate>);

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Gate {
    fn enter(self: &Arc<Self>) -> Result<Ticket, CallError> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(self.clone());
        if self.draining.load(Ordering::Acquire) {
            return Err(CallError::new(Code::Unavailable, "this sandbox host is shutting down and takes no new calls; retry, another worker may serve it."));
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
    /// Registered functions, keyed by owner: a provider name, or "" for the router.
    functions: Mutex<BTreeMap<String, Vec<iii_sdk::iii::FunctionRef>>>,
}

impl Bridge {
    /// Connects to the engine (the SDK keeps retrying in the background) and registers
    /// every loaded plugin, the router and the HTTP triggers.
    pub fn connect(host: Arc<Host>, options: &BridgeOptions) -> Arc<Bridge> {
        let mut init = InitOptions::default();
        if let Some(enabled) = options.otel {
            init.otel = Some(iii_helpers::observability::OtelConfig { enabled: Some(enabled), ..Default::default() });
        }
        let client = iii_sdk::register_worker(&options.url, init);
        let bridge = Arc::new(Bridge {
            client,
            host: host.clone(),
            runtime: tokio::runtime::Handle::current(),
            gate: Arc::default(),
            functions: Mutex::default(),
        });
        for plugin in host.registry.all() {
            bridge.register_provider(&plugin);
        }
        if host.config.router {
            bridge.register_router();
        }
        for t in &host.config.http_triggers {
            if let Err(e) = bridge.register_http_trigger(t) {
                tracing::error!("http trigger {} {} -> {} not registered: {e}", t.method, t.path, t.function);
            }
        }
        bridge
    }

    pub fn client(&self) -> &IIIClient {
        &self.client
    }

    /// Waits until the engine has acknowledged this worker.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<(), IiiError> {
        self.client.wait_until_registered(timeout).await
    }

    /// Function ids currently registered, sorted.
    pub fn function_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().values().flatten().map(|f| f.id.clone()).collect();
        ids.sort();
        ids
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<iii_sdk::iii::FunctionRef>>> {
        self.functions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `sandbox::provider::<p>::<leaf>` for every leaf `plugin` offers. On a
    /// new version only the difference is applied: leaves it still offers stay registered
    /// (their handlers look the plugin up per call), so a swap leaves no gap.
    pub fn register_provider(&self, plugin: &LoadedPlugin) {
        let name = plugin.name.to_string();
        let leaves = plugin.leaves();
        let mut all = self.lock();
        let refs = all.entry(name.clone()).or_default();
        refs.retain(|r| {
            let keep = leaves.iter().any(|l| provider_function_id(&name, *l) == r.id);
            if !keep {
                r.unregister();
            }
            keep
        });
        for leaf in leaves {
            let id = provider_function_id(&name, leaf);
            if refs.iter().any(|r| r.id == id) {
                continue;
            }
            let (host, provider) = (self.host.clone(), name.clone());
            let invoke: Invoke = Arc::new(move |payload| {
                let (host, provider) = (host.clone(), provider.clone());
                Box::pin(async move { host.call(&provider, leaf, &payload).await })
            });
            let description = format!("{} Provider `{name}` ({}).", leaf.description(), plugin.descriptor.version);
            refs.push(self.register(&id, description, schema::request(leaf, false), schema::response(leaf), invoke));
        }
    }

    /// Unregisters every function of provider `name` (after a plugin is removed).
    pub fn unregister_provider(&self, name: &str) {
        if let Some(refs) = self.lock().remove(name) {
            for r in refs {
                r.unregister();
            }
        }
    }

    fn register_router(&self) {
        let mut refs = Vec::new();
        for leaf in Leaf::ALL {
            let host = self.host.clone();
            let invoke: Invoke = Arc::new(move |payload| {
                let host = host.clone();
                Box::pin(async move { router::call(&host, leaf, payload).await })
            });
            let description = format!("{} Routed to `provider` (default: the configured default_provider).", leaf.description());
            refs.push(self.register(&router_function_id(leaf), description, schema::request(leaf, true), schema::response(leaf), invoke));
        }
        self.lock().insert(String::new(), refs);
    }

    /// Binds `trigger.function` to an iii `http` trigger through a `<function>::http` adapter.
    #[allow(deprecated)] // register_trigger is 0.25's documented way to bind http triggers.
    pub fn register_http_trigger(&self, trigger: &HttpTrigger) -> Result<(), String> {
        let target = self.resolve_function(&trigger.function)?;
        let adapter_id = format!("{}::http", trigger.function);
        let invoke: Invoke = Arc::new(move |envelope| {
            let target = target.clone();
            Box::pin(async move { Ok(http::response(target(http::payload(&envelope)).await)) })
        });
        let r = self.register(&adapter_id, format!("HTTP adapter for {}", trigger.function), json!({"type": "object"}), json!({"type": "object"}), invoke);
        self.lock().entry(format!("http:{}", trigger.function)).or_default().push(r);
        self.client
            .register_trigger(RegisterTriggerInput::new(
                "http",
                adapter_id,
                json!({"api_path": trigger.path, "http_method": trigger.method.to_ascii_uppercase()}),
            ))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The in-process call behind a contract function id.
    fn resolve_function(&self, id: &str) -> Result<Invoke, String> {
        let host = self.host.clone();
        if let Some(rest) = id.strip_prefix("sandbox::provider::") {
            let (provider, leaf) = rest.split_once("::").ok_or_else(|| format!("{id} is not a provider function id"))?;
            let leaf = Leaf::parse(leaf).ok_or_else(|| format!("{id}: unknown leaf"))?;
            let provider = provider.to_string();
            return Ok(Arc::new(move |p| {
                let (host, provider) = (host.clone(), provider.clone());
                Box::pin(async move { host.call(&provider, leaf, &p).await })
            }));
        }
        let leaf = id.strip_prefix("sandbox::").and_then(Leaf::parse).ok_or_else(|| format!("{id} is not a sandbox function id"))?;
        Ok(Arc::new(move |p| {
            let host = host.clone();
            Box::pin(async move { router::call(&host, leaf, p).await })
        }))
    }

    fn register(&self, id: &str, description: String, request: Value, response: Value, invoke: Invoke) -> iii_sdk::iii::FunctionRef {
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
                    Err(e) => Err(CallError::new(Code::PluginTrapped, format!("the host task serving this call failed ({e}); other calls are unaffected."))),
                };
                result.map_err(remote)
            }
        };
        self.client.register_function(
            id,
            RegisterFunction::new_async(handler).description(description).request_format(request).response_format(response),
        )
    }

    /// Stops taking calls and waits up to `grace` for in-flight ones. Returns true when
    /// every call finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.gate.draining.store(true, Ordering::Release);
        let wait = async {
            loop {
                let idle = self.gate.idle.notified();
                if self.gate.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(grace, wait).await.is_ok()
    }

    pub fn in_flight(&self) -> usize {
        self.gate.in_flight.load(Ordering::Acquire)
    }

    /// Unregisters everything, lets the frames flush, and closes the connection.
    pub async fn shutdown(&self) {
        let all: Vec<_> = std::mem::take(&mut *self.lock()).into_values().flatten().collect();
        for f in all {
            f.unregister();
        }
        // The SDK drops frames still queued when the socket closes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.client.shutdown_async().await;
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

/// A contract error as the iii error callers branch on.
pub fn remote(e: CallError) -> IiiError {
    IiiError::Remote { code: e.code.as_str().to_string(), message: e.message(), stacktrace: None }
}
