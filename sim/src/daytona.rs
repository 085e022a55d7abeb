//! A Daytona-shaped simulator: the REST API under `/api` and the toolbox proxy under
//! `/toolbox`, on one loopback port, both requiring `Authorization: Bearer <key>`.
//!
//! Shapes follow Daytona's maintained specs, `daytona/clients` `openapi-specs/api.json`
//! and `openapi-specs/toolbox.json` (vendored in `sim/specs/daytona/`; every request and
//! answer is checked against them, [`crate::spec`]), and the behaviour of the last public
//! server and daemon, daytonaio/daytona v0.190.0 (`apps/api/src/sandbox`, `apps/daemon`): NestJS
//! errors `{statusCode, message, error}`, `Sandbox with ID or name X not found`, `Snapshot X
//! not found. Did you add it through the Daytona Dashboard?`, 409 "Sandbox state change in
//! progress" during any transition. The lifecycle routes are in [`lifecycle`], the daemon
//! (sessions, files) in [`toolbox`] and [`session`].
//!
//! Transitions are asynchronous as upstream: a lifecycle POST answers the sandbox with its
//! wish in `desiredState` (the state unchanged), the next `GET /sandbox/{id}` calls show
//! the intermediate state (`stopping`, `starting`, `pausing`, …) for
//! [`State::transition_polls`] calls, then the target. New sandboxes are class `container`
//! (v0.190.0's default), or `linux-vm` with [`State::vm_sandboxes`]; only VMs pause and fork.
//!
//! Both toolbox path forms are served: the proxy form `/toolbox/{id}/…` that the Sandbox's
//! `toolboxProxyUrl` points at, and the old API form `/api/toolbox/{id}/toolbox/…`. Knobs
//! on [`State`] turn newer features off to exercise a plugin's fallbacks.
//!
//! Sandboxes are real: each gets a temporary directory as its home and default working
//! directory, commands run as local processes, relative paths resolve inside that
//! directory, and a snapshot or fork copies it. It binds 127.0.0.1 only; it is a local
//! development and test double, not an isolation boundary.

// Handlers return a ready `Reply` as their error: it is the answer, not a failure to box.
#![allow(clippy::result_large_err)]

mod lifecycle;
mod session;
mod toolbox;

pub use session::{Labeller, Sessions, Stream};

use crate::server::{json, Handler, Recorded, Reply, Sim};
use crate::spec::{self, contract::Contract, exempt};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a sandbox runs when `snapshot` is omitted (Daytona's default snapshot).
pub const DEFAULT_SNAPSHOT: &str = "daytonaio/sandbox:0.4.3";
/// Snapshots every organisation has.
pub const SNAPSHOTS: [&str; 4] = [DEFAULT_SNAPSHOT, "daytona-small", "daytona-medium", "daytona-large"];
/// Domain of preview URLs (`https://{port}-{id}.{domain}`).
pub const PROXY_DOMAIN: &str = "proxy.daytona.works";

/// A transition under way: `via` for the next `polls - 1` GETs, then `to`.
#[derive(Debug, Clone)]
pub struct Settle {
    pub via: String,
    pub to: String,
    pub polls: u32,
}

#[derive(Debug)]
pub struct SimSandbox {
    pub id: String,
    pub snapshot: String,
    pub state: String,
    /// Set while a transition is pending (Daytona's `pending`): other transitions get 409.
    pub settle: Option<Settle>,
    pub class: String,
    pub created_at: DateTime<Utc>,
    pub auto_stop_interval: u64,
    /// Minutes after a stop until Daytona deletes it: negative never, 0 at once (api.json
    /// `CreateSandbox.autoDeleteInterval`; "disabled by default").
    pub auto_delete_interval: i64,
    /// When the TTL destroys it.
    pub auto_destroy_at: Option<DateTime<Utc>>,
    pub cpu: u64,
    pub memory: u64,
    pub disk: u64,
    pub network_block_all: bool,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub root: tempfile::TempDir,
    /// The daemon's shell sessions (gone when the sandbox stops).
    pub sessions: session::Sessions,
}

impl SimSandbox {
    /// Starts a transition: the answer shows the wish, later GETs `via`, then `to`.
    fn begin(&mut self, via: &str, to: &str, polls: u32) {
        self.settle = Some(Settle { via: via.into(), to: to.into(), polls: polls + 1 });
    }
}

/// Which generation of `GET /sandbox` to answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListShape {
    /// Current: `{items, nextCursor}` with `?cursor=` paging.
    #[default]
    Cursor,
    /// Oldest: a bare array.
    Array,
    /// Deprecated `/sandbox/paginated` form: `{items, total, page, totalPages}` with `?page=`.
    Paged,
}

