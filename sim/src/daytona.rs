//! A Daytona-shaped simulator: the REST API under `/api` and the toolbox proxy under
//! `/toolbox`, on one loopback port, both requiring `Authorization: Bearer <key>`.
//!
//! Shapes follow daytonaio/daytona: `apps/api/src/sandbox/dto/{create-sandbox,sandbox,
//! list-sandboxes-response,port-preview-url}.dto.ts` and
//! `controllers/{sandbox,toolbox}.controller.ts` for the API (NestJS errors
//! `{statusCode, message, error}`, `Sandbox with ID or name X not found`, `Snapshot X not
//! found. Did you add it through the Daytona Dashboard?`), and the daemon's
//! `pkg/toolbox/process/execute/execute.go` (`parseCommand`: split on spaces honouring
//! quotes, no shell; stdout and stderr in one buffer; 408 at the timeout) and
//! `pkg/toolbox/fs/{download_file,upload_file}.go`.
//!
//! Both toolbox path forms are served: the proxy form `/toolbox/{id}/…` that the Sandbox's
//! `toolboxProxyUrl` points at, and the old API form `/api/toolbox/{id}/toolbox/…`. Knobs
//! on [`State`] turn the newer features off to exercise a plugin's fallbacks.
//!
//! Sandboxes are real: each gets a temporary directory as its home and default working
//! directory, commands run as local processes, relative paths resolve inside that
//! directory, and a snapshot copies it. It binds 127.0.0.1 only; it is a local
//! development and test double, not an isolation boundary.

// Handlers return a ready `Reply` as their error: it is the answer, not a failure to box.
#![allow(clippy::result_large_err)]

