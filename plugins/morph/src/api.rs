//! Morph Cloud's instance API (`{api-base}`, default `https://cloud.morph.so/api`;
//! `Authorization: Bearer <key>` is set by the host).
//!
//! Shapes: the server's own OpenAPI document (FastAPI "MorphVM API", copied in
//! BloopAI/morph-rs-sdk `morph-3.1.0.json`: `InstanceModel`, `StartInstanceRequest`,
//! `InstanceExecRequest`/`InstanceExecResponse`, `SnapshotModel`, `BranchResponse`,
//! `ExposeHttpServiceRequest`) and morph-labs/morph-python-sdk `morphcloud/api.py`
//! (`InstanceAPI.start/stop/list`, `Instance.exec/branch/expose_http_service`,
//! `Instance.pause/resume/set_ttl/_exec_streaming`, `wait_until_ready`), checked against
//! morph-labs/morph-typescript-sdk `src/api.ts` (`pause`, `resume`, `setTTL`,
//! `_execStreaming`). Errors are FastAPI `{detail}` (a string, or a validation list).
//!
//! New instances (create, branch), resumed ones and snapshots come back before they are
//! usable; like the SDK (`await_until_ready` after `resume` in its TTL tests), the plugin
//! polls until `ready` (or `paused`) so the caller's next call finds the state it asked for.

use crate::time::rfc3339_from_created;
use provider_kit::errors::{bad_input, unavailable};
use provider_kit::upstream::{encode, Call, Streamed};
use provider_kit::wstd::http::Method;
use provider_kit::wstd::time::{Duration, Instant};
use provider_kit::{config, config_or, log, CreateRequest, Error, ErrorKind, Sandbox, SandboxState};
use serde::Deserialize;
use serde_json::json;

pub const DEFAULT_API_BASE: &str = "https://cloud.morph.so/api";
/// How long create/branch/snapshot/resume/pause wait (config `ready-timeout-secs`);
/// below the host's default 120 s call budget so the plugin reports the failure itself.
const DEFAULT_READY_TIMEOUT_SECS: u64 = 90;
/// Extra time (ms) the exec HTTP call may take beyond the command's own deadline.
const EXEC_GRACE_MS: u64 = 15_000;

fn base() -> String {
    config_or("api-base", DEFAULT_API_BASE).trim_end_matches('/').to_string()
}

fn instance_url(id: &str) -> String {
    format!("{}/instance/{}", base(), encode(id))
}

/// `InstanceModel` (the fields the plugin reads; everything optional that the plugin
/// can do without, so an odd upstream answer degrades instead of failing).
#[derive(Debug, Deserialize)]
pub struct Instance {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    /// Unix epoch seconds (an integer in the spec).
    #[serde(default)]
    pub created: Option<f64>,
    #[serde(default)]
    pub refs: Option<Refs>,
    #[serde(default)]
    pub networking: Option<Networking>,
    /// `Dict[str, str]` per the spec; read as JSON values so an odd one degrades.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub ttl: Option<Ttl>,
}