#[derive(Default)]
pub struct State {
    pub sandboxes: Mutex<BTreeMap<String, SimSandbox>>,
    /// Snapshots taken from sandboxes: name → copy of the sandbox directory.
    pub snapshots: Mutex<BTreeMap<String, tempfile::TempDir>>,
    counter: AtomicU64,
    /// `http://127.0.0.1:<port>`, known once bound.
    base: Mutex<String>,
    /// Page size of `GET /sandbox` (to exercise paging).
    pub page_size: Mutex<Option<usize>>,
    pub list_shape: Mutex<ListShape>,
    /// Leave `toolboxProxyUrl` out of Sandbox objects (servers before it existed).
    pub omit_toolbox_proxy_url: AtomicBool,
    /// Answer 404 on `GET /sandbox/{id}/toolbox-proxy-url` (servers older still).
    pub no_toolbox_proxy_url_route: AtomicBool,
    /// Answer 404 on `POST /sandbox/{id}/ttl/{m}` (v0.190.0 and older servers).
    pub no_ttl_route: AtomicBool,
    /// Answer 404 on the daemon's `files/upload-v2` (daemons before it, v0.190.0 included).
    pub no_upload_v2: AtomicBool,
    /// New sandboxes stay `starting` for this many `GET /sandbox/{id}` calls.
    pub start_polls: AtomicU32,
    /// GETs a lifecycle transition shows its intermediate state.
    pub transition_polls: AtomicU32,
    /// New sandboxes are `linux-vm` (they pause and fork) instead of `container`.
    pub vm_sandboxes: AtomicBool,
}

pub struct DaytonaSim {
    pub sim: Sim,
    pub state: Arc<State>,
    pub api_key: String,
}

impl DaytonaSim {
    /// Serves on `port` (0 = any), accepting `Authorization: Bearer <api_key>`.
    pub async fn start(port: u16, api_key: &str) -> std::io::Result<DaytonaSim> {
        let state: Arc<State> = Arc::new(State { transition_polls: AtomicU32::new(1), ..State::default() });
        let (st, key) = (state.clone(), api_key.to_string());
        let handler: Handler = Arc::new(move |rec| {
            let (st, key) = (st.clone(), key.clone());
            Box::pin(async move { route(&st, &key, rec).await })
        });
        let sim = Sim::serve_checked(port, handler, Some(&CONTRACT)).await?;
        *state.base.lock().unwrap() = sim.base_url();
        Ok(DaytonaSim { sim, state, api_key: api_key.to_string() })
    }

    /// The API base (`api_base` of the plugin's policy).
    pub fn api_base(&self) -> String {
        format!("{}/api", self.sim.base_url())
    }

    /// Policy lines pointing the daytona plugin at this simulator. The credential's hosts
    /// default to the plugin's own plus the `api_base` authority, which also serves the
    /// toolbox proxy, so both get the bearer key (`DAYTONA_API_KEY`, granted here).
    pub fn policy_toml(&self) -> String {
        format!(
            "api_base = \"{}\"\nallowed_hosts = [\"{}\"]\n[credentials]\napi-key = \"DAYTONA_API_KEY\"\n",
            self.api_base(),
            self.sim.authority()
        )
    }

    /// Sandboxes that hold compute: neither destroyed nor halted.
    pub fn live_count(&self) -> usize {
        self.state.sandboxes.lock().unwrap().values().filter(|s| is_live(&s.state)).count()
    }

