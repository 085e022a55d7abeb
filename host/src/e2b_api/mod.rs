//! The E2B-compatible API: E2B's control plane and envd, in front of every loaded
//! provider plugin, so code written for the official E2B SDKs runs on any of them with
//! `E2B_API_URL` and `E2B_SANDBOX_URL` pointing here. A front end like the iii bridge:
//! every sandbox operation is a [`Host::call`], so caps, allowlists, S-codes and
//! metrics apply unchanged.
//!
//! Module map:
//! - [`config`]: `[e2b_api]` in the host config → [`Settings`].
//! - [`auth`]: API keys (constant time) and per-sandbox envd tokens.
//! - [`quota`]: each key's rate limit and sandbox cap.
//! - [`ids`]: sandbox ids that carry their provider; template ids → provider + image.
//! - [`views`]: E2B's sandbox objects; the owner and template kept in upstream metadata.
//! - [`control`]: `/v2/sandboxes`, `/sandboxes/{id}/…`; [`listing`]: list filters and pages.
//! - [`envd`]: the in-sandbox daemon's Connect RPC and `/files`, routed by `E2b-Sandbox-Id`.
//! - [`errors`], [`http`]: E2B and Connect error bodies; the HTTP/1.1 edge.

pub mod auth;
pub mod config;
pub mod control;
pub mod envd;
pub mod errors;
pub mod http;
pub mod ids;
pub mod listing;
pub mod quota;
pub mod views;

pub use config::{ApiKey, Settings, TemplateTarget};

use crate::contract::codes::Code;
use crate::contract::shapes::{Capability, Leaf};
use crate::Host;
use auth::{Caller, Keys};
use errors::ApiError;
use ids::SandboxRef;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct E2bApi {
    host: Arc<Host>,
    settings: Settings,
    keys: Keys,
    quotas: quota::Quotas,
    processes: envd::process::Processes,
}

/// A sandbox the caller owns, as the host's `get` reports it.
pub struct Owned {
    pub sandbox: SandboxRef,
    pub row: Value,
}

impl E2bApi {
    pub fn new(host: Arc<Host>, settings: Settings) -> anyhow::Result<Arc<E2bApi>> {
        let keys = Keys::new(&settings);
        let quotas = quota::Quotas::new(keys.all().map(|c| (keys.key(c).name.clone(), keys.key(c).rate_per_minute)));
        for (name, t) in &settings.templates {
            if host.registry.get(&t.provider).is_none() {
                tracing::warn!("e2b api: template {name:?} names provider {:?}, which is not loaded (yet)", t.provider);
            }
        }
        let processes = envd::process::Processes::default();
        Ok(Arc::new(E2bApi { host, settings, keys, quotas, processes }))
    }

    /// Serves until `stop` turns true.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener, stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let api = self;
        let handler = Arc::new(move |req| {
            let api = api.clone();
            Box::pin(async move { api.handle(req).await }) as std::pin::Pin<Box<dyn std::future::Future<Output = http::Reply> + Send>>
        });
        http::serve(listener, stop, handler).await;
        Ok(())
    }

    async fn handle(self: Arc<Self>, req: hyper::Request<hyper::body::Incoming>) -> http::Reply {
        let path = req.uri().path();
        let envd = path == "/files" || path == "/health" || path.starts_with("/process.") || path.starts_with("/filesystem.");
        if envd {
            envd::handle(&self, req).await
        } else {
            control::handle(&self, req).await
        }
    }

    /// The caller a control-plane request's `X-API-KEY` names, within its rate.
    fn caller(&self, req: &hyper::Request<hyper::body::Incoming>) -> Result<Caller, ApiError> {
        let caller = self.keys.identify(http::header(req, "x-api-key")).ok_or_else(ApiError::unauthorized)?;
        self.quotas.of(caller).admit()?;
        Ok(caller)
    }

    fn key(&self, caller: Caller) -> &ApiKey {
        self.keys.key(caller)
    }

    /// The loaded providers `caller` may use.
    fn providers_of(&self, caller: Caller) -> Vec<String> {
        let key = self.key(caller);
        self.host.registry.names().into_iter().filter(|p| key.providers.as_ref().is_none_or(|allowed| allowed.contains(p))).collect()
    }

    fn may_use(&self, caller: Caller, provider: &str) -> bool {
        self.key(caller).providers.as_ref().is_none_or(|allowed| allowed.iter().any(|p| p == provider))
    }

    /// `Host::call`, its error in E2B's form.
    async fn call(&self, provider: &str, leaf: Leaf, payload: Value) -> Result<Value, ApiError> {
        self.host.call(provider, leaf, &payload).await.map_err(|e| ApiError::from_call(&e))
    }

    fn offers(&self, provider: &str, cap: Capability) -> bool {
        self.host.registry.get(provider).is_some_and(|p| p.capabilities().contains(&cap))
    }

    /// The sandbox `id` if `caller` owns it. Anything else — an id this API never
    /// issued, a provider the key may not use, a sandbox gone or another key's — is the
    /// same 404, as E2B answers: nobody learns which sandboxes others have.
    async fn owned(&self, caller: Caller, id: &str) -> Result<Owned, ApiError> {
        let not_found = || ApiError::sandbox_not_found(id);
        let sandbox = SandboxRef::parse(id).ok_or_else(not_found)?;
        if !self.may_use(caller, &sandbox.provider) || self.host.registry.get(&sandbox.provider).is_none() {
            return Err(not_found());
        }
        let row = if self.offers(&sandbox.provider, Capability::Get) {
            match self.host.call(&sandbox.provider, Leaf::Get, &json!({ "sandbox_id": sandbox.upstream_id })).await {
                Ok(row) => row,
                Err(e) if e.code == Code::NotFound => return Err(not_found()),
                Err(e) => return Err(ApiError::from_call(&e)),
            }
        } else {
            let listed = self.call(&sandbox.provider, Leaf::List, json!({})).await?;
            let rows = listed["sandboxes"].as_array().cloned().unwrap_or_default();
            rows.into_iter().find(|r| r["sandbox_id"] == sandbox.upstream_id).ok_or_else(not_found)?
        };
        if views::owner(&row) != Some(self.key(caller).name.as_str()) {
            return Err(not_found());
        }
        Ok(Owned { sandbox, row })
    }

    /// Every sandbox `caller` owns on the providers it may use, as host list rows.
    async fn owned_rows(&self, caller: Caller) -> Result<Vec<(SandboxRef, Value)>, ApiError> {
        let name = self.key(caller).name.clone();
        let mut out = Vec::new();
        for provider in self.providers_of(caller) {
            let listed = self.call(&provider, Leaf::List, json!({})).await.map_err(|mut e| {
                e.message = format!("listing provider {provider:?} failed: {}", e.message);
                e
            })?;
            for row in listed["sandboxes"].as_array().into_iter().flatten() {
                if views::owner(row) == Some(name.as_str()) {
                    let id = row["sandbox_id"].as_str().unwrap_or_default();
                    out.push((SandboxRef::new(&provider, id), row.clone()));
                }
            }
        }
        Ok(out)
    }
}