/// `InstanceTTL`: `ttl_expire_at` is the Unix time the `ttl_action` happens. The server
/// moves it on `POST /instance/{id}/ttl` ("current server time plus the provided TTL
/// seconds", SDK `set_ttl`) and on resume (SDK `test_ttl.py`: the expiry moves later).
#[derive(Debug, Deserialize)]
pub struct Ttl {
    /// The window `ttl_expire_at` was set from (`InstanceTTL.ttl_seconds`).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub ttl_expire_at: Option<f64>,
    #[serde(default)]
    pub ttl_action: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Refs {
    #[serde(default)]
    pub snapshot_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Networking {
    #[serde(default)]
    pub http_services: Option<Vec<HttpService>>,
}

#[derive(Debug, Deserialize)]
pub struct HttpService {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<u64>,
    #[serde(default)]
    pub url: Option<String>,
}

impl Instance {
    pub fn snapshot_id(&self) -> Option<String> {
        self.refs.as_ref()?.snapshot_id.clone().filter(|s| !s.is_empty())
    }

    pub fn started_at(&self) -> Option<String> {
        self.created.and_then(rfc3339_from_created)
    }

    /// The URL of the service named `name`, else of any service on `port`.
    pub fn service_url(&self, name: &str, port: u16) -> Option<String> {
        let services = self.networking.as_ref()?.http_services.as_deref()?;
        let url = |s: &HttpService| s.url.clone().filter(|u| !u.is_empty());
        services
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .and_then(url)
            .or_else(|| services.iter().filter(|s| s.port == Some(u64::from(port))).find_map(url))
    }

    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("pending")
    }

    /// Listed as a sandbox. Morph keeps no stopped instances (DELETE removes them, and a
    /// TTL with `ttl_action: stop` does the same). `paused` ones are listed as paused —
    /// they keep their slot, since resume brings them back — and `error` ones, which
    /// never run again, are left out. `pending` and `saving` are running VMs.
    pub fn is_listed(&self) -> bool {
        self.status() != "error"
    }

    /// When Morph will stop (delete) it: `ttl_expire_at`, unless the TTL's action is
    /// `pause` (then nothing ends it). The plugin always starts with `stop`.
    pub fn ends_at(&self) -> Option<String> {
        let ttl = self.ttl.as_ref()?;
        if ttl.ttl_action.as_deref().is_some_and(|a| a != "stop") {
            return None;
        }
        ttl.ttl_expire_at.and_then(rfc3339_from_created)
    }

    /// The contract's view: `paused` is paused, every other status a running VM.
    pub fn to_sandbox(&self) -> Sandbox {
        let metadata =
            self.metadata.iter().flatten().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
        Sandbox {
            sandbox_id: self.id.clone(),
            image: self.snapshot_id().unwrap_or_default(),
            started_at: self.started_at(),
            state: if self.status() == "paused" { SandboxState::Paused } else { SandboxState::Running },
            ends_at: self.ends_at(),
            metadata,
        }
    }
}

/// `GET /instance` → `{"object": "list", "data": [Instance…]}`.
#[derive(Debug, Deserialize)]
struct InstanceList {
    data: Vec<Instance>,
}

/// `InstanceExecResponse`.
#[derive(Debug, Deserialize)]
pub struct ExecOutput {
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
}

/// `SnapshotModel` (id and status).
#[derive(Debug, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
}

/// `BranchResponse`.
#[derive(Debug, Deserialize)]
struct Branched {
    #[serde(default)]
    snapshot: Option<Snapshot>,
    instances: Vec<Instance>,
}

/// `POST /instance?snapshot_id=` with `StartInstanceRequest`, then waits for `ready`.
/// An instance that never gets there is deleted (best effort) so it does not leak
/// upstream after the host has released the caller's slot.
pub async fn start(req: &CreateRequest) -> Result<Instance, Error> {
    let metadata: serde_json::Map<String, serde_json::Value> = req.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let body = json!({
        "metadata": metadata,
        "ttl_seconds": req.idle_timeout_secs,
        // `stop` deletes the instance at the deadline; `pause` would keep it billed.
        "ttl_action": "stop",
    });
    let url = format!("{}/instance?snapshot_id={}", base(), encode(&req.image));
    let reply = Call::post(url).json(&body).send().await?;
    if reply.status == 404 {
        // On create, 404 is the snapshot: the caller's input, not a missing sandbox.
        return Err(as_bad_input(reply.error(), &req.image));
    }
    let instance: Instance = reply.ok()?.json()?;
    let id = instance.id.clone();
    match wait_for(instance, "ready").await {
        Ok(i) => Ok(i),
        Err(e) => Err(delete_all(vec![id], e).await),
    }
}

fn as_bad_input(mut e: Error, image: &str) -> Error {
    e.kind = ErrorKind::BadInput;
    e.message = format!("{} (no snapshot {image:?} is visible to this API key)", e.message);
    e
}

pub async fn get(id: &str) -> Result<Instance, Error> {
    Call::get(instance_url(id)).send().await?.ok()?.json()
}

/// `DELETE /instance/{id}` → 204 (stops and deletes). 404/409 come back as errors
/// carrying their status; the host counts both as an already-stopped sandbox.
pub async fn delete(id: &str) -> Result<(), Error> {
    Call::delete(instance_url(id)).send().await?.ok().map(drop)
}