    pub fn root_of(&self, id: &str) -> Option<PathBuf> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.root.path().to_path_buf())
    }

    pub fn state_of(&self, id: &str) -> Option<String> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.state.clone())
    }

    /// Runs `f` on the sandbox's record (to read or change what the upstream holds).
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut SimSandbox) -> T) -> Option<T> {
        self.state.sandboxes.lock().unwrap().get_mut(id).map(f)
    }

    /// Forces a sandbox into `state` (e.g. `stopped`, as Daytona's auto-stop would).
    pub fn set_state(&self, id: &str, state: &str) {
        self.with(id, |s| {
            s.state = state.to_string();
            s.settle = None;
        });
    }

    /// Daytona's auto-stop of an idle sandbox: stopped, and deleted at once when its
    /// auto-delete interval is 0 (a longer interval is not simulated: it stays stopped).
    pub fn idle_stop(&self, id: &str) {
        self.with(id, |s| {
            s.state = if s.auto_delete_interval == 0 { "destroyed" } else { "stopped" }.to_string();
            s.settle = None;
        });
    }

    /// Creates a sandbox directly upstream, as another client of the same account would.
    pub fn create_out_of_band(&self, snapshot: &str) -> String {
        let body = if snapshot.is_empty() { json!({}) } else { json!({ "snapshot": snapshot }) };
        match create(&self.state, &body) {
            Ok(v) => v["id"].as_str().unwrap_or_default().to_string(),
            Err(_) => String::new(),
        }
    }
}

/// The API is checked against `api.json` under the API's global prefix `/api` (the
/// spec's server is the bare `localhost:3000` it was generated on), the toolbox against
/// `toolbox.json` under the proxy's `/toolbox/{sandboxId}`.
static CONTRACT: Contract = Contract { locate, reject };

fn locate(rec: &Recorded) -> Result<(&'static spec::Spec, String), String> {
    if let Some(rest) = rec.path.strip_prefix("/api/").map(|r| format!("/{r}")) {
        return Ok((spec::daytona_api(), rest));
    }
    let segs: Vec<&str> = rec.path.trim_start_matches('/').splitn(3, '/').collect();
    match segs.as_slice() {
        ["toolbox", _id, rest] => Ok((spec::daytona_toolbox(), format!("/{rest}"))),
        _ => Err("neither under the API's /api nor the toolbox proxy's /toolbox/{sandboxId}".into()),
    }
}

fn reject(rec: &Recorded, status: u16, message: &str) -> Reply {
    if rec.path.starts_with("/toolbox/") {
        toolbox::daemon_error(status, message, rec)
    } else {
        error(status, message)
    }
}

fn is_live(state: &str) -> bool {
    !matches!(state, "destroyed" | "destroying" | "stopped" | "paused" | "archived" | "error" | "build_failed")
}

/// NestJS's error body.
fn error(status: u16, message: impl Into<Value>) -> Reply {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    };
    json(status, &json!({ "statusCode": status, "message": message.into(), "error": reason }))
}

fn not_found(id: &str) -> Reply {
    error(404, format!("Sandbox with ID or name {id} not found"))
}

fn conflict() -> Reply {
    error(409, "Sandbox state change in progress")
}

