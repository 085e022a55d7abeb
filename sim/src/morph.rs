//! A Morph-Cloud-shaped simulator: the instance API under `/api` (start, get, list,
//! delete, exec, exec/sse, ttl, pause, resume, snapshot, branch, HTTP services) and
//! `GET /api/snapshot/{id}`.
//!
//! Shapes follow the server's own OpenAPI document (BloopAI/morph-rs-sdk
//! `morph-3.1.0.json`: `InstanceModel`, `InstanceTTL`, `UpdateTTLRequest`,
//! `SnapshotModel`, `BranchResponse`, …) and morph-labs/morph-python-sdk
//! `morphcloud/api.py`: snake_case JSON, `created` in Unix epoch seconds, new and resumed
//! instances and new snapshots answered `pending` and `ready` on the next read (after
//! [`MorphSim::set_boot_delay`]), `DELETE` → 204, FastAPI errors `{detail: "…"}` and 422
//! `{detail: [{type, loc, msg, input}]}`. `exec/sse` streams what the SDKs read
//! (`_exec_streaming`): `data: {"type": "stdout"|"stderr", "content": …}` events as the
//! command prints, then `data: {"type": "exit_code", "content": N}` and `data: [DONE]`.
//! TTLs are absolute: `ttl_expire_at` is start (or the last `POST …/ttl`, or resume)
//! plus `ttl_seconds` (SDK `set_ttl`: "current server time plus the provided TTL
//! seconds"; its TTL test sees resume move the expiry later).
//!
//! Instances are real: each has a temporary directory as its `HOME` and working
//! directory, and exec joins the `command` elements with spaces and runs the line with
//! `sh -c`, as Morph's SSH backend runs it through the VM's shell (so one line is one
//! process argument, with Linux's 128 KiB limit). Snapshots copy that directory, so
//! `create` from a snapshot and `branch` see the files. TTLs are enforced lazily on each
//! request (`stop` deletes, `pause` pauses) and do not run while paused. It binds
//! 127.0.0.1 only; a local development and test double, not an isolation boundary.
//!
//! Every request and answer is checked against that document (vendored as
//! `sim/specs/morph/morph-3.1.0.json`, [`crate::spec`]). It documents only 200 and
//! FastAPI's 422 for each operation, so Morph's error codes are assumptions (listed in
//! `spec::exempt`): an unknown instance or snapshot is 404; a second HTTP service with an
//! existing name is 409; a bad key is 401; exec on a paused instance, pausing a paused
//! one and resuming a running one are 409 (the SDK's CLI reads 409 on pause/resume as
//! "cannot be paused/resumed"); an exec that cannot start is 500, one that outlives
//! [`EXEC_CAP`] 504. `exec/sse` is not in the document (exempted there).

// Helpers return `Err(Reply)`: the error IS the answer to send, built once where it arises.
#![allow(clippy::result_large_err)]

use crate::server::{empty, json, streamed, Handler, Recorded, Reply, Sim};
use crate::spec::{self, contract::Contract};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt as _;

/// Snapshots every account has (id → base image id). Start accepts these and the ids of
/// snapshots taken on this simulator.
pub const BASE_SNAPSHOTS: [(&str, &str); 2] = [("snapshot_base", "morphvm-minimal"), ("snapshot_python", "morphvm-python")];

/// Longest a simulated exec may run (Morph has no exec deadline of its own; this only
/// keeps a forgotten test process from outliving the test).
const EXEC_CAP: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct HttpService {
    pub name: String,
    pub port: u16,
    pub auth_mode: String,
}

#[derive(Debug)]
pub struct SimInstance {
    pub id: String,
    pub created: i64,
    pub ready_at: Instant,
    pub paused: bool,
    pub snapshot_id: String,
    pub image_id: String,
    pub internal_ip: String,
    pub metadata: BTreeMap<String, String>,
    pub http_services: Vec<HttpService>,
    pub ttl_seconds: Option<u64>,
    /// Unix time the TTL's action happens (`None`: no TTL).
    pub ttl_expire_at: Option<i64>,
    pub ttl_action: String,
    pub root: tempfile::TempDir,
}