pub async fn list() -> Result<Vec<Instance>, Error> {
    let list: InstanceList = Call::get(format!("{}/instance", base())).send().await?.ok()?.json()?;
    Ok(list.data)
}

/// `POST /instance/{id}/exec` with one shell script (see `shell`); the HTTP wait covers
/// the script's own deadline plus a grace period. The whole answer comes at the end.
pub async fn exec(id: &str, script: &str, deadline_ms: u64) -> Result<ExecOutput, Error> {
    Call::post(format!("{}/exec", instance_url(id)))
        .json(&json!({ "command": [script] }))
        .timeout(exec_wait(deadline_ms))
        .send()
        .await?
        .ok()?
        .json()
}

/// `POST /instance/{id}/exec/sse` (same body, `Accept: text/event-stream`): the answer's
/// body is the command's output as it runs (see `sse`). `None` when the server has no
/// such route (404/405), so the caller falls back to [`exec`]; an instance that does not
/// exist is then the fallback's own 404.
pub async fn exec_stream(id: &str, script: &str, deadline_ms: u64) -> Result<Option<Streamed>, Error> {
    let stream = Call::post(format!("{}/exec/sse", instance_url(id)))
        .header("accept", "text/event-stream")
        .json(&json!({ "command": [script] }))
        .timeout(exec_wait(deadline_ms))
        .open()
        .await?;
    match stream.status {
        200..=299 => Ok(Some(stream)),
        404 | 405 => Ok(None),
        _ => Err(stream.into_reply().await?.error()),
    }
}

fn exec_wait(deadline_ms: u64) -> Duration {
    Duration::from_millis(deadline_ms.saturating_add(EXEC_GRACE_MS))
}

/// A refused exec (409) on a paused instance is the caller's to fix: resume it first.
/// Any other refusal is returned unchanged.
pub async fn explain_refusal(id: &str, refused: Error) -> Error {
    if refused.upstream_status != Some(409) {
        return refused;
    }
    match get(id).await {
        Ok(i) if i.status() == "paused" => bad_input(format!("instance {id} is paused: resume it before running commands in it")),
        _ => refused,
    }
}

/// `POST /instance/{id}/ttl` `UpdateTTLRequest{ttl_seconds, ttl_action}` → `InstanceModel`:
/// the instance now ends `secs` from the server's clock. `ttl_action` is sent as create
/// sends it (`stop`), as the TypeScript SDK's `setTTL` does by default; the Python SDK
/// leaves it out to keep the current action, which for our instances is the same.
pub async fn set_ttl(id: &str, secs: u64) -> Result<(), Error> {
    let body = json!({ "ttl_seconds": secs, "ttl_action": "stop" });
    Call::post(format!("{}/ttl", instance_url(id))).json(&body).send().await?.ok().map(drop)
}

/// `POST /instance/{id}/pause` → `InstanceModel`, then waits for `paused`. Morph does
/// not document the answer for an instance that is already paused (the SDK's CLI reads
/// 409 as "cannot be paused"); a refusal is success when the instance is paused.
pub async fn pause(id: &str) -> Result<(), Error> {
    let reply = Call::post(format!("{}/pause", instance_url(id))).send().await?;
    let instance: Instance = match reply.status {
        400 | 409 => {
            let refused = reply.error();
            let current = get(id).await?;
            if current.status() != "paused" {
                return Err(refused);
            }
            current
        }
        _ => reply.ok()?.json()?,
    };
    wait_for(instance, "paused").await.map(drop)
}

/// `POST /instance/{id}/resume` → `InstanceModel`, then waits for `ready`; a refusal
/// (409/400) is success when the instance is running already.
pub async fn resume(id: &str) -> Result<(), Error> {
    let reply = Call::post(format!("{}/resume", instance_url(id))).send().await?;
    let instance: Instance = match reply.status {
        400 | 409 => {
            let refused = reply.error();
            let current = get(id).await?;
            if current.status() == "paused" {
                return Err(refused);
            }
            current
        }
        _ => reply.ok()?.json()?,
    };
    wait_for(instance, "ready").await.map(drop)
}

