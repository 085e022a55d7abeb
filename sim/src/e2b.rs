//! An E2B-shaped simulator: the control plane (`/sandboxes`, `/v2/sandboxes`, pause,
//! connect, timeout, fork) here, and each sandbox's `envd` ([`envd`]: Connect
//! `process.Process/*`, `/files`) on a second loopback port. envd requests are routed by
//! the `E2b-Sandbox-Id` header, as on E2B's shared `sandbox.{domain}` host. Shapes and
//! statuses follow e2b-dev/E2B `spec/openapi.yml` and `spec/envd` (errors `{code,
//! message}`, proto3 JSON that omits zero values) and the API handlers of e2b-dev/infra
//! (`sandbox_connect.go`, `sandbox_timeout.go`, `sandbox_fork.go`, `sandbox_pause.go`).
//! Both servers check every request and answer against the vendored copies of those
//! documents (`sim/specs/e2b/`, [`crate::spec`]).
//!
//! Sandboxes are real: each gets a temporary directory as its home and default working
//! directory, commands run as local processes (via the plugin's `/bin/bash`), relative
//! file paths resolve inside that directory. A paused sandbox keeps its directory, and its
//! envd answers what E2B's edge proxy answers for a sandbox that is not running (502).
//! Lifetimes are kept (`endAt`) but never enforced: a test must not lose a sandbox to a
//! slow machine. It binds 127.0.0.1 only; it is a development and test double, not an
//! isolation boundary.

mod envd;
mod process;
pub mod snapshots;

use crate::server::{empty, json, Handler, Recorded, Reply, Sim};
use crate::spec::{self, contract::Contract};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use envd::multipart_file_part;

/// The templates the simulator knows (alias → template id).
pub const TEMPLATES: [(&str, &str); 2] = [("base", "rki5dems9wqfm4r03t7g"), ("code-interpreter-v1", "nlhz8vlwyupq845jsdg9")];

/// `NewSandbox.timeout`'s default in the spec.
const DEFAULT_TIMEOUT_SECS: i64 = 15;

#[derive(Debug)]
pub struct SimSandbox {
    pub id: String,
    pub template_id: String,
    pub alias: String,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub paused: bool,
    pub token: Option<String>,
    /// `allow_internet_access` as created (`None`: not set).
    pub allow_internet_access: Option<bool>,
    pub root: tempfile::TempDir,
}

#[derive(Default)]
pub struct State {
    pub sandboxes: Mutex<BTreeMap<String, SimSandbox>>,
    counter: AtomicU64,
    /// Page size of `/v2/sandboxes` (to exercise `X-Next-Token`).
    pub page_size: Mutex<Option<usize>>,
    /// Errors (`code`, `message`) the next forks report in their result entries instead
    /// of starting, one per fork: E2B reports each fork's outcome on its own.
    pub fork_errors: Mutex<VecDeque<(u16, String)>>,
    /// Snapshot templates by snapshot id (`snapshots.rs`).
    pub snapshots: Mutex<BTreeMap<String, snapshots::Snapshot>>,
    snapshot_counter: AtomicU64,
    processes: process::Table,
}

pub struct E2bSim {
    /// The control plane (`api.e2b.app`).
    pub api: Sim,
    /// Every sandbox's envd, routed by `E2b-Sandbox-Id` (E2B's `sandbox.{domain}` host).
    pub envd: Sim,
    pub state: Arc<State>,
    pub api_key: String,
}

impl E2bSim {
    /// Starts the control plane on `port` (0 = any) accepting `api_key` in `X-API-Key`,
    /// and envd on `port + 1` (or any free port when `port` is 0).
    pub async fn start(port: u16, api_key: &str) -> std::io::Result<E2bSim> {
        let state: Arc<State> = Arc::default();
        let (st, key) = (state.clone(), api_key.to_string());
        let api: Handler = Arc::new(move |rec| {
            let (st, key) = (st.clone(), key.clone());
            Box::pin(async move { route(&st, &key, rec) })
        });
        let st = state.clone();
        let envd_handler: Handler = Arc::new(move |rec| {
            let st = st.clone();
            Box::pin(async move { envd::serve(&st, rec).await })
        });
        let api = Sim::serve_checked(port, api, Some(&API_CONTRACT)).await?;
        let envd = Sim::serve_checked(if port == 0 { 0 } else { port + 1 }, envd_handler, Some(&envd::CONTRACT)).await?;
        Ok(E2bSim { api, envd, state, api_key: api_key.to_string() })
    }