impl SimInstance {
    pub fn status(&self) -> &'static str {
        if self.paused {
            "paused"
        } else if Instant::now() >= self.ready_at {
            "ready"
        } else {
            "pending"
        }
    }
}

#[derive(Debug)]
pub struct SimSnapshot {
    pub id: String,
    pub created: i64,
    pub image_id: String,
    pub metadata: BTreeMap<String, String>,
    /// The captured home directory (none for the base snapshots).
    pub files: Option<tempfile::TempDir>,
    /// Reads so far: the first answer (the POST's) is `pending`, later ones `ready`.
    pub reads: u32,
}

#[derive(Default)]
pub struct State {
    pub instances: Mutex<BTreeMap<String, SimInstance>>,
    pub snapshots: Mutex<BTreeMap<String, SimSnapshot>>,
    /// Instance ids of every branch answer, in the order they were answered.
    pub branches: Mutex<Vec<Vec<String>>>,
    boot_delay: Mutex<Duration>,
    counter: AtomicU64,
}

pub struct MorphSim {
    /// The API host (`cloud.morph.so`); routes live under `/api`.
    pub api: Sim,
    pub state: Arc<State>,
    pub api_key: String,
}

impl MorphSim {
    /// Starts on `port` (0 = any free port), accepting `Authorization: Bearer <api_key>`.
    pub async fn start(port: u16, api_key: &str) -> std::io::Result<MorphSim> {
        let state: Arc<State> = Arc::default();
        let (st, key) = (state.clone(), api_key.to_string());
        let handler: Handler = Arc::new(move |rec| {
            let (st, key) = (st.clone(), key.clone());
            Box::pin(async move { route(&st, &key, rec).await })
        });
        let api = Sim::serve_checked(port, handler, Some(&CONTRACT)).await?;
        Ok(MorphSim { api, state, api_key: api_key.to_string() })
    }

    /// `https://cloud.morph.so/api` for this simulator.
    pub fn api_base(&self) -> String {
        format!("{}/api", self.api.base_url())
    }

    /// Policy lines pointing the morph plugin at this simulator, granting it `MORPH_API_KEY`.
    pub fn policy_toml(&self) -> String {
        format!(
            "api_base = \"{}\"\nallowed_hosts = [\"{}\"]\n[credentials]\napi-key = \"MORPH_API_KEY\"\n",
            self.api_base(),
            self.api.authority()
        )
    }

    /// Instances that are running (not paused).
    pub fn live_count(&self) -> usize {
        expire(&self.state);
        self.state.instances.lock().unwrap().values().filter(|i| !i.paused).count()
    }

    /// How long new instances stay `pending` (default: ready on the first read).
    pub fn set_boot_delay(&self, d: Duration) {
        *self.state.boot_delay.lock().unwrap() = d;
    }

    /// The instance ids of the most recent branch answer, in upstream order.
    pub fn last_branch(&self) -> Option<Vec<String>> {
        self.state.branches.lock().unwrap().last().cloned()
    }

    pub fn root_of(&self, id: &str) -> Option<std::path::PathBuf> {
        self.state.instances.lock().unwrap().get(id).map(|i| i.root.path().to_path_buf())
    }

    /// Starts an instance directly upstream, as another client of the same account
    /// would; returns its id (empty when `snapshot` is unknown).
    pub fn create_out_of_band(&self, snapshot: &str) -> String {
        match start_instance(&self.state, snapshot, &json!({})) {
            Ok(v) => v["id"].as_str().unwrap_or_default().to_string(),
            Err(_) => String::new(),
        }
    }
}

/// Checked against `morph-3.1.0.json`, whose server is `/api`.
static CONTRACT: Contract = Contract { locate, reject };