/// `POST /instance/{id}/snapshot` → `SnapshotModel`, waited on until `ready`.
pub async fn snapshot(id: &str) -> Result<String, Error> {
    let snap: Snapshot = Call::post(format!("{}/snapshot", instance_url(id))).json(&json!({})).send().await?.ok()?.json()?;
    let deadline = Deadline::from_config();
    let mut snap = snap;
    loop {
        match snap.status.as_deref().unwrap_or("pending") {
            "ready" => return Ok(snap.id),
            s @ ("failed" | "deleting" | "deleted") => {
                return Err(unavailable(format!("snapshot {} of instance {id} ended in status {s:?} instead of ready", snap.id)))
            }
            _ => {}
        }
        deadline.pause(&format!("snapshot {} to be ready", snap.id)).await?;
        snap = Call::get(format!("{}/snapshot/{}", base(), encode(&snap.id))).send().await?.ok()?.json()?;
    }
}

/// `POST /instance/{id}/branch?count=N` → `{snapshot, instances}`; the new instances'
/// ids in upstream order, once all are `ready`. On failure the siblings are deleted
/// (best effort): the host never learns their ids, so nothing else would stop them.
pub async fn branch(id: &str, count: u32) -> Result<Vec<String>, Error> {
    if count == 0 {
        return Err(bad_input("branch needs `count` of at least 1"));
    }
    // Children get no TTL ("If not set, the instance will not expire"): they get the
    // parent's, so a branch cannot run and bill forever.
    let parent_ttl = get(id).await?.ttl.and_then(|t| t.ttl_seconds.map(|s| (s, t.ttl_action.unwrap_or_else(|| "stop".into()))));
    let reply = Call::post(format!("{}/branch?count={count}", instance_url(id))).json(&json!({})).send().await?.ok()?;
    let branched: Branched = reply.json()?;
    // The branch's snapshot has no use through the contract (it answers ids only) and
    // would be billed storage nothing deletes; children booted from it do not need it.
    if let Some(snapshot) = &branched.snapshot {
        let deleted = Call::new(Method::DELETE, format!("{}/snapshot/{}", base(), encode(&snapshot.id))).send().await;
        if !deleted.as_ref().is_ok_and(|r| r.is_success() || r.status == 404) {
            log::log(
                log::Level::Warn,
                &format!("branch of {id} left snapshot {} behind (deleting it failed); delete it in Morph", snapshot.id),
            );
        }
    }
    if branched.instances.len() != count as usize {
        let e = unavailable(format!("{} returned {} instances for count={count}", reply.what, branched.instances.len()));
        return Err(delete_all(branched.instances.iter().map(|i| i.id.clone()).collect(), e).await);
    }
    let ids: Vec<String> = branched.instances.iter().map(|i| i.id.clone()).collect();
    for instance in branched.instances {
        if let Err(e) = wait_for(instance, "ready").await {
            return Err(delete_all(ids, e).await);
        }
    }
    if let Some((secs, action)) = parent_ttl {
        for child in &ids {
            let body = json!({ "ttl_seconds": secs, "ttl_action": action });
            if let Err(e) = Call::post(format!("{}/ttl", instance_url(child))).json(&body).send().await.and_then(|r| r.ok().map(drop)) {
                return Err(delete_all(ids, e).await);
            }
        }
    }
    Ok(ids)
}

/// `POST /instance/{id}/http` `{name, port}` → Instance; the URL is read from its
/// `networking.http_services`. When the service already exists (a repeated call), the
/// upstream refuses; the existing service for the same port is then the answer.
pub async fn expose(id: &str, port: u16) -> Result<String, Error> {
    let name = service_name(port);
    let reply = Call::post(format!("{}/http", instance_url(id))).json(&json!({ "name": name, "port": port })).send().await?;
    let instance: Instance = match reply.status {
        400 | 409 => {
            let refused = reply.error();
            let current = get(id).await?;
            return current.service_url(&name, port).ok_or(refused);
        }
        _ => reply.ok()?.json()?,
    };
    if let Some(url) = instance.service_url(&name, port) {
        return Ok(url);
    }
    // The POST's answer may not list the service yet; the SDK reads it back with a GET.
    get(id)
        .await?
        .service_url(&name, port)
        .ok_or_else(|| unavailable(format!("instance {id} lists no HTTP service for port {port} after POST /instance/{{id}}/http")))
}

