//! Daytona's control plane (`{api-base}`, `Authorization: Bearer` set by the host).
//!
//! Shapes, from `daytona/clients` `openapi-specs/api.json` (checked at d94a1281) and the
//! last public server, daytonaio/daytona v0.190.0 `apps/api/src/sandbox`:
//! - `CreateSandbox` — `POST /sandbox` body (`snapshot`, `env`, `labels`, `autoStopInterval`
//!   in minutes, `cpu` cores and `memory` GiB as integers, `networkBlockAll`);
//! - `Sandbox` — the answer of `GET/DELETE /sandbox/{id}` and of every lifecycle POST (`id`,
//!   `snapshot`, `state`, `labels`, `createdAt`, `autoDestroyAt`, `sandboxClass`,
//!   `toolboxProxyUrl`, `errorReason`, `desiredState`, …);
//! - `POST /sandbox/{id}/snapshot` (`CreateSandboxSnapshot {name}` → Sandbox),
//!   `GET /sandbox/{id}/toolbox-proxy-url` (`{url}`),
//!   `GET /sandbox/{id}/ports/{port}/preview-url` (`PortPreviewUrl {sandboxId, url, token}`);
//! - `ListSandboxesResponse` — `GET /sandbox` → `{items, nextCursor}`; older servers answer
//!   a bare array, the deprecated paginated form `{items, total, page, totalPages}`.
//!
//! Lifecycle calls (start, stop, pause, intervals, labels) are in [`crate::lifecycle`],
//! forks in [`crate::fork`].
//!
//! Errors are NestJS's `{statusCode, message, error}` (message may be a list for
//! validation failures); the kit's `error_detail` reads `message`.

use crate::errors::Checked;
use crate::units::{memory_gib, rfc3339};
use provider_kit::errors::{bad_input, unavailable};
use provider_kit::upstream::{encode, Call, Reply};
use provider_kit::wstd::time::Duration;
use provider_kit::{config_or, log, CreateRequest, Error, Sandbox, SandboxState};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const DEFAULT_API_BASE: &str = "https://app.daytona.io/api";
/// Largest number of list pages followed (100 × 100 sandboxes is far past any quota).
const MAX_PAGES: usize = 100;

pub fn base() -> String {
    config_or("api-base", DEFAULT_API_BASE).trim_end_matches('/').to_string()
}

pub fn sandbox_url(id: &str) -> String {
    format!("{}/sandbox/{}", base(), encode(id))
}

/// The label `pause` sets on a sandbox it stops (see [`crate::lifecycle`]): how `list`
/// tells a sandbox paused through the contract from one Daytona auto-stopped when idle.
pub const PAUSED_LABEL: &str = "iii.dev/paused";

/// The parts of Daytona's `Sandbox` (and `SandboxListItem`) the plugin uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDto {
    pub id: String,
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Pre-snapshot servers (the "workspace" era) named it `image`.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub toolbox_proxy_url: Option<String>,
    #[serde(default)]
    pub error_reason: Option<String>,
    /// Where the sandbox is headed: `destroyed` once a delete is under way.
    #[serde(default)]
    pub desired_state: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// When the TTL destroys it ("only set when a TTL is configured").
    #[serde(default)]
    pub auto_destroy_at: Option<String>,
    /// `linux-vm`, `container`, `android`, `windows`; only VM classes can pause or fork.
    #[serde(default)]
    pub sandbox_class: Option<String>,
}

impl SandboxDto {
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("unknown")
    }

    pub fn image(&self) -> String {
        self.snapshot.clone().or_else(|| self.image.clone()).unwrap_or_default()
    }

    /// Paused through the contract: stopped by our `pause` (it carries [`PAUSED_LABEL`]),
    /// or paused by Daytona itself (memory kept, never an idle auto-stop).
    pub fn paused_on_purpose(&self) -> bool {
        matches!(self.state(), "paused" | "pausing") || self.labels.as_ref().is_some_and(|l| l.contains_key(PAUSED_LABEL))
    }

    /// The labels as the caller's metadata (our own marker left out).
    pub fn metadata(&self) -> Vec<(String, String)> {
        let labels = self.labels.iter().flatten();
        labels.filter(|(k, _)| k.as_str() != PAUSED_LABEL).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn into_sandbox(self, state: SandboxState) -> Sandbox {
        Sandbox {
            started_at: self.created_at.as_deref().and_then(rfc3339),
            // Only a TTL gives a time Daytona will end it; `autoStopInterval` counts from
            // the last activity, which moves with every call, so it gives no `ends_at`.
            ends_at: self.auto_destroy_at.as_deref().and_then(rfc3339),
            metadata: self.metadata(),
            image: self.image(),
            state,
            sandbox_id: self.id,
        }
    }
}