fn locate(rec: &Recorded) -> Result<(&'static spec::Spec, String), String> {
    match rec.path.strip_prefix("/api") {
        Some(rest) if rest.starts_with('/') => Ok((spec::morph_api(), rest.to_string())),
        _ => Err("not under the spec's server /api".into()),
    }
}

/// A refusal as FastAPI words it: 422 `HTTPValidationError` for a request that does not
/// validate, `{detail}` otherwise.
fn reject(_: &Recorded, status: u16, message: &str) -> Reply {
    match status {
        400 => json(422, &json!({ "detail": [{ "type": "spec_violation", "loc": ["request"], "msg": message }] })),
        _ => detail(status, message),
    }
}

fn detail(status: u16, message: &str) -> Reply {
    json(status, &json!({ "detail": message }))
}

/// FastAPI's request-validation answer, `HTTPValidationError`. (Pydantic 2 also sends the
/// offending `input`; the vendored `ValidationError` declares only loc, msg and type.)
fn invalid(loc: &[&str], msg: &str) -> Reply {
    json(422, &json!({ "detail": [{ "type": "value_error", "loc": loc, "msg": msg }] }))
}

fn not_found(id: &str) -> Reply {
    detail(404, &format!("Instance '{id}' not found"))
}

fn now_epoch() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn route(st: &Arc<State>, key: &str, rec: Recorded) -> Reply {
    if rec.header("authorization") != Some(format!("Bearer {key}").as_str()) {
        return detail(401, "Invalid or missing API key");
    }
    expire(st);
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    match (rec.method.as_str(), segs.as_slice()) {
        ("POST", ["api", "instance"]) => {
            let Some(snapshot) = rec.query_param("snapshot_id") else {
                return invalid(&["query", "snapshot_id"], "Field required");
            };
            // The body is optional and may be JSON null (`anyOf: [StartInstanceRequest, null]`).
            let body = if rec.body.is_empty() || rec.json().is_null() { json!({}) } else { rec.json() };
            match start_instance(st, &snapshot, &body) {
                Ok(v) => json(200, &v),
                Err(r) => r,
            }
        }
        ("GET", ["api", "instance"]) => {
            let data: Vec<Value> = st.instances.lock().unwrap().values().map(instance_json).collect();
            json(200, &json!({ "object": "list", "data": data }))
        }
        ("GET", ["api", "instance", id]) => match st.instances.lock().unwrap().get(*id) {
            Some(i) => json(200, &instance_json(i)),
            None => not_found(id),
        },
        ("DELETE", ["api", "instance", id]) => match st.instances.lock().unwrap().remove(*id) {
            Some(_) => empty(204),
            None => not_found(id),
        },
        // 204, as `DELETE /snapshot/{snapshot_id}` documents; an unknown id is 404 (assumed).
        ("DELETE", ["api", "snapshot", id]) => match st.snapshots.lock().unwrap().remove(*id) {
            Some(_) => empty(204),
            None => not_found(id),
        },
        ("POST", ["api", "instance", id, "exec"]) => exec(st, id, &rec).await,
        ("POST", ["api", "instance", id, "exec", "sse"]) => exec_sse(st, id, &rec),
        ("POST", ["api", "instance", id, "ttl"]) => set_ttl(st, id, &rec),
        ("POST", ["api", "instance", id, "pause"]) => pause(st, id),
        ("POST", ["api", "instance", id, "resume"]) => resume(st, id),
        ("POST", ["api", "instance", id, "snapshot"]) => match take_snapshot(st, id, &rec) {
            Ok(v) => json(200, &v),
            Err(r) => r,
        },
        ("GET", ["api", "snapshot", id]) => match st.snapshots.lock().unwrap().get_mut(*id) {
            Some(s) => {
                s.reads += 1;
                json(200, &snapshot_json(s))
            }
            None => detail(404, &format!("Snapshot '{id}' not found")),
        },
        ("POST", ["api", "instance", id, "branch"]) => branch(st, id, &rec),
        ("POST", ["api", "instance", id, "http"]) => expose(st, id, &rec),
        ("DELETE", ["api", "instance", id, "http", name]) => match st.instances.lock().unwrap().get_mut(*id) {
            Some(i) => {
                let before = i.http_services.len();
                i.http_services.retain(|s| s.name != *name);
                if i.http_services.len() == before {
                    return detail(404, &format!("HTTP service '{name}' not found"));
                }
                json(200, &instance_json(i))
            }
            None => not_found(id),
        },
        _ => detail(404, "Not Found"),
    }
}