/// The deterministic service name for `port`: repeated calls name the same service.
pub fn service_name(port: u16) -> String {
    format!("port-{port}")
}

/// Polls `GET /instance/{id}` until its status is `want`; `error` fails at once.
async fn wait_for(mut instance: Instance, want: &str) -> Result<Instance, Error> {
    let deadline = Deadline::from_config();
    loop {
        match instance.status() {
            s if s == want => return Ok(instance),
            "error" => {
                let what = if want == "ready" { "failed to boot" } else { "failed" };
                return Err(unavailable(format!("instance {} {what} (status \"error\") while waiting for {want}", instance.id)));
            }
            _ => {}
        }
        deadline.pause(&format!("instance {} to be {want}", instance.id)).await?;
        instance = get(&instance.id).await?;
    }
}

/// Best-effort delete of instances the caller will never hear about; returns `why`.
pub async fn delete_all(ids: Vec<String>, why: Error) -> Error {
    for id in ids {
        if let Err(e) = delete(&id).await {
            log::log(log::Level::Warn, &format!("could not delete instance {id} after a failed call: {}", e.message));
        }
    }
    why
}

/// A polling deadline with backoff (250 ms doubling to 5 s): a 90 s wait costs about 22
/// polls, well inside the host's per-call request budget (32 by default).
struct Deadline {
    end: Instant,
    limit_secs: u64,
    step: std::cell::Cell<u64>,
}

impl Deadline {
    fn from_config() -> Self {
        let limit_secs = config::get("ready-timeout-secs").and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_READY_TIMEOUT_SECS);
        let end = Instant::now() + Duration::from_secs(limit_secs);
        Deadline { end, limit_secs, step: std::cell::Cell::new(250) }
    }

    async fn pause(&self, what: &str) -> Result<(), Error> {
        if Instant::now() >= self.end {
            return Err(unavailable(format!("gave up waiting for {what} after {} s (config `ready-timeout-secs`)", self.limit_secs)));
        }
        let step = self.step.get();
        self.step.set((step * 2).min(5_000));
        provider_kit::wstd::task::sleep(Duration::from_millis(step)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(v: serde_json::Value) -> Instance {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_instance_model_reads_as_the_contracts_sandbox() {
        let i = instance(json!({
            "id": "morphvm_a", "created": 1_735_689_600, "status": "paused",
            "refs": {"snapshot_id": "snapshot_base", "image_id": "morphvm-minimal"},
            "metadata": {"team": "x", "odd": 5},
            "ttl": {"ttl_seconds": 120, "ttl_expire_at": 1_735_689_720, "ttl_action": "stop"},
        }));
        let s = i.to_sandbox();
        assert_eq!((s.sandbox_id.as_str(), s.image.as_str(), s.state), ("morphvm_a", "snapshot_base", SandboxState::Paused));
        assert_eq!(s.started_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(s.ends_at.as_deref(), Some("2025-01-01T00:02:00Z"));
        assert_eq!(s.metadata, [("odd".to_string(), "5".to_string()), ("team".to_string(), "x".to_string())]);
        assert!(i.is_listed());
    }

    #[test]
    fn only_a_stop_ttl_is_an_end_and_error_instances_are_not_listed() {
        let paused_at_ttl = instance(json!({"id": "a", "status": "ready", "ttl": {"ttl_expire_at": 10, "ttl_action": "pause"}}));
        assert_eq!(paused_at_ttl.ends_at(), None);
        assert_eq!(paused_at_ttl.to_sandbox().state, SandboxState::Running);
        let no_ttl = instance(json!({"id": "b", "ttl": {"ttl_seconds": null, "ttl_action": "stop"}}));
        assert_eq!((no_ttl.ends_at(), no_ttl.status()), (None, "pending"));
        assert!(!instance(json!({"id": "c", "status": "error"})).is_listed());
    }
}