/// Where a sandbox stands, for the caller-facing decisions.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Phase {
    /// `started`: the toolbox answers.
    Running,
    /// On its way to `started` (creating, starting, resuming, restoring, pulling/building a snapshot…).
    Coming,
    /// Snapshot, fork or resize in progress: still running, back to `started` afterwards.
    Busy,
    /// On its way to a halt (stopping, pausing, archiving).
    Halting,
    /// Not running but resumable with `POST /start` (stopped, paused, archived).
    Halted,
    /// Failed (`error`, `build_failed`).
    Failed,
    /// Gone or going (`destroyed`, `destroying`).
    Gone,
}

/// Maps Daytona's `SandboxState` (api.json `SandboxState`, 22 values). Unknown states
/// count as coming up: the safe reading for both the concurrency count and a fresh create.
pub fn phase(state: &str) -> Phase {
    match state {
        "started" => Phase::Running,
        "snapshotting" | "forking" | "resizing" => Phase::Busy,
        "stopping" | "pausing" | "archiving" => Phase::Halting,
        "stopped" | "paused" | "archived" => Phase::Halted,
        "error" | "build_failed" => Phase::Failed,
        "destroyed" | "destroying" => Phase::Gone,
        _ => Phase::Coming,
    }
}

pub async fn create(body: &Value) -> Result<SandboxDto, Error> {
    Call::post(format!("{}/sandbox", base())).json(body).send().await?.checked()?.json()
}

pub async fn get(id: &str) -> Result<SandboxDto, Error> {
    Call::get(sandbox_url(id)).send().await?.checked()?.json()
}

/// Pauses between deletes refused with 409 (about 3.5 s in all).
const DELETE_RETRY_MS: [u64; 3] = [500, 1000, 2000];

/// `DELETE /sandbox/{id}`: any 2xx is done (older servers answer an empty 200, newer the
/// Sandbox in `destroying`); 404 comes back as not-found (gone: the host counts the stop).
/// 409 is "state change in progress": Daytona refuses to destroy during any transition
/// (creating, starting, snapshotting, …) and destroys nothing, so it is not success unless
/// a delete is already under way (`desiredState: destroyed`, or the sandbox is gone). Else
/// the delete is retried after the transition; still refused, it is S502 and the slot stays.
pub async fn delete(id: &str) -> Result<(), Error> {
    let mut pauses = DELETE_RETRY_MS.iter();
    loop {
        let reply = Call::delete(sandbox_url(id)).send().await?;
        if reply.status != 409 {
            return reply.checked().map(drop);
        }
        let refusal = reply.error();
        let dto = get(id).await?;
        if dto.desired_state.as_deref() == Some("destroyed") || phase(dto.state()) == Phase::Gone {
            return Ok(());
        }
        let Some(pause) = pauses.next() else {
            return Err(unavailable(format!(
                "DELETE /sandbox/{id} kept answering 409 ({}) while the sandbox is {}: it was not deleted; retry the stop",
                refusal.message.trim(),
                dto.state()
            )));
        };
        provider_kit::wstd::task::sleep(Duration::from_millis(*pause)).await;
    }
}