    /// Policy lines pointing the e2b plugin at this simulator, granting it `E2B_API_KEY`.
    pub fn policy_toml(&self) -> String {
        format!(
            "api_base = \"{}\"\nallowed_hosts = [\"{}\", \"{}\"]\n[credentials]\napi-key = \"E2B_API_KEY\"\n[config]\nenvd-url = \"{}\"\n",
            self.api.base_url(),
            self.api.authority(),
            self.envd.authority(),
            self.envd.base_url()
        )
    }

    /// Sandboxes running (paused ones excluded).
    pub fn live_count(&self) -> usize {
        self.state.sandboxes.lock().unwrap().values().filter(|s| !s.paused).count()
    }

    pub fn root_of(&self, id: &str) -> Option<PathBuf> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.root.path().to_path_buf())
    }

    /// Creates a sandbox directly upstream, as another client of the same account would.
    pub fn create_out_of_band(&self, template: &str) -> String {
        let rec = Recorded {
            method: "POST".into(),
            path: "/sandboxes".into(),
            query: None,
            headers: vec![],
            body: serde_json::to_vec(&json!({"templateID": template})).unwrap(),
        };
        let _ = create(&self.state, &rec);
        let boxes = self.state.sandboxes.lock().unwrap();
        boxes.values().max_by_key(|s| (s.started_at, s.id.clone())).map(|s| s.id.clone()).unwrap_or_default()
    }
}

/// The control plane is checked against `spec/openapi.yml` (paths from the server root).
static API_CONTRACT: Contract =
    Contract { locate: |rec| Ok((spec::e2b_api(), rec.path.clone())), reject: |_, status, message| error(status, message) };

fn error(status: u16, message: &str) -> Reply {
    json(status, &json!({ "code": status, "message": message }))
}