fn iso(t: DateTime<Utc>) -> String {
    // JS `Date.toISOString()`, as the API serialises dates.
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn route(st: &State, key: &str, rec: Recorded) -> Reply {
    let reply = serve(st, key, rec).await;
    // Sandbox objects without `toolboxProxyUrl` (required by api.json) model older servers.
    if st.omit_toolbox_proxy_url.load(Ordering::Relaxed) {
        return exempt::mark(reply, "daytona:no-toolbox-proxy-url");
    }
    reply
}

async fn serve(st: &State, key: &str, rec: Recorded) -> Reply {
    if rec.header("authorization") != Some(format!("Bearer {key}").as_str()) {
        return error(401, "Unauthorized");
    }
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    let m = rec.method.as_str();
    match (m, segs.as_slice()) {
        ("POST", ["api", "sandbox"]) => match serde_json::from_slice::<Value>(&rec.body) {
            Ok(body) => create(st, &body).map(|v| json(200, &v)).unwrap_or_else(|e| e),
            Err(e) => error(400, format!("Unexpected token in JSON: {e}")),
        },
        ("GET", ["api", "sandbox"]) => list(st, &rec),
        ("GET", ["api", "sandbox", id]) => get(st, id),
        ("DELETE", ["api", "sandbox", id]) => delete(st, id),
        ("POST", ["api", "sandbox", id, "snapshot"]) => snapshot(st, id, &rec),
        ("POST", ["api", "sandbox", _, "ttl", _]) if st.no_ttl_route.load(Ordering::Relaxed) => {
            error(404, format!("Cannot POST {}", rec.path))
        }
        ("POST" | "PUT", ["api", "sandbox", id, action @ ..]) => lifecycle::route(st, m, id, action, &rec),
        ("GET", ["api", "sandbox", id, "toolbox-proxy-url"]) if !st.no_toolbox_proxy_url_route.load(Ordering::Relaxed) => {
            match live_sandbox(st, id) {
                Ok(_) => json(200, &json!({ "url": format!("{}/toolbox", st.base.lock().unwrap()) })),
                Err(r) => r,
            }
        }
        ("GET", ["api", "sandbox", id, "ports", port, "preview-url"]) => preview_url(st, id, port),
        (_, ["api", "toolbox", id, "toolbox", rest @ ..]) => toolbox::route(st, id, rest, &rec).await,
        (_, ["toolbox", id, rest @ ..]) => toolbox::route(st, id, rest, &rec).await,
        // Express's answer for a route the server does not have.
        _ => error(404, format!("Cannot {m} {}", rec.path)),
    }
}

fn string_map(body: &Value, key: &str) -> Result<BTreeMap<String, String>, Reply> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| error(400, json!([format!("{key} must be an object of strings")])))
            })
            .collect(),
        Some(_) => Err(error(400, json!([format!("{key} must be an object")]))),
    }
}

/// An optional non-negative integer field of `CreateSandbox` (class-validator's messages).
fn int_field(body: &Value, key: &str, default: u64) -> Result<u64, Reply> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| error(400, json!([format!("{key} must be an integer number"), format!("{key} must not be less than 0")]))),
    }
}

fn create(st: &State, body: &Value) -> Result<Value, Reply> {
    let snapshot = match body.get("snapshot") {
        None | Some(Value::Null) => DEFAULT_SNAPSHOT.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(error(400, json!(["snapshot must be a string"]))),
    };
    let auto_stop = int_field(body, "autoStopInterval", 15)?;
    let (cpu, memory, disk) = (int_field(body, "cpu", 1)?, int_field(body, "memory", 1)?, int_field(body, "disk", 3)?);
    let network_block_all = match body.get("networkBlockAll") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(error(400, json!(["networkBlockAll must be a boolean value"]))),
    };
    let env = string_map(body, "env")?;
    let labels = string_map(body, "labels")?;
    let root =
        tempfile::Builder::new().prefix("daytona-sim-").tempdir().map_err(|e| error(500, format!("cannot create the sandbox: {e}")))?;
    if !SNAPSHOTS.contains(&snapshot.as_str()) {
        let snaps = st.snapshots.lock().unwrap();
        let Some(dir) = snaps.get(&snapshot) else {
            return Err(error(400, format!("Snapshot {snapshot} not found. Did you add it through the Daytona Dashboard?")));
        };
        crate::files::copy_tree(dir.path(), root.path()).map_err(|e| error(500, format!("cannot restore snapshot {snapshot}: {e}")))?;
    }
    let polls = st.start_polls.load(Ordering::Relaxed);
    let mut sbx = SimSandbox {
        id: new_id(st),
        snapshot,
        state: if polls > 0 { "starting".into() } else { "started".into() },
        settle: None,
        class: if st.vm_sandboxes.load(Ordering::Relaxed) { "linux-vm".into() } else { "container".into() },
        created_at: Utc::now(),
        auto_stop_interval: auto_stop,
        auto_delete_interval: match body.get("autoDeleteInterval") {
            None | Some(Value::Null) => -1,
            Some(v) => v.as_i64().ok_or_else(|| error(400, json!(["autoDeleteInterval must be an integer number"])))?,
        },
        auto_destroy_at: None,
        cpu,
        memory,
        disk,
        network_block_all,
        env,
        labels,
        root,
        sessions: session::Sessions::default(),
    };
    if polls > 0 {
        sbx.settle = Some(Settle { via: "starting".into(), to: "started".into(), polls });
    }
    let v = sandbox_json(st, &sbx, true);
    st.sandboxes.lock().unwrap().insert(sbx.id.clone(), sbx);
    Ok(v)
}