/// Applies expired TTLs: `stop` deletes the instance, `pause` pauses it.
fn expire(st: &State) {
    let now = now_epoch();
    let mut instances = st.instances.lock().unwrap();
    let due: Vec<String> =
        instances.values().filter(|i| !i.paused && i.ttl_expire_at.is_some_and(|at| at <= now)).map(|i| i.id.clone()).collect();
    for id in due {
        if instances.get(&id).is_some_and(|i| i.ttl_action == "pause") {
            if let Some(i) = instances.get_mut(&id) {
                i.paused = true;
            }
        } else {
            instances.remove(&id);
        }
    }
}

fn string_map(v: &Value, loc: &str) -> Result<BTreeMap<String, String>, Reply> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_string())),
                None => Err(invalid(&["body", loc, k], "Input should be a valid string")),
            })
            .collect(),
        _ => Err(invalid(&["body", loc], "Input should be a valid dictionary")),
    }
}

fn new_id(prefix: &str, st: &State, taken: impl Fn(&str) -> bool) -> String {
    loop {
        let n = st.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) as u64;
        // Mixed so that ids are not in creation order (callers must keep upstream order).
        let x = (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 24;
        let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let suffix: String = (0..8).map(|i| alphabet[((x >> (i * 5)) % 36) as usize] as char).collect();
        let id = format!("{prefix}_{suffix}");
        if !taken(&id) {
            return id;
        }
    }
}

/// `POST /instance?snapshot_id=` with an optional `StartInstanceRequest` body.
fn start_instance(st: &State, snapshot: &str, body: &Value) -> Result<Value, Reply> {
    if !body.is_object() {
        return Err(invalid(&["body"], "Input should be a valid dictionary or object"));
    }
    let metadata = string_map(&body["metadata"], "metadata")?;
    let ttl_seconds = match &body["ttl_seconds"] {
        Value::Null => None,
        v => Some(v.as_u64().ok_or_else(|| invalid(&["body", "ttl_seconds"], "Input should be a valid integer"))?),
    };
    let ttl_action = match &body["ttl_action"] {
        Value::Null => "stop".to_string(),
        Value::String(s) if s == "stop" || s == "pause" => s.clone(),
        _ => return Err(invalid(&["body", "ttl_action"], "Input should be 'stop' or 'pause'")),
    };
    let (image_id, files) = {
        let snaps = st.snapshots.lock().unwrap();
        match (BASE_SNAPSHOTS.iter().find(|(id, _)| *id == snapshot), snaps.get(snapshot)) {
            (Some((_, image)), _) => (image.to_string(), None),
            (None, Some(s)) => (s.image_id.clone(), s.files.as_ref().map(|f| f.path().to_path_buf())),
            (None, None) => return Err(detail(404, &format!("Snapshot '{snapshot}' not found"))),
        }
    };
    let root =
        tempfile::Builder::new().prefix("morph-sim-").tempdir().map_err(|e| detail(500, &format!("cannot start the instance: {e}")))?;
    if let Some(src) = files {
        crate::files::copy_tree(&src, root.path()).map_err(|e| detail(500, &format!("cannot restore the snapshot: {e}")))?;
    }
    let mut instances = st.instances.lock().unwrap();
    let id = new_id("morphvm", st, |id| instances.contains_key(id));
    let n = st.counter.load(Ordering::Relaxed);
    let instance = SimInstance {
        id: id.clone(),
        created: now_epoch(),
        ready_at: Instant::now() + *st.boot_delay.lock().unwrap(),
        paused: false,
        snapshot_id: snapshot.to_string(),
        image_id,
        internal_ip: format!("10.0.{}.{}", (n >> 8) % 256, n % 254 + 1),
        metadata,
        http_services: Vec::new(),
        ttl_seconds,
        ttl_expire_at: ttl_seconds.map(|t| now_epoch().saturating_add_unsigned(t)),
        ttl_action,
        root,
    };
    // A new instance is answered `pending`, as Morph does; reads after the boot delay say `ready`.
    let mut v = instance_json(&instance);
    v["status"] = json!("pending");
    instances.insert(id, instance);
    Ok(v)
}