/// Waits until a sandbox leaves the transitional states, polling `GET /sandbox/{id}` with
/// backoff (500 ms doubling to 5 s: a 60 s wait costs about 15 polls, well inside the
/// host's per-call request budget). After `max_secs` it returns the state it saw last.
pub async fn settle(mut dto: SandboxDto, keep_waiting: fn(&Phase) -> bool, max_secs: u64) -> Result<SandboxDto, Error> {
    let (mut step_ms, mut waited_ms) = (500, 0);
    while keep_waiting(&phase(dto.state())) && waited_ms < max_secs * 1000 {
        let pause = step_ms.min(max_secs * 1000 - waited_ms);
        provider_kit::wstd::task::sleep(Duration::from_millis(pause)).await;
        waited_ms += pause;
        step_ms = (step_ms * 2).min(5_000);
        dto = get(&dto.id).await?;
    }
    Ok(dto)
}

/// `POST /sandbox/{id}/snapshot {name}` → 200 Sandbox (state `snapshotting`).
pub async fn snapshot(id: &str, name: &str) -> Result<SandboxDto, Error> {
    let reply = Call::post(format!("{}/snapshot", sandbox_url(id))).json(&json!({ "name": name })).send().await?;
    if route_missing(&reply) {
        // Express's own 404 for a route this server does not have (pre-snapshot versions).
        return Err(provider_kit::errors::error(
            provider_kit::ErrorKind::Unsupported,
            format!("this Daytona server has no sandbox snapshot endpoint ({})", reply.error().message),
        ));
    }
    reply.checked()?.json()
}

/// Express's own 404 for a route this server does not have ("Cannot POST /…"), as
/// opposed to a 404 for a sandbox it does not know.
pub fn route_missing(reply: &Reply) -> bool {
    reply.status == 404 && reply.error().message.contains("Cannot ")
}

#[derive(Debug, Deserialize)]
struct UrlDto {
    url: String,
}

/// `GET /sandbox/{id}/toolbox-proxy-url` → `{url}`; `None` when this server predates it.
pub async fn toolbox_proxy_url(id: &str) -> Result<Option<String>, Error> {
    let reply = Call::get(format!("{}/toolbox-proxy-url", sandbox_url(id))).send().await?;
    if reply.status == 404 {
        // The sandbox was just found, so a 404 here is the route, not the sandbox.
        return Ok(None);
    }
    let dto: UrlDto = reply.checked()?.json()?;
    Ok(Some(dto.url).filter(|u| !u.is_empty()))
}

#[derive(Debug, Deserialize)]
struct PreviewDto {
    url: String,
    /// Required in the spec; a private sandbox's preview refuses requests without it.
    #[serde(default)]
    token: Option<String>,
}

/// `GET /sandbox/{id}/ports/{port}/preview-url` → the URL and the headers a client must
/// send: sandboxes are private unless created `public`, and "the token must be sent via
/// the `x-daytona-preview-token` request header" (SDKs: `sdk-go/pkg/daytona/sandbox.go`,
/// `sdk-python/.../_sync/sandbox.py`, `get_preview_link`).
pub async fn preview(id: &str, port: u16) -> Result<(String, Vec<(String, String)>), Error> {
    let dto: PreviewDto = Call::get(format!("{}/ports/{port}/preview-url", sandbox_url(id))).send().await?.checked()?.json()?;
    if dto.url.is_empty() {
        return Err(unavailable(format!("Daytona answered an empty preview URL for port {port} of sandbox {id}")));
    }
    let headers = dto.token.filter(|t| !t.is_empty()).map(|t| ("x-daytona-preview-token".to_string(), t)).into_iter().collect();
    Ok((dto.url, headers))
}

/// Every sandbox the key can see, in all three historic list shapes, following pages.
pub async fn list_all() -> Result<Vec<SandboxDto>, Error> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let url = match &next {
            None => format!("{}/sandbox", base()),
            Some(q) => format!("{}/sandbox?{q}", base()),
        };
        let reply = Call::get(url).send().await?.checked()?;
        let (items, following) = parse_page(&reply.what, reply.json()?)?;
        out.extend(items);
        match following {
            Some(q) => next = Some(q),
            None => return Ok(out),
        }
    }
    log::log(log::Level::Warn, &format!("GET /sandbox: stopped after {MAX_PAGES} pages; the count may be short"));
    Ok(out)
}

