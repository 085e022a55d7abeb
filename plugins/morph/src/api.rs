//! Morph Cloud's instance API (`{api-base}`, default `https://cloud.morph.so/api`;
//! `Authorization: Bearer <key>` is set by the host).
//!
//! Shapes: the server's own OpenAPI document (FastAPI "MorphVM API", copied in
//! BloopAI/morph-rs-sdk `morph-3.1.0.json`: `InstanceModel`, `StartInstanceRequest`,
//! `InstanceExecRequest`/`InstanceExecResponse`, `SnapshotModel`, `BranchResponse`,
//! `ExposeHttpServiceRequest`) and morph-labs/morph-python-sdk `morphcloud/api.py`
//! (`InstanceAPI.start/stop/list`, `Instance.exec/branch/expose_http_service`,
//! `wait_until_ready`). Errors are FastAPI `{detail}` (a string, or a validation list).
//!
//! New instances (create, branch) and snapshots come back `pending`; like the SDK, the
//! plugin polls until `ready` so the caller's next call finds a usable sandbox.

use crate::time::rfc3339_from_created;
use provider_kit::errors::{bad_input, unavailable};
use provider_kit::upstream::{encode, Call};
use provider_kit::wstd::time::{Duration, Instant};
use provider_kit::{config, config_or, log, CreateRequest, Error, ErrorKind};
use serde::Deserialize;
use serde_json::json;

pub const DEFAULT_API_BASE: &str = "https://cloud.morph.so/api";
/// How long create/branch/snapshot wait for `ready` (config `ready-timeout-secs`);
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

    fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("pending")
    }

    /// Counted as a live sandbox by `list`. Morph keeps no stopped instances (DELETE
    /// removes them, and a TTL with `ttl_action: stop` does the same), but `paused`
    /// ones stay listed while not running and `error` ones never will: both are left
    /// out, like E2B's paused sandboxes. `pending` and `saving` are running VMs.
    pub fn is_live(&self) -> bool {
        !matches!(self.status(), "paused" | "error")
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
    match wait_ready(instance).await {
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
/// the script's own deadline plus a grace period.
pub async fn exec(id: &str, script: &str, deadline_ms: u64) -> Result<ExecOutput, Error> {
    Call::post(format!("{}/exec", instance_url(id)))
        .json(&json!({ "command": [script] }))
        .timeout(Duration::from_millis(deadline_ms.saturating_add(EXEC_GRACE_MS)))
        .send()
        .await?
        .ok()?
        .json()
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
    let reply = Call::post(format!("{}/branch?count={count}", instance_url(id))).json(&json!({})).send().await?.ok()?;
    let branched: Branched = reply.json()?;
    if branched.instances.len() != count as usize {
        let e = unavailable(format!("{} returned {} instances for count={count}", reply.what, branched.instances.len()));
        return Err(delete_all(branched.instances.iter().map(|i| i.id.clone()).collect(), e).await);
    }
    let ids: Vec<String> = branched.instances.iter().map(|i| i.id.clone()).collect();
    for instance in branched.instances {
        if let Err(e) = wait_ready(instance).await {
            return Err(delete_all(ids, e).await);
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
    instance
        .service_url(&name, port)
        .ok_or_else(|| unavailable(format!("POST /instance/{{id}}/http answered without an HTTP service for port {port}")))
}

/// The deterministic service name for `port`: repeated calls name the same service.
pub fn service_name(port: u16) -> String {
    format!("port-{port}")
}

/// Polls `GET /instance/{id}` until `ready`; `error` fails at once.
async fn wait_ready(mut instance: Instance) -> Result<Instance, Error> {
    let deadline = Deadline::from_config();
    loop {
        match instance.status() {
            "ready" => return Ok(instance),
            "error" => return Err(unavailable(format!("instance {} failed to boot (status \"error\")", instance.id))),
            _ => {}
        }
        deadline.pause(&format!("instance {} to be ready", instance.id)).await?;
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