fn service_url(name: &str, instance_id: &str) -> String {
    format!("https://{name}-{}.http.cloud.morph.so", instance_id.replace('_', "-"))
}

fn instance_json(i: &SimInstance) -> Value {
    let services: Vec<Value> = i
        .http_services
        .iter()
        .map(|s| json!({ "name": s.name, "port": s.port, "url": service_url(&s.name, &i.id), "auth_mode": s.auth_mode }))
        .collect();
    json!({
        "id": i.id,
        "object": "instance",
        "created": i.created,
        "status": i.status(),
        "spec": { "vcpus": 1, "memory": 1024, "disk_size": 10240 },
        "refs": { "snapshot_id": i.snapshot_id, "image_id": i.image_id },
        "networking": { "internal_ip": i.internal_ip, "http_services": services },
        "metadata": i.metadata,
        "ttl": {
            "ttl_seconds": i.ttl_seconds,
            "ttl_expire_at": i.ttl_expire_at,
            "ttl_action": i.ttl_action,
        },
        "wake_on": { "wake_on_ssh": false, "wake_on_http": false },
    })
}

fn snapshot_json(s: &SimSnapshot) -> Value {
    json!({
        "id": s.id,
        "object": "snapshot",
        "created": s.created,
        "status": if s.reads == 0 { "pending" } else { "ready" },
        "spec": { "vcpus": 1, "memory": 1024, "disk_size": 10240 },
        "refs": { "image_id": s.image_id },
        "digest": null,
        "metadata": s.metadata,
    })
}

/// Captures instance `id`'s home directory as a new snapshot; returns its id.
fn capture(st: &State, id: &str, metadata: BTreeMap<String, String>) -> Result<String, Reply> {
    let (src, image_id) = match st.instances.lock().unwrap().get(id) {
        Some(i) => (i.root.path().to_path_buf(), i.image_id.clone()),
        None => return Err(not_found(id)),
    };
    let files = tempfile::Builder::new().prefix("morph-sim-snap-").tempdir().map_err(|e| detail(500, &format!("cannot snapshot: {e}")))?;
    crate::files::copy_tree(&src, files.path()).map_err(|e| detail(500, &format!("cannot snapshot: {e}")))?;
    let mut snaps = st.snapshots.lock().unwrap();
    let sid = new_id("snapshot", st, |s| snaps.contains_key(s) || BASE_SNAPSHOTS.iter().any(|(b, _)| *b == s));
    snaps.insert(sid.clone(), SimSnapshot { id: sid.clone(), created: now_epoch(), image_id, metadata, files: Some(files), reads: 0 });
    Ok(sid)
}

/// `POST /instance/{id}/snapshot` (optional body `{metadata}`) → `SnapshotModel`, `pending`.
fn take_snapshot(st: &State, id: &str, rec: &Recorded) -> Result<Value, Reply> {
    let body = if rec.body.is_empty() { json!({}) } else { rec.json() };
    let metadata = string_map(&body["metadata"], "metadata")?;
    let sid = capture(st, id, metadata)?;
    let snaps = st.snapshots.lock().unwrap();
    Ok(snapshot_json(&snaps[&sid]))
}