/// One page: its sandboxes and the query of the next page, if any.
fn parse_page(what: &str, body: Value) -> Result<(Vec<SandboxDto>, Option<String>), Error> {
    let bad = |why: &str| unavailable(format!("{what} answered a list Daytona never sends ({why})"));
    let items = |v: Value| -> Result<Vec<SandboxDto>, Error> {
        serde_json::from_value(v).map_err(|e| unavailable(format!("{what} answered a sandbox row that is not a Daytona Sandbox ({e})")))
    };
    match body {
        // Oldest servers: a bare array, no paging.
        Value::Array(_) => Ok((items(body)?, None)),
        Value::Object(mut obj) => {
            let rows = items(obj.remove("items").ok_or_else(|| bad("no `items`"))?)?;
            // Current: cursor paging.
            if let Some(cursor) = obj.get("nextCursor") {
                return match cursor {
                    Value::String(c) if !c.is_empty() => Ok((rows, Some(format!("cursor={}", encode(c))))),
                    Value::Null | Value::String(_) => Ok((rows, None)),
                    _ => Err(bad("`nextCursor` is not a string")),
                };
            }
            // Deprecated page/totalPages form.
            let page = obj.get("page").and_then(Value::as_u64);
            let pages = obj.get("totalPages").and_then(Value::as_u64);
            match (page, pages) {
                (Some(p), Some(t)) if p < t && !rows.is_empty() => Ok((rows, Some(format!("page={}", p + 1)))),
                _ => Ok((rows, None)),
            }
        }
        _ => Err(bad("neither an array nor an object")),
    }
}

