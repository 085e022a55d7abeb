//! E2B control plane (`{api-base}`, header `X-API-Key` set by the host): create, look
//! up, list and kill. Shapes: e2b-dev/E2B `spec/openapi.yml` — `NewSandbox`, `Sandbox`,
//! `SandboxDetail`, `ListedSandbox`, `SandboxState`, errors `{code, message}`.
//! Pause, resume, lifetimes and forks are in [`crate::lifecycle`].

use provider_kit::errors::bad_input;
use provider_kit::upstream::{encode, Call};
use provider_kit::{config_or, CreateRequest, Error, ErrorKind, Sandbox, SandboxState};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

pub const DEFAULT_API_BASE: &str = "https://api.e2b.app";
pub const DEFAULT_DOMAIN: &str = "e2b.app";

pub fn base() -> String {
    config_or("api-base", DEFAULT_API_BASE).trim_end_matches('/').to_string()
}

/// `{base}/sandboxes/{id}{rest}`.
pub fn sandbox_url(id: &str, rest: &str) -> String {
    format!("{}/sandboxes/{}{rest}", base(), encode(id))
}

/// The spec's `Sandbox` (create, connect and fork answers): the parts the plugin uses.
#[derive(Debug, Deserialize)]
pub struct Created {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
}

/// `SandboxDetail` (`GET /sandboxes/{id}`) and `ListedSandbox` (`GET /v2/sandboxes`):
/// the same required fields; only the detail has the envd token and domain.
#[derive(Debug, Deserialize)]
pub struct Detail {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "templateID")]
    template_id: String,
    alias: Option<String>,
    #[serde(rename = "startedAt")]
    started_at: String,
    #[serde(rename = "endAt")]
    end_at: Option<String>,
    state: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "envdAccessToken")]
    pub envd_access_token: Option<String>,
    domain: Option<String>,
    #[serde(rename = "envdVersion")]
    pub envd_version: Option<String>,
}

impl Detail {
    /// The sandbox domain (nullable upstream: then the configured one).
    pub fn domain(&self) -> String {
        self.domain.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| config_or("domain", DEFAULT_DOMAIN))
    }

    pub fn is_paused(&self) -> bool {
        self.state.as_deref() == Some("paused")
    }

    /// The contract's row. `SandboxState` is `running` | `paused`; the template's alias
    /// is the image when it has one (it is what the caller created it from).
    pub fn into_sandbox(self) -> Sandbox {
        let state = if self.is_paused() { SandboxState::Paused } else { SandboxState::Running };
        Sandbox {
            image: self.alias.filter(|a| !a.is_empty()).unwrap_or(self.template_id),
            sandbox_id: self.sandbox_id,
            started_at: Some(self.started_at),
            state,
            ends_at: self.end_at.filter(|e| !e.is_empty()),
            metadata: self.metadata.unwrap_or_default().into_iter().collect(),
        }
    }
}

/// `POST /v2/sandboxes` → 201 `Sandbox` (SDK 2.63's route; `POST /sandboxes` is
/// deprecated). `timeout` is the sandbox's time to live, absolute; network off is
/// `allow_internet_access: false` ("the same as denyOut 0.0.0.0/0").
pub async fn create(req: &CreateRequest) -> Result<Created, Error> {
    let timeout = i32::try_from(req.idle_timeout_secs)
        .map_err(|_| bad_input(format!("idle_timeout_secs {} is too large for E2B (an int32)", req.idle_timeout_secs)))?;
    let mut body = json!({
        "templateID": req.image,
        "timeout": timeout,
        "autoPause": false,
    });
    if !req.env.is_empty() {
        body["envVars"] = pairs(&req.env);
    }
    let mut metadata = req.metadata.clone();
    if let Some(name) = req.name.as_ref().filter(|_| !metadata.iter().any(|(k, _)| k == "name")) {
        // E2B has no name field: a label lives in metadata, where list and get return it.
        metadata.push(("name".into(), name.clone()));
    }
    if !metadata.is_empty() {
        body["metadata"] = pairs(&metadata);
    }
    if !req.network {
        body["allow_internet_access"] = json!(false);
    }
    let reply = Call::post(format!("{}/v2/sandboxes", base())).json(&body).send().await?;
    if reply.status == 404 {
        // On create, 404 means the template does not exist: the caller's input.
        let mut e = reply.error();
        e.kind = ErrorKind::BadInput;
        return Err(e);
    }
    reply.ok()?.json()
}

/// `GET /sandboxes/{id}` → `SandboxDetail`, paused sandboxes included; 404 → not-found.
pub async fn detail(id: &str) -> Result<Detail, Error> {
    Call::get(sandbox_url(id, "")).send().await?.ok()?.json()
}

/// `DELETE /sandboxes/{id}`: 204 killed; 404 reported as not-found (the host treats it as done).
pub async fn kill(id: &str) -> Result<(), Error> {
    Call::delete(sandbox_url(id, "")).send().await?.ok().map(drop)
}

/// Running and paused sandboxes (a paused one still holds its place: it can be resumed
/// at any time), following `X-Next-Token` pages of `GET /v2/sandboxes`. `state` is a
/// form array with `explode: false`, so one comma-separated value.
pub async fn list() -> Result<Vec<Sandbox>, Error> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    // Bounded: 100 pages of 100 is far beyond any team's concurrency.
    for _ in 0..100 {
        let mut url = format!("{}/v2/sandboxes?state=running,paused&limit=100", base());
        if let Some(token) = &next {
            url.push_str(&format!("&nextToken={}", encode(token)));
        }
        let reply = Call::get(url).send().await?.ok()?;
        let rows: Vec<Detail> = reply.json()?;
        out.extend(rows.into_iter().map(Detail::into_sandbox));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_becomes_the_contract_row_with_state_end_and_metadata() {
        let d: Detail = serde_json::from_str(
            r#"{"templateID":"rki5","alias":"base","sandboxID":"i1","clientID":"c","startedAt":"2026-12-01T19:38:27Z",
                "endAt":"2026-12-01T19:43:27Z","cpuCount":2,"memoryMB":512,"diskSizeMB":512,"state":"paused",
                "envdVersion":"0.2.0","metadata":{"team":"x"}}"#,
        )
        .unwrap();
        let s = d.into_sandbox();
        assert_eq!((s.sandbox_id.as_str(), s.image.as_str()), ("i1", "base"));
        assert!(matches!(s.state, SandboxState::Paused));
        assert_eq!(s.ends_at.as_deref(), Some("2026-12-01T19:43:27Z"));
        assert_eq!(s.metadata, vec![("team".to_string(), "x".to_string())]);
    }

    #[test]
    fn without_an_alias_the_template_id_is_the_image_and_null_metadata_is_empty() {
        let d: Detail = serde_json::from_str(
            r#"{"templateID":"rki5","sandboxID":"i1","startedAt":"2026-12-01T19:38:27Z","endAt":"2026-12-01T19:43:27Z",
                "state":"running","metadata":null}"#,
        )
        .unwrap();
        let s = d.into_sandbox();
        assert_eq!(s.image, "rki5");
        assert!(matches!(s.state, SandboxState::Running) && s.metadata.is_empty());
    }
}