/// `POST /instance/{id}/branch?count=N` (default 1) → `{snapshot, instances}`.
fn branch(st: &State, id: &str, rec: &Recorded) -> Reply {
    let count = match rec.query_param("count") {
        None => 1,
        Some(c) => match c.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => return invalid(&["query", "count"], "Input should be greater than or equal to 1"),
        },
    };
    let body = if rec.body.is_empty() { json!({}) } else { rec.json() };
    let snapshot_metadata = match string_map(&body["snapshot_metadata"], "snapshot_metadata") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let instance_metadata = match st.instances.lock().unwrap().get(id) {
        Some(i) => i.metadata.clone(),
        None => return not_found(id),
    };
    let sid = match capture(st, id, snapshot_metadata) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut instances = Vec::new();
    for _ in 0..count {
        match start_instance(st, &sid, &json!({ "metadata": instance_metadata })) {
            Ok(v) => instances.push(v),
            Err(r) => return r,
        }
    }
    let ids: Vec<String> = instances.iter().filter_map(|v| v["id"].as_str().map(str::to_string)).collect();
    st.branches.lock().unwrap().push(ids);
    let snapshot = snapshot_json(&st.snapshots.lock().unwrap()[&sid]);
    json(200, &json!({ "snapshot": snapshot, "instances": instances }))
}

/// `POST /instance/{id}/http` `{name, port, auth_mode?}` → the instance.
fn expose(st: &State, id: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    let Some(name) = body["name"].as_str() else { return invalid(&["body", "name"], "Field required") };
    // ExposeHttpServiceRequest.name: 1-40 characters, `^[a-z0-9]([a-z0-9-_]*[a-z0-9])?$`.
    let inner = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let valid_name = (1..=40).contains(&bytes.len())
        && bytes.first().copied().is_some_and(inner)
        && bytes.last().copied().is_some_and(inner)
        && bytes.iter().all(|b| inner(*b) || *b == b'-' || *b == b'_');
    if !valid_name {
        return invalid(&["body", "name"], "String should match pattern '^[a-z0-9]([a-z0-9-_]*[a-z0-9])?$'");
    }
    let Some(port) = body["port"].as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p >= 1) else {
        return invalid(&["body", "port"], "Input should be a valid port number");
    };
    let auth_mode = match &body["auth_mode"] {
        Value::Null => "none".to_string(),
        Value::String(s) if s == "none" || s == "api_key" => s.clone(),
        _ => return invalid(&["body", "auth_mode"], "Input should be 'none' or 'api_key'"),
    };
    let mut instances = st.instances.lock().unwrap();
    let Some(i) = instances.get_mut(id) else { return not_found(id) };
    if i.http_services.iter().any(|s| s.name == name) {
        return detail(409, &format!("HTTP service '{name}' already exists on instance '{id}'"));
    }
    i.http_services.push(HttpService { name: name.to_string(), port, auth_mode });
    json(200, &instance_json(i))
}

/// `POST /instance/{id}/ttl` `UpdateTTLRequest{ttl_seconds, ttl_action?}` → the instance.
/// `ttl_seconds: null` removes the TTL (the SDK's `set_ttl(None)`); a missing
/// `ttl_action` keeps the current one ("Defaults to the current action").
fn set_ttl(st: &State, id: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    if !body.is_object() {
        return invalid(&["body"], "Input should be a valid dictionary or object");
    }
    let ttl_seconds = match &body["ttl_seconds"] {
        Value::Null if body.get("ttl_seconds").is_some() => None,
        Value::Null => return invalid(&["body", "ttl_seconds"], "Field required"),
        v => match v.as_u64() {
            Some(t) => Some(t),
            None => return invalid(&["body", "ttl_seconds"], "Input should be a valid integer"),
        },
    };
    let action = match &body["ttl_action"] {
        Value::Null => None,
        Value::String(a) if a == "stop" || a == "pause" => Some(a.clone()),
        _ => return invalid(&["body", "ttl_action"], "Input should be 'stop' or 'pause'"),
    };
    let mut instances = st.instances.lock().unwrap();
    let Some(i) = instances.get_mut(id) else { return not_found(id) };
    i.ttl_seconds = ttl_seconds;
    i.ttl_expire_at = ttl_seconds.map(|t| now_epoch().saturating_add_unsigned(t));
    if let Some(a) = action {
        i.ttl_action = a;
    }
    json(200, &instance_json(i))
}