fn new_id(st: &State) -> String {
    let n = st.counter.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", nanos as u32, (nanos >> 32) as u16, n & 0xfff, (nanos >> 48) & 0xfff, n)
}

/// The `Sandbox` DTO; `full = false` is the `SandboxListItem` (no env, volumes, buildInfo).
fn sandbox_json(st: &State, s: &SimSandbox, full: bool) -> Value {
    let desired = match (&s.settle, s.state.as_str()) {
        (Some(t), _) => t.to.as_str(),
        (None, "destroyed" | "stopped" | "paused" | "archived") => s.state.as_str(),
        _ => "started",
    };
    let mut v = json!({
        "id": s.id, "organizationId": "b4bd7b3b-7d3c-4c4e-9a36-5a2f0c9a6d1e", "name": s.id,
        "snapshot": s.snapshot, "user": "daytona", "labels": s.labels, "public": false,
        "networkBlockAll": s.network_block_all, "target": "us",
        "cpu": s.cpu, "gpu": 0, "memory": s.memory, "disk": s.disk, "sandboxClass": s.class,
        "state": s.state, "desiredState": desired, "backupState": "None",
        "autoStopInterval": s.auto_stop_interval, "autoPauseInterval": 0, "autoArchiveInterval": 10080, "autoDeleteInterval": s.auto_delete_interval,
        "createdAt": iso(s.created_at), "updatedAt": iso(Utc::now()), "daemonVersion": "0.4.3",
    });
    if let Some(t) = s.auto_destroy_at {
        v["autoDestroyAt"] = json!(iso(t));
    }
    // api.json declares no field nullable: what a sandbox does not have (errorReason,
    // networkAllowList, backupCreatedAt, buildInfo) is left out rather than null.
    if full {
        v["env"] = json!(s.env);
        v["volumes"] = json!([]);
    }
    if !st.omit_toolbox_proxy_url.load(Ordering::Relaxed) {
        v["toolboxProxyUrl"] = json!(format!("{}/toolbox", st.base.lock().unwrap()));
    }
    v
}

/// A sandbox past its TTL is destroyed, whatever its state.
fn expire(s: &mut SimSandbox) {
    if s.auto_destroy_at.is_some_and(|t| t <= Utc::now()) && s.state != "destroyed" {
        destroy(s);
    }
}

fn destroy(s: &mut SimSandbox) {
    s.sessions.kill_all();
    s.state = "destroyed".into();
    s.settle = None;
    let _ = std::fs::remove_dir_all(s.root.path()).and_then(|_| std::fs::create_dir(s.root.path()));
}

/// A sandbox that is not destroyed, or the 404 the API answers.
fn live_sandbox(st: &State, id: &str) -> Result<(), Reply> {
    let mut boxes = st.sandboxes.lock().unwrap();
    match boxes.get_mut(id) {
        Some(s) => {
            expire(s);
            if s.state == "destroyed" {
                return Err(not_found(id));
            }
            Ok(())
        }
        None => Err(not_found(id)),
    }
}

fn get(st: &State, id: &str) -> Reply {
    let mut boxes = st.sandboxes.lock().unwrap();
    let Some(s) = boxes.get_mut(id) else { return not_found(id) };
    expire(s);
    if s.state == "destroyed" {
        return not_found(id);
    }
    if let Some(t) = &mut s.settle {
        t.polls = t.polls.saturating_sub(1);
        s.state = if t.polls == 0 { t.to.clone() } else { t.via.clone() };
        if t.polls == 0 {
            s.settle = None;
        }
    }
    json(200, &sandbox_json(st, s, true))
}

/// `DELETE /sandbox/{id}`: answers the Sandbox in `destroying`; it stays listed as
/// `destroyed` only with `includeErroredDeleted=true`, and is 404 everywhere else.
fn delete(st: &State, id: &str) -> Reply {
    let mut boxes = st.sandboxes.lock().unwrap();
    match boxes.get_mut(id) {
        Some(s) if s.state != "destroyed" => {
            s.state = "destroying".into();
            let v = sandbox_json(st, s, true);
            destroy(s);
            json(200, &v)
        }
        _ => not_found(id),
    }
}

