//! E2B control plane (`{api-base}`, header `X-API-Key` set by the host).
//! Shapes: `spec/openapi.yml` of e2b-dev/E2B — `NewSandbox`, `Sandbox`, `ListedSandbox`,
//! `SandboxDetail`, errors `{code, message}`.

use provider_kit::errors::bad_input;
use provider_kit::upstream::{encode, Call};
use provider_kit::{config_or, CreateRequest, Error, ErrorKind, Sandbox};
use serde::Deserialize;
use serde_json::json;

pub const DEFAULT_API_BASE: &str = "https://api.e2b.app";
pub const DEFAULT_DOMAIN: &str = "e2b.app";

fn base() -> String {
    config_or("api-base", DEFAULT_API_BASE).trim_end_matches('/').to_string()
}

/// `POST /sandboxes` → 201 `Sandbox`.
#[derive(Debug, Deserialize)]
pub struct Created {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
}

/// `GET /sandboxes/{id}` → `SandboxDetail` (the parts envd access needs).
#[derive(Debug, Deserialize)]
pub struct Detail {
    #[serde(rename = "envdAccessToken")]
    pub envd_access_token: Option<String>,
    pub domain: Option<String>,
    pub state: Option<String>,
}

impl Detail {
    pub fn domain(&self) -> String {
        self.domain.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| config_or("domain", DEFAULT_DOMAIN))
    }
}

/// One row of `GET /v2/sandboxes`.
#[derive(Debug, Deserialize)]
struct Listed {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "templateID")]
    template_id: String,
    alias: Option<String>,
    #[serde(rename = "startedAt")]
    started_at: String,
}

pub async fn create(req: &CreateRequest) -> Result<Created, Error> {
    let timeout = u32::try_from(req.idle_timeout_secs)
        .map_err(|_| bad_input(format!("idle_timeout_secs {} is too large for E2B", req.idle_timeout_secs)))?;
    let mut body = json!({
        "templateID": req.image,
        "timeout": timeout,
        "autoPause": false,
        "secure": true,
    });
    if !req.env.is_empty() {
        body["envVars"] = pairs(&req.env);
    }
    if !req.metadata.is_empty() {
        body["metadata"] = pairs(&req.metadata);
    }
    let reply = Call::post(format!("{}/sandboxes", base())).json(&body).send().await?;
    if reply.status == 404 {
        // On create, 404 means the template does not exist: the caller's input.
        let mut e = reply.error();
        e.kind = ErrorKind::BadInput;
        return Err(e);
    }
    reply.ok()?.json()
}

pub async fn detail(id: &str) -> Result<Detail, Error> {
    Call::get(format!("{}/sandboxes/{}", base(), encode(id))).send().await?.ok()?.json()
}

/// `DELETE /sandboxes/{id}`: 204 killed; 404 reported as not-found (the host treats it as done).
pub async fn kill(id: &str) -> Result<(), Error> {
    Call::delete(format!("{}/sandboxes/{}", base(), encode(id))).send().await?.ok().map(drop)
}

/// `POST /sandboxes/{id}/pause`: 204 paused. 409 is "already paused" or "cannot pause in
/// this state": the detail tells which, so an already-paused sandbox is a success.
pub async fn pause(id: &str) -> Result<(), Error> {
    let reply = Call::post(format!("{}/sandboxes/{}/pause", base(), encode(id))).send().await?;
    if reply.status == 409 {
        let err = reply.error();
        return match detail(id).await {
            Ok(d) if d.state.as_deref() == Some("paused") => Ok(()),
            _ => Err(err),
        };
    }
    reply.ok().map(drop)
}

/// Running sandboxes, following `X-Next-Token` pages of `GET /v2/sandboxes`.
pub async fn list_running() -> Result<Vec<Sandbox>, Error> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    // Bounded: 100 pages of 100 is far beyond any team's concurrency.
    for _ in 0..100 {
        let mut url = format!("{}/v2/sandboxes?state=running&limit=100", base());
        if let Some(token) = &next {
            url.push_str(&format!("&nextToken={}", encode(token)));
        }
        let reply = Call::get(url).send().await?.ok()?;
        let rows: Vec<Listed> = reply.json()?;
        out.extend(
            rows.into_iter().map(|r| {
                provider_kit::running(r.sandbox_id, r.alias.filter(|a| !a.is_empty()).unwrap_or(r.template_id), Some(r.started_at))
            }),
        );
        match reply.header("x-next-token").filter(|t| !t.is_empty()) {
            Some(t) => next = Some(t.to_string()),
            None => return Ok(out),
        }
    }
    Ok(out)
}

fn pairs(list: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(list.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
}