/// `POST /instance/{id}/pause` (`?no_snapshot=` accepted and ignored) → the instance, paused.
fn pause(st: &State, id: &str) -> Reply {
    let mut instances = st.instances.lock().unwrap();
    let Some(i) = instances.get_mut(id) else { return not_found(id) };
    if i.paused {
        return detail(409, &format!("Instance '{id}' cannot be paused: it is paused"));
    }
    i.paused = true;
    json(200, &instance_json(i))
}

/// `POST /instance/{id}/resume` → the instance, booting again (`pending` until the boot
/// delay passed); the TTL starts over from now.
fn resume(st: &State, id: &str) -> Reply {
    let mut instances = st.instances.lock().unwrap();
    let Some(i) = instances.get_mut(id) else { return not_found(id) };
    if !i.paused {
        return detail(409, &format!("Instance '{id}' cannot be resumed: it is not paused"));
    }
    i.paused = false;
    i.ready_at = Instant::now() + *st.boot_delay.lock().unwrap();
    i.ttl_expire_at = i.ttl_seconds.map(|t| now_epoch().saturating_add_unsigned(t));
    json(200, &instance_json(i))
}

/// The shell line of an exec body, started in instance `id` with its output piped.
fn spawn(st: &State, id: &str, rec: &Recorded) -> Result<tokio::process::Child, Reply> {
    let body = rec.json();
    let command: Option<Vec<String>> =
        body["command"].as_array().and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>());
    // Assumption: ExecRequest allows `[]` (no minItems), but an empty command has nothing to
    // run; answered 422 as FastAPI would a failed validator.
    let Some(command) = command.filter(|c| !c.is_empty()) else {
        return Err(invalid(&["body", "command"], "Input should be a non-empty list of strings"));
    };
    let root = match st.instances.lock().unwrap().get(id) {
        Some(i) if i.paused => return Err(detail(409, &format!("Instance '{id}' is paused"))),
        Some(i) => i.root.path().to_path_buf(),
        None => return Err(not_found(id)),
    };
    // The elements form one shell line, as on Morph (SSH exec through the VM's shell).
    let line = command.join(" ");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(&line).current_dir(&root).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
    cmd.env("HOME", &root).env("USER", "root").env("LOGNAME", "root").env("SHELL", "/bin/sh");
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    cmd.spawn().map_err(|e| detail(500, &format!("exec failed: {e}")))
}

/// `POST /instance/{id}/exec` `{command: [..]}` → `{exit_code, stdout, stderr}`.
async fn exec(st: &State, id: &str, rec: &Recorded) -> Reply {
    let child = match spawn(st, id, rec) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match tokio::time::timeout(EXEC_CAP, child.wait_with_output()).await {
        Ok(Ok(o)) => json(
            200,
            &json!({
                // A session ended by a signal has no exit status; -1 like asyncssh.
                "exit_code": o.status.code().unwrap_or(-1),
                "stdout": String::from_utf8_lossy(&o.stdout),
                "stderr": String::from_utf8_lossy(&o.stderr),
            }),
        ),
        Ok(Err(e)) => detail(500, &format!("exec failed: {e}")),
        Err(_) => detail(504, "exec did not finish"),
    }
}