fn list(st: &State, rec: &Recorded) -> Reply {
    let include_deleted = rec.query_param("includeErroredDeleted").as_deref() == Some("true");
    let mut boxes = st.sandboxes.lock().unwrap();
    boxes.values_mut().for_each(expire);
    // Newest first, as the API orders them.
    let mut rows: Vec<&SimSandbox> = boxes.values().filter(|s| include_deleted || s.state != "destroyed").collect();
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let items: Vec<Value> = rows.iter().map(|s| sandbox_json(st, s, false)).collect();
    let limit = rec.query_param("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(100).clamp(1, 100);
    let limit = st.page_size.lock().unwrap().map_or(limit, |p| p.min(limit));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match *st.list_shape.lock().unwrap() {
        ListShape::Array => exempt::mark(json(200, &Value::Array(items)), "daytona:list-shape"),
        ListShape::Cursor => {
            let start = match rec.query_param("cursor") {
                None => 0,
                Some(c) => {
                    match b64.decode(&c).ok().and_then(|b| String::from_utf8(b).ok()).and_then(|s| s.strip_prefix("offset:")?.parse().ok())
                    {
                        Some(n) => n,
                        None => return error(400, "Invalid cursor"),
                    }
                }
            };
            let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
            let next = (start + limit < items.len()).then(|| b64.encode(format!("offset:{}", start + limit)));
            json(200, &json!({ "items": page, "nextCursor": next }))
        }
        ListShape::Paged => {
            let page = rec.query_param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
            let total_pages = items.len().div_ceil(limit).max(1);
            let rows: Vec<Value> = items.iter().skip((page - 1) * limit).take(limit).cloned().collect();
            exempt::mark(
                json(200, &json!({ "items": rows, "total": items.len(), "page": page, "totalPages": total_pages })),
                "daytona:list-shape",
            )
        }
    }
}

/// `POST /sandbox/{id}/snapshot {name}`: copies the sandbox directory under `name`; the
/// sandbox reports `snapshotting` until the next `GET`.
fn snapshot(st: &State, id: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    let Some(name) = body.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty()) else {
        return error(400, json!(["name must be a string"]));
    };
    let mut boxes = st.sandboxes.lock().unwrap();
    let Some(s) = boxes.get_mut(id).filter(|s| s.state != "destroyed") else { return not_found(id) };
    if s.state != "started" && s.state != "stopped" {
        return error(400, format!("Sandbox must be in started or stopped state to create a snapshot (it is {})", s.state));
    }
    let mut snaps = st.snapshots.lock().unwrap();
    if SNAPSHOTS.contains(&name) || snaps.contains_key(name) {
        return error(409, format!("Snapshot with name {name} already exists"));
    }
    let copy = match tempfile::Builder::new().prefix("daytona-sim-snap-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, format!("cannot create the snapshot: {e}")),
    };
    if let Err(e) = crate::files::copy_tree(s.root.path(), copy.path()) {
        return error(500, format!("cannot create the snapshot: {e}"));
    }
    snaps.insert(name.to_string(), copy);
    if s.state == "started" {
        s.state = "snapshotting".into();
        s.settle = Some(Settle { via: "snapshotting".into(), to: "started".into(), polls: 1 });
    }
    json(200, &sandbox_json(st, s, true))
}

/// `PortPreviewUrl {sandboxId, url, token}`; the token is what a private preview checks.
fn preview_url(st: &State, id: &str, port: &str) -> Reply {
    if let Err(r) = live_sandbox(st, id) {
        return r;
    }
    let Some(port) = port.parse::<u16>().ok().filter(|p| *p >= 1) else {
        return error(400, "Invalid port");
    };
    json(200, &json!({ "sandboxId": id, "url": format!("https://{port}-{id}.{PROXY_DOMAIN}"), "token": preview_token(id) }))
}

/// The preview token of a sandbox (stable per sandbox, as Daytona's `authToken`).
pub fn preview_token(id: &str) -> String {
    id.bytes().rev().take(16).map(|b| format!("{:x}", b % 16)).collect()
}