use crate::server::{empty, json, raw, Handler, Recorded, Reply, Sim};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a sandbox runs when `snapshot` is omitted (Daytona's default snapshot).
pub const DEFAULT_SNAPSHOT: &str = "daytonaio/sandbox:0.4.3";
/// Snapshots every organisation has.
pub const SNAPSHOTS: [&str; 4] = [DEFAULT_SNAPSHOT, "daytona-small", "daytona-medium", "daytona-large"];
/// Domain of preview URLs (`https://{port}-{id}.{domain}`).
pub const PROXY_DOMAIN: &str = "proxy.daytona.works";

#[derive(Debug)]
pub struct SimSandbox {
    pub id: String,
    pub snapshot: String,
    pub state: String,
    /// GETs left before a transitional state (`starting`, `snapshotting`) becomes `started`.
    pub settle_after: u32,
    pub created_at: DateTime<Utc>,
    pub auto_stop_interval: u64,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub root: tempfile::TempDir,
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
    /// New sandboxes stay `starting` for this many `GET /sandbox/{id}` calls.
    pub start_polls: AtomicU32,
}

pub struct DaytonaSim {
    pub sim: Sim,
    pub state: Arc<State>,
    pub api_key: String,
}

impl DaytonaSim {
    /// Serves on `port` (0 = any), accepting `Authorization: Bearer <api_key>`.
    pub async fn start(port: u16, api_key: &str) -> std::io::Result<DaytonaSim> {
        let state: Arc<State> = Arc::default();
        let (st, key) = (state.clone(), api_key.to_string());
        let handler: Handler = Arc::new(move |rec| {
            let (st, key) = (st.clone(), key.clone());
            Box::pin(async move { route(&st, &key, rec).await })
        });
        let sim = Sim::serve(port, handler).await?;
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

    /// Sandboxes that hold compute: neither destroyed nor stopped.
    pub fn live_count(&self) -> usize {
        self.state.sandboxes.lock().unwrap().values().filter(|s| is_live(&s.state)).count()
    }

    pub fn root_of(&self, id: &str) -> Option<PathBuf> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.root.path().to_path_buf())
    }

    pub fn state_of(&self, id: &str) -> Option<String> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.state.clone())
    }

    /// Forces a sandbox into `state` (e.g. `stopped`, as Daytona's auto-stop would).
    pub fn set_state(&self, id: &str, state: &str) {
        if let Some(s) = self.state.sandboxes.lock().unwrap().get_mut(id) {
            s.state = state.to_string();
            s.settle_after = 0;
        }
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

fn is_live(state: &str) -> bool {
    !matches!(state, "destroyed" | "destroying" | "stopped" | "archived" | "error" | "build_failed")
}

/// NestJS's error body.
fn error(status: u16, message: impl Into<Value>) -> Reply {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    json(status, &json!({ "statusCode": status, "message": message.into(), "error": reason }))
}

fn not_found(id: &str) -> Reply {
    error(404, format!("Sandbox with ID or name {id} not found"))
}

fn iso(t: DateTime<Utc>) -> String {
    // JS `Date.toISOString()`, as the API serialises dates.
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn route(st: &State, key: &str, rec: Recorded) -> Reply {
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
        ("GET", ["api", "sandbox", id, "toolbox-proxy-url"]) if !st.no_toolbox_proxy_url_route.load(Ordering::Relaxed) => {
            match live_sandbox(st, id) {
                Ok(_) => json(200, &json!({ "url": format!("{}/toolbox", st.base.lock().unwrap()) })),
                Err(r) => r,
            }
        }
        ("GET", ["api", "sandbox", id, "ports", port, "preview-url"]) => preview_url(st, id, port),
        (_, ["api", "toolbox", id, "toolbox", rest @ ..]) => toolbox(st, id, rest, &rec).await,
        (_, ["toolbox", id, rest @ ..]) => toolbox(st, id, rest, &rec).await,
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

fn create(st: &State, body: &Value) -> Result<Value, Reply> {
    let snapshot = match body.get("snapshot") {
        None | Some(Value::Null) => DEFAULT_SNAPSHOT.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(error(400, json!(["snapshot must be a string"]))),
    };
    let auto_stop = match body.get("autoStopInterval") {
        None => 15,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| error(400, json!(["autoStopInterval must be an integer number", "autoStopInterval must not be less than 0"])))?,
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
        copy_dir(dir.path(), root.path()).map_err(|e| error(500, format!("cannot restore snapshot {snapshot}: {e}")))?;
    }
    let n = st.counter.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let id = format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", nanos as u32, (nanos >> 32) as u16, n & 0xfff, (nanos >> 48) & 0xfff, n);
    let settle_after = st.start_polls.load(Ordering::Relaxed);
    let sbx = SimSandbox {
        id: id.clone(),
        snapshot,
        state: if settle_after > 0 { "starting".into() } else { "started".into() },
        settle_after,
        created_at: Utc::now(),
        auto_stop_interval: auto_stop,
        env,
        labels,
        root,
    };
    let v = sandbox_json(st, &sbx, true);
    st.sandboxes.lock().unwrap().insert(id, sbx);
    Ok(v)
}

/// The `Sandbox` DTO; `full = false` is the `SandboxListItem` (no env, volumes, buildInfo).
fn sandbox_json(st: &State, s: &SimSandbox, full: bool) -> Value {
    let mut v = json!({
        "id": s.id, "organizationId": "b4bd7b3b-7d3c-4c4e-9a36-5a2f0c9a6d1e", "name": s.id,
        "snapshot": s.snapshot, "user": "daytona", "labels": s.labels, "public": false,
        "networkBlockAll": false, "networkAllowList": null, "target": "us",
        "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
        "state": s.state, "desiredState": if s.state == "destroyed" { "destroyed" } else { "started" },
        "errorReason": null, "backupState": "None", "backupCreatedAt": null,
        "autoStopInterval": s.auto_stop_interval, "autoArchiveInterval": 10080, "autoDeleteInterval": -1,
        "createdAt": iso(s.created_at), "updatedAt": iso(Utc::now()), "daemonVersion": "0.4.3",
    });
    if full {
        v["env"] = json!(s.env);
        v["volumes"] = json!([]);
        v["buildInfo"] = Value::Null;
    }
    if !st.omit_toolbox_proxy_url.load(Ordering::Relaxed) {
        v["toolboxProxyUrl"] = json!(format!("{}/toolbox", st.base.lock().unwrap()));
    }
    v
}

/// A sandbox that is not destroyed, or the 404 the API answers.
fn live_sandbox(st: &State, id: &str) -> Result<(), Reply> {
    match st.sandboxes.lock().unwrap().get(id) {
        Some(s) if s.state != "destroyed" => Ok(()),
        _ => Err(not_found(id)),
    }
}

fn get(st: &State, id: &str) -> Reply {
    let mut boxes = st.sandboxes.lock().unwrap();
    match boxes.get_mut(id) {
        Some(s) if s.state != "destroyed" => {
            if s.settle_after > 0 {
                s.settle_after -= 1;
                if s.settle_after == 0 {
                    s.state = "started".into();
                }
            }
            json(200, &sandbox_json(st, s, true))
        }
        _ => not_found(id),
    }
}

/// `DELETE /sandbox/{id}`: answers the Sandbox in `destroying`; it stays listed as
/// `destroyed` only with `includeErroredDeleted=true`, and is 404 everywhere else.
fn delete(st: &State, id: &str) -> Reply {
    let mut boxes = st.sandboxes.lock().unwrap();
    match boxes.get_mut(id) {
        Some(s) if s.state != "destroyed" => {
            s.state = "destroying".into();
            let v = sandbox_json(st, s, true);
            s.state = "destroyed".into();
            let _ = std::fs::remove_dir_all(s.root.path()).and_then(|_| std::fs::create_dir(s.root.path()));
            json(200, &v)
        }
        _ => not_found(id),
    }
}

fn list(st: &State, rec: &Recorded) -> Reply {
    let include_deleted = rec.query_param("includeErroredDeleted").as_deref() == Some("true");
    let boxes = st.sandboxes.lock().unwrap();
    // Newest first, as the API orders them.
    let mut rows: Vec<&SimSandbox> = boxes.values().filter(|s| include_deleted || s.state != "destroyed").collect();
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let items: Vec<Value> = rows.iter().map(|s| sandbox_json(st, s, false)).collect();
    let limit = rec.query_param("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(100).clamp(1, 100);
    let limit = st.page_size.lock().unwrap().map_or(limit, |p| p.min(limit));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match *st.list_shape.lock().unwrap() {
        ListShape::Array => json(200, &Value::Array(items)),
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
            json(200, &json!({ "items": rows, "total": items.len(), "page": page, "totalPages": total_pages }))
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
        return error(400, format!("Sandbox must be started or stopped to create a snapshot (it is {})", s.state));
    }
    let mut snaps = st.snapshots.lock().unwrap();
    if SNAPSHOTS.contains(&name) || snaps.contains_key(name) {
        return error(409, format!("Snapshot with name {name} already exists"));
    }
    let copy = match tempfile::Builder::new().prefix("daytona-sim-snap-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, format!("cannot create the snapshot: {e}")),
    };
    if let Err(e) = copy_dir(s.root.path(), copy.path()) {
        return error(500, format!("cannot create the snapshot: {e}"));
    }
    snaps.insert(name.to_string(), copy);
    if s.state == "started" {
        s.state = "snapshotting".into();
        s.settle_after = 1;
    }
    json(200, &sandbox_json(st, s, true))
}

fn preview_url(st: &State, id: &str, port: &str) -> Reply {
    if let Err(r) = live_sandbox(st, id) {
        return r;
    }
    let Some(port) = port.parse::<u16>().ok().filter(|p| *p >= 1) else {
        return error(400, "Invalid port");
    };
    let token: String = id.bytes().rev().take(16).map(|b| format!("{:x}", b % 16)).collect();
    json(200, &json!({ "sandboxId": id, "url": format!("https://{port}-{id}.{PROXY_DOMAIN}"), "token": token }))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

// ---- toolbox (the in-sandbox daemon) ----

struct Target {
    root: PathBuf,
    env: BTreeMap<String, String>,
}

async fn toolbox(st: &State, id: &str, rest: &[&str], rec: &Recorded) -> Reply {
    let target = {
        let boxes = st.sandboxes.lock().unwrap();
        match boxes.get(id) {
            Some(s) if s.state == "destroyed" => return not_found(id),
            None => return not_found(id),
            // What the proxy answers when the sandbox's daemon is not running.
            Some(s) if !is_live(&s.state) => return error(400, format!("Sandbox {id} is not started (state: {})", s.state)),
            Some(s) => Target { root: s.root.path().to_path_buf(), env: s.env.clone() },
        }
    };
    match (rec.method.as_str(), rest) {
        ("POST", ["process", "execute"]) => execute(&target, rec).await,
        ("GET", ["files", "download"]) => download(&target, rec),
        ("POST", ["files", "upload"]) => upload(&target, rec),
        _ => json(404, &json!({ "message": format!("404 page not found: {} /{}", rec.method, rest.join("/")) })),
    }
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        root.join(path)
    }
}

/// The daemon's `parseCommand`: split on spaces; `'` and `"` toggle quoting (the other
/// kind is literal inside), with no escapes and no shell.
pub fn parse_command(command: &str) -> Vec<String> {
    let (mut args, mut cur, mut quote) = (Vec::new(), String::new(), None::<char>);
    for c in command.chars() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            ('"' | '\'', Some(q)) if q == c => quote = None,
            (' ', None) => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    args
}

async fn execute(t: &Target, rec: &Recorded) -> Reply {
    let body = rec.json();
    let Some(command) = body.get("command").and_then(Value::as_str) else {
        return json(400, &json!({ "message": "command is required" }));
    };
    let argv = parse_command(command);
    if argv.is_empty() {
        return json(400, &json!({ "message": "empty command" }));
    }
    let timeout = body.get("timeout").and_then(Value::as_u64).filter(|t| *t > 0);
    let cwd = body.get("cwd").and_then(Value::as_str).map(|c| resolve(&t.root, c)).unwrap_or_else(|| t.root.clone());
    // One file for both streams, as the daemon points Stdout and Stderr at one buffer.
    let (out, w1, w2) = match tempfile::tempfile().and_then(|f| Ok((f.try_clone()?, f.try_clone()?, f))) {
        Ok(files) => files,
        Err(e) => return error(500, format!("cannot capture output: {e}")),
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(&cwd).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()));
    cmd.env("HOME", &t.root).env("USER", "daytona").envs(&t.env);
    cmd.stdin(std::process::Stdio::null()).stdout(w1).stderr(w2).process_group(0).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        // The daemon reports a failed start as exit code -1 with the error as the result.
        Err(e) => return json(200, &json!({ "exitCode": -1, "result": e.to_string() })),
        Ok(c) => c,
    };
    let status = match timeout {
        Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                // Kill the whole process group, as the daemon terminates the process tree.
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
                }
                let _ = child.kill().await;
                return error(
                    408,
                    format!("Command execution timed out after {secs} seconds. The timeout can be increased by adjusting the timeout parameter in the request."),
                );
            }
        },
        None => child.wait().await,
    };
    let mut result = Vec::new();
    let mut out = out;
    let _ = out.rewind().and_then(|_| out.read_to_end(&mut result));
    let exit_code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    json(200, &json!({ "exitCode": exit_code, "result": String::from_utf8_lossy(&result) }))
}