/// `POST /instance/{id}/exec/sse` (same body) → `text/event-stream`: one event per read
/// of the command's stdout or stderr, sent at once, then its exit code and `[DONE]`.
/// Refusals (unknown instance, paused, bad body) are the same JSON answers as exec's.
fn exec_sse(st: &State, id: &str, rec: &Recorded) -> Reply {
    let child = match spawn(st, id, rec) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (reply, tx) = streamed(200, "text/event-stream");
    tokio::spawn(pump(child, tx));
    reply
}

/// Relays a running command as SSE events until it exits (or the client goes away,
/// which drops and so kills it, or [`EXEC_CAP`] passes).
async fn pump(mut child: tokio::process::Child, tx: tokio::sync::mpsc::UnboundedSender<Bytes>) {
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else { return };
    let send =
        |kind: &str, content: Value| tx.send(Bytes::from(format!("data: {}\n\n", json!({ "type": kind, "content": content })))).is_ok();
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let (mut out_text, mut err_text) = (Utf8Pieces::default(), Utf8Pieces::default());
    let (mut out_open, mut err_open) = (true, true);
    let cap = tokio::time::sleep(EXEC_CAP);
    tokio::pin!(cap);
    while out_open || err_open {
        let sent = tokio::select! {
            n = out.read(&mut out_buf), if out_open => match n {
                Ok(n) if n > 0 => out_text.piece(&out_buf[..n]).is_none_or(|t| send("stdout", json!(t))),
                _ => { out_open = false; out_text.rest().is_none_or(|t| send("stdout", json!(t))) }
            },
            n = err.read(&mut err_buf), if err_open => match n {
                Ok(n) if n > 0 => err_text.piece(&err_buf[..n]).is_none_or(|t| send("stderr", json!(t))),
                _ => { err_open = false; err_text.rest().is_none_or(|t| send("stderr", json!(t))) }
            },
            _ = &mut cap => return,
        };
        if !sent {
            return;
        }
    }
    // A session ended by a signal has no exit status; -1 like asyncssh.
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(-1);
    if send("exit_code", json!(code)) {
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

/// Output bytes as text events without splitting a UTF-8 character across two of them.
#[derive(Default)]
struct Utf8Pieces(Vec<u8>);

impl Utf8Pieces {
    /// The text complete so far (`None` when there is none yet).
    fn piece(&mut self, bytes: &[u8]) -> Option<String> {
        self.0.extend_from_slice(bytes);
        let keep = match std::str::from_utf8(&self.0) {
            Ok(_) => 0,
            // An unfinished character at the end waits for the next read (≤ 3 bytes).
            Err(e) if e.error_len().is_none() => self.0.len() - e.valid_up_to(),
            Err(_) => 0,
        };
        let tail = self.0.split_off(self.0.len() - keep);
        let text = String::from_utf8_lossy(&std::mem::replace(&mut self.0, tail)).into_owned();
        (!text.is_empty()).then_some(text)
    }

    /// What is left at the end of the stream.
    fn rest(&mut self) -> Option<String> {
        let text = String::from_utf8_lossy(&std::mem::take(&mut self.0)).into_owned();
        (!text.is_empty()).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Pieces;

    #[test]
    fn a_character_split_across_reads_is_sent_whole() {
        let mut p = Utf8Pieces::default();
        let e_acute = "é".as_bytes();
        assert_eq!(p.piece(&[b'a', e_acute[0]]).as_deref(), Some("a"));
        assert_eq!(p.piece(&[e_acute[1], b'b']).as_deref(), Some("éb"));
        assert_eq!(p.piece(&[0xe2, 0x82]), None, "only part of a character so far");
        assert_eq!(p.rest().as_deref(), Some("\u{fffd}"), "a character cut by the end of output is replaced");
        assert_eq!(p.piece(&[0xff, b'x']).as_deref(), Some("\u{fffd}x"), "invalid bytes are replaced, not held");
    }
}