/// Builds the `POST /sandbox` body (`CreateSandbox`) for `req` with `autoStopInterval`
/// `auto_stop_minutes`.
pub fn create_body(req: &CreateRequest, auto_stop_minutes: u64) -> Result<Value, Error> {
    // Postgres `integer` column upstream.
    if auto_stop_minutes > i32::MAX as u64 {
        return Err(bad_input(format!("idle_timeout_secs is too large for Daytona (autoStopInterval {auto_stop_minutes} min)")));
    }
    // Deleted when Daytona stops it for idleness: an idle sandbox ends, as on E2B and
    // Morph, rather than holding disk quota (lifecycle.rs turns this off while paused).
    let mut body = json!({ "autoStopInterval": auto_stop_minutes, "autoDeleteInterval": 0 });
    // No snapshot → Daytona's default snapshot for the organisation.
    if !req.image.is_empty() {
        body["snapshot"] = json!(req.image);
    }
    if !req.env.is_empty() {
        body["env"] = pairs(&req.env);
    }
    if !req.metadata.is_empty() {
        body["labels"] = pairs(&req.metadata);
    }
    if let Some(cpus) = req.cpus {
        body["cpu"] = json!(cpus);
    }
    if let Some(mb) = req.memory_mb {
        body["memory"] = json!(memory_gib(mb));
    }
    if !req.network {
        body["networkBlockAll"] = json!(true);
    }
    Ok(body)
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Object(list.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(image: &str) -> CreateRequest {
        CreateRequest {
            image: image.into(),
            idle_timeout_secs: 60,
            env: vec![],
            metadata: vec![],
            name: None,
            cpus: None,
            memory_mb: None,
            network: true,
        }
    }

    #[test]
    fn create_body_omits_what_is_empty() {
        assert_eq!(create_body(&request(""), 1).unwrap(), json!({"autoStopInterval": 1, "autoDeleteInterval": 0}));
        let mut req = request("daytona-small");
        req.env = vec![("A".into(), "1".into())];
        req.metadata = vec![("team".into(), "x".into())];
        let b = create_body(&req, 5).unwrap();
        assert_eq!(
            b,
            json!({"autoStopInterval": 5, "autoDeleteInterval": 0, "snapshot": "daytona-small", "env": {"A": "1"}, "labels": {"team": "x"}})
        );
        assert!(create_body(&request(""), u64::MAX / 60).is_err());
    }

    #[test]
    fn sizing_and_network_use_the_spec_fields() {
        let mut req = request("");
        (req.cpus, req.memory_mb, req.network) = (Some(2), Some(1536), false);
        let b = create_body(&req, 1).unwrap();
        assert_eq!(b, json!({"autoStopInterval": 1, "autoDeleteInterval": 0, "cpu": 2, "memory": 2, "networkBlockAll": true}));
    }

    #[test]
    fn all_three_list_shapes_parse_and_say_where_the_next_page_is() {
        let row = json!({"id":"a","snapshot":"s","state":"started","createdAt":"2024-10-01T12:00:00.000Z"});
        let (rows, next) = parse_page("GET /sandbox", json!([row])).unwrap();
        assert_eq!((rows.len(), next), (1, None));
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"nextCursor":"c/1"})).unwrap();
        assert_eq!(next.as_deref(), Some("cursor=c%2F1"));
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"nextCursor":null})).unwrap();
        assert_eq!(next, None);
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"total":3,"page":1,"totalPages":3})).unwrap();
        assert_eq!(next.as_deref(), Some("page=2"));
        let (_, next) = parse_page("GET /sandbox", json!({"items":[row],"total":3,"page":3,"totalPages":3})).unwrap();
        assert_eq!(next, None);
        assert!(parse_page("GET /sandbox", json!({"sandboxes":[]})).is_err());
        assert!(parse_page("GET /sandbox", json!({"items":[{"state":"started"}]})).is_err());
        assert!(parse_page("GET /sandbox", json!("nope")).is_err());
    }

    #[test]
    fn states_map_to_phases() {
        assert_eq!(phase("started"), Phase::Running);
        assert_eq!(phase("pulling_snapshot"), Phase::Coming);
        assert_eq!(phase("resuming"), Phase::Coming);
        assert_eq!(phase("something_new"), Phase::Coming);
        assert_eq!(phase("stopping"), Phase::Halting);
        assert_eq!(phase("pausing"), Phase::Halting);
        assert_eq!(phase("stopped"), Phase::Halted);
        assert_eq!(phase("paused"), Phase::Halted);
        assert_eq!(phase("forking"), Phase::Busy);
        assert_eq!(phase("build_failed"), Phase::Failed);
        assert_eq!(phase("destroying"), Phase::Gone);
    }

    #[test]
    fn a_sandbox_row_tolerates_nulls_and_the_old_image_field() {
        let row = json!({"id": "a", "snapshot": null, "image": "ubuntu", "state": "started",
                         "createdAt": "2024-10-01T12:00:00.000Z", "toolboxProxyUrl": null});
        let dto: SandboxDto = serde_json::from_value(row).unwrap();
        let s = dto.into_sandbox(SandboxState::Running);
        assert_eq!((s.sandbox_id.as_str(), s.image.as_str(), s.started_at.as_deref()), ("a", "ubuntu", Some("2024-10-01T12:00:00.000Z")));
        assert_eq!((s.ends_at, s.metadata), (None, vec![]));
        assert!(serde_json::from_str::<SandboxDto>(r#"{"state":"started"}"#).is_err());
    }

    #[test]
    fn labels_become_metadata_without_the_pause_marker_and_the_ttl_is_the_end() {
        let dto: SandboxDto = serde_json::from_value(json!({
            "id": "a", "state": "stopped", "labels": {"team": "x", PAUSED_LABEL: "true"},
            "autoDestroyAt": "2026-07-15T12:00:00.000Z", "createdAt": "2026-07-15T11:00:00.000Z"
        }))
        .unwrap();
        assert!(dto.paused_on_purpose());
        let s = dto.into_sandbox(SandboxState::Paused);
        assert_eq!(s.metadata, vec![("team".to_string(), "x".to_string())]);
        assert_eq!(s.ends_at.as_deref(), Some("2026-07-15T12:00:00.000Z"));
        let idle: SandboxDto = serde_json::from_value(json!({"id": "b", "state": "stopped", "labels": {}})).unwrap();
        assert!(!idle.paused_on_purpose(), "an auto-stopped sandbox is not paused on purpose");
        let vm: SandboxDto = serde_json::from_value(json!({"id": "c", "state": "paused"})).unwrap();
        assert!(vm.paused_on_purpose());
    }
}