fn not_found(id: &str) -> Reply {
    error(404, &format!("sandbox \"{id}\" doesn't exist or you don't have access to it"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn seconds(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn route(st: &State, key: &str, rec: Recorded) -> Reply {
    if rec.header("x-api-key") != Some(key) {
        return error(401, "Invalid API key, it must start with 'e2b_'");
    }
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    match (rec.method.as_str(), segs.as_slice()) {
        // `/v2/sandboxes` is what SDK 2.63 calls (`NewSandboxV2`); `/sandboxes` is deprecated.
        ("POST", ["sandboxes"] | ["v2", "sandboxes"]) => create(st, &rec),
        ("GET", ["sandboxes"]) => list(st, &rec, false),
        ("GET", ["v2", "sandboxes"]) => list(st, &rec, true),
        ("GET", ["sandboxes", id]) => match st.sandboxes.lock().unwrap().get(*id) {
            Some(s) => json(200, &detail(s)),
            None => not_found(id),
        },
        ("DELETE", ["sandboxes", id]) => match st.sandboxes.lock().unwrap().remove(*id) {
            Some(_) => empty(204),
            None => not_found(id),
        },
        ("POST", ["sandboxes", id, "pause"]) => pause(st, id),
        ("POST", ["sandboxes", id, "connect"]) => connect(st, id, &rec),
        ("POST", ["sandboxes", id, "timeout"]) => set_timeout(st, id, &rec),
        ("POST", ["sandboxes", id, "fork"]) => fork(st, id, &rec),
        ("POST", ["sandboxes", id, "snapshots"]) => snapshots::create(st, id, &rec),
        _ => error(404, &format!("no route for {} {}", rec.method, rec.path)),
    }
}

/// A request's `timeout` (int32 ≥ 0 seconds): `Ok(None)` when absent, `Err` with the
/// 400 when it is not a valid one.
fn timeout_field(body: &Value) -> Result<Option<i64>, Box<Reply>> {
    match body.get("timeout") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64().filter(|t| (0..=i64::from(i32::MAX)).contains(t)) {
            Some(t) => Ok(Some(t)),
            None => Err(Box::new(error(400, &format!("Error when parsing request: timeout {v} is not a valid int32 >= 0")))),
        },
    }
}

fn string_map(body: &Value, key: &str) -> BTreeMap<String, String> {
    body.get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn new_id(st: &State) -> String {
    let n = st.counter.fetch_add(1, Ordering::Relaxed);
    format!("i{:x}{:06x}", Utc::now().timestamp_subsec_nanos(), n)
}

fn create(st: &State, rec: &Recorded) -> Reply {
    let body = rec.json();
    let Some(template) = body.get("templateID").and_then(Value::as_str) else {
        return error(400, "request body has an error: doesn't match schema: property \"templateID\" is missing");
    };
    let from_snapshot = st.snapshots.lock().unwrap().get(template).map(|s| s.files.path().to_path_buf());
    let (alias, template_id) = match TEMPLATES.iter().find(|(a, t)| *a == template || *t == template) {
        Some((alias, id)) => (alias.to_string(), id.to_string()),
        None if from_snapshot.is_some() => (String::new(), template.to_string()),
        None => return error(404, &format!("template '{template}' not found")),
    };
    let timeout = match timeout_field(&body) {
        Ok(t) => t.unwrap_or(DEFAULT_TIMEOUT_SECS),
        Err(reply) => return *reply,
    };
    let root = match tempfile::Builder::new().prefix("e2b-sim-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, &format!("cannot create the sandbox: {e}")),
    };
    if let Some(files) = &from_snapshot {
        if let Err(e) = crate::files::copy_tree(files, root.path()) {
            return error(500, &format!("cannot start from snapshot '{template}': {e}"));
        }
    }
    let id = new_id(st);
    // v2 has no `secure`: "All system communication with the sandbox is always secured"
    // (SDK 2.63 `NewSandboxV2`); v1 defaults it to false.
    let secure = rec.path == "/v2/sandboxes" || body.get("secure").and_then(Value::as_bool).unwrap_or(false);
    let now = Utc::now();
    let sbx = SimSandbox {
        id: id.clone(),
        template_id,
        alias,
        started_at: now,
        ends_at: now + seconds(timeout),
        metadata: string_map(&body, "metadata"),
        env_vars: string_map(&body, "envVars"),
        paused: false,
        token: secure.then(|| format!("tok-{id}")),
        allow_internet_access: body.get("allow_internet_access").and_then(Value::as_bool),
        root,
    };
    let answer = created(&sbx);
    st.sandboxes.lock().unwrap().insert(id, sbx);
    json(201, &answer)
}

/// The spec's `Sandbox` (create, connect and fork answers). `envdAccessToken` is not
/// nullable: a sandbox without one (not secure) leaves it out.
fn created(s: &SimSandbox) -> Value {
    let mut v = json!({
        "sandboxID": s.id, "templateID": s.template_id, "alias": s.alias, "clientID": "6532622b",
        "envdVersion": "0.2.0", "domain": null,
    });
    if let Some(t) = &s.token {
        v["envdAccessToken"] = json!(t);
    }
    v
}

/// The spec's `ListedSandbox`.
fn listed(s: &SimSandbox) -> Value {
    json!({
        "templateID": s.template_id, "alias": s.alias, "sandboxID": s.id, "clientID": "6532622b",
        "startedAt": rfc3339(s.started_at), "endAt": rfc3339(s.ends_at),
        "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 512, "metadata": s.metadata,
        "state": if s.paused { "paused" } else { "running" }, "envdVersion": "0.2.0",
    })
}

/// The spec's `SandboxDetail`.
fn detail(s: &SimSandbox) -> Value {
    let mut v = listed(s);
    if let Some(t) = &s.token {
        v["envdAccessToken"] = json!(t);
    }
    v["domain"] = Value::Null;
    v["allowInternetAccess"] = json!(s.allow_internet_access);
    v
}

fn list(st: &State, rec: &Recorded, v2: bool) -> Reply {
    let states: Vec<String> = match (v2, rec.query_param("state")) {
        (true, Some(s)) => s.split(',').map(str::to_string).collect(),
        (true, None) => vec!["running".into(), "paused".into()],
        (false, _) => vec!["running".into()],
    };
    let rows: Vec<Value> = st
        .sandboxes
        .lock()
        .unwrap()
        .values()
        .filter(|s| states.iter().any(|x| x == if s.paused { "paused" } else { "running" }))
        .map(listed)
        .collect();
    if !v2 {
        return json(200, &Value::Array(rows));
    }
    let limit = rec.query_param("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(100).clamp(1, 100);
    let limit = st.page_size.lock().unwrap().map_or(limit, |p| p.min(limit));
    let start = rec.query_param("nextToken").and_then(|t| t.strip_prefix("page-").and_then(|n| n.parse::<usize>().ok())).unwrap_or(0);
    let page: Vec<Value> = rows.iter().skip(start).take(limit).cloned().collect();
    let mut reply = json(200, &Value::Array(page));
    if start + limit < rows.len() {
        reply.headers_mut().insert("x-next-token", format!("page-{}", start + limit).parse().unwrap());
    }
    reply
}

/// 204 paused; 409 when it is paused already (`pauseHandleNotRunningSandbox`).
fn pause(st: &State, id: &str) -> Reply {
    match st.sandboxes.lock().unwrap().get_mut(id) {
        Some(s) if s.paused => error(409, &format!("Error pausing sandbox - sandbox '{id}' is already paused")),
        Some(s) => {
            s.paused = true;
            empty(204)
        }
        None => not_found(id),
    }
}

/// `timeout` is required. A running sandbox answers 200 and its lifetime is only ever
/// extended; a paused one is resumed with `timeout` from now and answers 201.
fn connect(st: &State, id: &str, rec: &Recorded) -> Reply {
    let timeout = match timeout_field(&rec.json()) {
        Ok(Some(t)) => t,
        Ok(None) => return error(400, "Error when parsing request: property \"timeout\" is missing"),
        Err(reply) => return *reply,
    };
    let mut boxes = st.sandboxes.lock().unwrap();
    let Some(s) = boxes.get_mut(id) else { return not_found(id) };
    let until = Utc::now() + seconds(timeout);
    if s.paused {
        s.paused = false;
        s.ends_at = until;
        return json(201, &created(s));
    }
    s.ends_at = s.ends_at.max(until);
    json(200, &created(s))
}

/// 204 with `endAt` = now + `timeout`. Only running sandboxes have a lifetime to set:
/// a paused one is not in the orchestrator's store, which answers 404.
fn set_timeout(st: &State, id: &str, rec: &Recorded) -> Reply {
    let timeout = match timeout_field(&rec.json()) {
        Ok(t) => t.unwrap_or(0),
        Err(reply) => return *reply,
    };
    match st.sandboxes.lock().unwrap().get_mut(id) {
        Some(s) if !s.paused => {
            s.ends_at = Utc::now() + seconds(timeout);
            empty(204)
        }
        _ => not_found(id),
    }
}

/// 201 with one result per fork (`{sandbox}` or `{error}`); each fork is a copy of the
/// sandbox's files, env and metadata. A paused sandbox is 409 ("resume it first").
fn fork(st: &State, id: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    let timeout = match timeout_field(&body) {
        Ok(t) => t.unwrap_or(DEFAULT_TIMEOUT_SECS),
        Err(reply) => return *reply,
    };
    let count = body.get("count").and_then(Value::as_i64).unwrap_or(1);
    if !(1..=100).contains(&count) {
        return error(400, &format!("Count must be between 1 and 100 (got {count})"));
    }
    let mut boxes = st.sandboxes.lock().unwrap();
    let Some(parent) = boxes.get(id) else { return not_found(id) };
    if parent.paused {
        return error(409, &format!("Sandbox '{id}' is paused and cannot be forked; resume it first"));
    }
    let mut results = Vec::new();
    let mut forks = Vec::new();
    for _ in 0..count {
        if let Some((code, message)) = st.fork_errors.lock().unwrap().pop_front() {
            results.push(json!({ "error": { "code": code, "message": message } }));
            continue;
        }
        match copy_of(st, parent, timeout) {
            Ok(child) => {
                results.push(json!({ "sandbox": created(&child) }));
                forks.push(child);
            }
            Err(e) => results.push(json!({ "error": { "code": 500, "message": format!("Error forking sandbox: {e}") } })),
        }
    }
    for child in forks {
        boxes.insert(child.id.clone(), child);
    }
    json(201, &Value::Array(results))
}

fn copy_of(st: &State, parent: &SimSandbox, timeout: i64) -> std::io::Result<SimSandbox> {
    let root = tempfile::Builder::new().prefix("e2b-sim-").tempdir()?;
    crate::files::copy_tree(parent.root.path(), root.path())?;
    let id = new_id(st);
    let now = Utc::now();
    Ok(SimSandbox {
        token: parent.token.as_ref().map(|_| format!("tok-{id}")),
        id,
        template_id: parent.template_id.clone(),
        alias: parent.alias.clone(),
        started_at: now,
        ends_at: now + seconds(timeout),
        metadata: parent.metadata.clone(),
        env_vars: parent.env_vars.clone(),
        paused: false,
        allow_internet_access: parent.allow_internet_access,
        root,
    })
}