fn download(t: &Target, rec: &Recorded) -> Reply {
    let Some(path) = rec.query_param("path").filter(|p| !p.is_empty()) else {
        return json(400, &json!({ "message": "path is required" }));
    };
    let full = resolve(&t.root, &path);
    if full.is_dir() {
        return json(400, &json!({ "message": "path must be a file" }));
    }
    match std::fs::read(&full) {
        Ok(bytes) => {
            let mut r = raw(200, "application/octet-stream", bytes);
            let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Ok(v) = format!("attachment; filename={name}").parse() {
                r.headers_mut().insert("content-disposition", v);
            }
            r
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json(404, &json!({ "message": "file not found" })),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => json(403, &json!({ "message": "permission denied" })),
        Err(e) => json(400, &json!({ "message": e.to_string() })),
    }
}

fn upload(t: &Target, rec: &Recorded) -> Reply {
    let Some(path) = rec.query_param("path").filter(|p| !p.is_empty()) else {
        return json(400, &json!({ "message": "path is required" }));
    };
    let Some(bytes) = crate::e2b::multipart_file_part(rec) else {
        return json(400, &json!({ "message": "http: no such file" }));
    };
    let full = resolve(&t.root, &path);
    if full.is_dir() {
        return json(400, &json!({ "message": "path is a directory" }));
    }
    if let Some(parent) = full.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::write(&full, &bytes) {
        Ok(()) => empty(200),
        Err(e) => json(400, &json!({ "message": e.to_string() })),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_command;

    #[test]
    fn parse_command_matches_the_daemon() {
        assert_eq!(parse_command("sh -c 'echo \"a b\"'  x"), ["sh", "-c", "echo \"a b\"", "x"]);
        assert_eq!(parse_command("a\"b c\"d"), ["ab cd"]);
        assert!(parse_command("   ").is_empty());
    }
}
