//! A Vercel-Sandbox-shaped simulator: the v1 sandbox API under `/api` (create, get,
//! list, stop, extend-timeout, snapshot) here, commands in [`commands`] (run detached,
//! wait, logs, kill) and files in [`files`] (read; write from a gzip tarball).
//!
//! Shapes follow Vercel's own SDK, npm `@vercel/sandbox` 1.10.2 (`api-client.js`,
//! `validators.js`), written down as the checked schema `sim/specs/vercel/sandbox-v1.yml`
//! (Vercel publishes no OpenAPI document we can vendor): every request and answer is
//! checked against it ([`crate::spec`]). Times are Unix milliseconds, `timeout` is in
//! milliseconds, errors are `{error: {code, message}}`, a bad token is 403 `forbidden`.
//! Where the SDK and the reference pages say nothing the simulator assumes, and says so
//! beside the code: a new sandbox answers `pending` and reads `running` afterwards;
//! stopping a stopped sandbox answers it again (200); an unknown snapshot on create is
//! 404; extending a sandbox that is not running is 400.
//!
//! Sandboxes are real: each has a temporary directory standing for its root filesystem,
//! whose `vercel/sandbox` is the sandbox's working directory (`Sandbox.cwd`,
//! `/vercel/sandbox`). Commands run as local processes there (or in the `cwd` they ask
//! for: `/vercel/sandbox/…` maps into the directory, other absolute paths are the local
//! machine's), with the sandbox's and the command's environment. Lifetimes are enforced
//! lazily on each request: a sandbox past `startedAt + timeout` is `stopped`, and stopped
//! sandboxes stay listed, as Vercel lists its history. It binds 127.0.0.1 only; a
//! development and test double, not an isolation boundary.

// A handler's early answer is its `Reply` (an HTTP response), as in the other simulators.
#![allow(clippy::result_large_err)]

mod commands;
mod files;

use crate::server::{json, Handler, Recorded, Reply, Sim};
use crate::spec::{self, contract::Contract};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The runtimes SDK 1.10.2 documents (`runtime?: "node22" | "node24" | "node26" |
/// "python3.13"`); `node24` when none is given.
pub const RUNTIMES: [&str; 4] = ["node22", "node24", "node26", "python3.13"];
const DEFAULT_RUNTIME: &str = "node24";
/// The SDK's documented default timeout: 5 minutes.
const DEFAULT_TIMEOUT_MS: u64 = 300_000;
/// Where a sandbox's working directory is, inside its root.
pub const SANDBOX_CWD: &str = "/vercel/sandbox";
/// Vercel gives each vCPU 2048 MB.
const MB_PER_VCPU: u64 = 2048;

#[derive(Debug)]
pub struct SimSandbox {
    pub id: String,
    pub runtime: String,
    pub source_snapshot_id: Option<String>,
    pub vcpus: u64,
    pub timeout_ms: u64,
    pub status: &'static str,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub stopped_at: Option<u64>,
    pub updated_at: u64,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub network_policy: Option<String>,
    /// What the sandbox sees as `/`.
    pub root: tempfile::TempDir,
}

impl SimSandbox {
    pub fn is_live(&self) -> bool {
        matches!(self.status, "pending" | "running" | "snapshotting")
    }

    /// The local directory for the sandbox path `path` (relative: to `/vercel/sandbox`).
    pub fn local(&self, path: &str) -> PathBuf {
        let abs = if path.starts_with('/') { path.to_string() } else { format!("{SANDBOX_CWD}/{path}") };
        self.root.path().join(abs.trim_start_matches('/'))
    }
}

#[derive(Debug)]
pub struct SimSnapshot {
    pub id: String,
    pub source: String,
    pub runtime: String,
    pub created_at: u64,
    pub files: tempfile::TempDir,
}

#[derive(Default)]
pub struct State {
    pub sandboxes: Mutex<BTreeMap<String, SimSandbox>>,
    pub snapshots: Mutex<BTreeMap<String, SimSnapshot>>,
    pub commands: commands::Commands,
    /// Page size of `GET /v1/sandboxes` when the request gives no `limit` smaller.
    pub page_size: Mutex<Option<usize>>,
    counter: AtomicU64,
}

pub struct VercelSim {
    /// `vercel.com`; routes live under `/api`.
    pub api: Sim,
    pub state: Arc<State>,
}

impl VercelSim {
    /// Starts on `port` (0 = any free port), accepting `Authorization: Bearer <token>`.
    pub async fn start(port: u16, token: &str) -> std::io::Result<VercelSim> {
        let state: Arc<State> = Arc::default();
        let (st, key) = (state.clone(), token.to_string());
        let handler: Handler = Arc::new(move |rec| {
            let (st, key) = (st.clone(), key.clone());
            Box::pin(async move { route(&st, &key, rec).await })
        });
        let api = Sim::serve_checked(port, handler, Some(&CONTRACT)).await?;
        Ok(VercelSim { api, state })
    }

    /// `https://vercel.com/api` for this simulator.
    pub fn api_base(&self) -> String {
        format!("{}/api", self.api.base_url())
    }

    /// Policy lines pointing the vercel plugin at this simulator, granting it `VERCEL_TOKEN`.
    pub fn policy_toml(&self) -> String {
        format!(
            "api_base = \"{}\"\nallowed_hosts = [\"{}\"]\n[credentials]\ntoken = \"VERCEL_TOKEN\"\n[config]\nteam-id = \"team_sim\"\nproject-id = \"prj_sim\"\nports = \"3000\"\n",
            self.api_base(),
            self.api.authority()
        )
    }

    /// Sandboxes that are running (pending or running).
    pub fn live_count(&self) -> usize {
        expire(&self.state);
        self.state.sandboxes.lock().unwrap().values().filter(|s| s.is_live()).count()
    }

    pub fn root_of(&self, id: &str) -> Option<PathBuf> {
        self.state.sandboxes.lock().unwrap().get(id).map(|s| s.root.path().to_path_buf())
    }

    /// The sandbox `id` as the API shows it.
    pub fn sandbox(&self, id: &str) -> Option<Value> {
        self.state.sandboxes.lock().unwrap().get(id).map(sandbox_json)
    }

    /// Creates a sandbox directly upstream, as another client of the same account would.
    pub fn create_out_of_band(&self, runtime: &str) -> String {
        match create(&self.state, &json!({ "runtime": runtime })) {
            Ok(v) => v["sandbox"]["id"].as_str().unwrap_or_default().to_string(),
            Err(_) => String::new(),
        }
    }
}

/// Checked against `vercel/sandbox-v1.yml`, whose server is `https://vercel.com/api`.
static CONTRACT: Contract = Contract { locate, reject };

fn locate(rec: &Recorded) -> Result<(&'static spec::Spec, String), String> {
    match rec.path.strip_prefix("/api") {
        Some(rest) if rest.starts_with("/v1/") => Ok((spec::vercel_api(), rest.to_string())),
        _ => Err("not under the spec's server /api/v1".into()),
    }
}

fn reject(_: &Recorded, status: u16, message: &str) -> Reply {
    let code = if status == 404 { "not_found" } else { "bad_request" };
    error(status, code, message)
}

/// Vercel's error answer, `{error: {code, message}}`.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Reply {
    json(status, &json!({ "error": { "code": code, "message": message } }))
}

pub(crate) fn not_found(id: &str) -> Reply {
    error(404, "not_found", &format!("Sandbox {id} not found"))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn new_id(prefix: &str, st: &State) -> String {
    let n = st.counter.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) as u64;
    let x = (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 8;
    let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let suffix: String = (0..10).map(|i| alphabet[((x >> (i * 5)) % 62) as usize] as char).collect();
    format!("{prefix}_{suffix}{n}")
}

async fn route(st: &Arc<State>, token: &str, rec: Recorded) -> Reply {
    if rec.header("authorization") != Some(format!("Bearer {token}").as_str()) {
        return error(403, "forbidden", "Not authorized");
    }
    expire(st);
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    match (rec.method.as_str(), segs.as_slice()) {
        ("POST", ["api", "v1", "sandboxes"]) => match create(st, &rec.json()) {
            Ok(v) => json(200, &v),
            Err(r) => r,
        },
        ("GET", ["api", "v1", "sandboxes"]) => list(st, &rec),
        ("GET", ["api", "v1", "sandboxes", id]) => match st.sandboxes.lock().unwrap().get(*id) {
            Some(s) => json(200, &json!({ "sandbox": sandbox_json(s), "routes": routes_json(s) })),
            None => not_found(id),
        },
        ("POST", ["api", "v1", "sandboxes", id, "stop"]) => stop(st, id),
        ("POST", ["api", "v1", "sandboxes", id, "extend-timeout"]) => extend(st, id, &rec.json()),
        ("POST", ["api", "v1", "sandboxes", id, "snapshot"]) => snapshot(st, id),
        ("POST", ["api", "v1", "sandboxes", id, "cmd"]) => commands::start(st, id, &rec.json()),
        ("GET", ["api", "v1", "sandboxes", id, "cmd", cmd]) => {
            commands::get(st, id, cmd, rec.query_param("wait").as_deref() == Some("true")).await
        }
        ("GET", ["api", "v1", "sandboxes", id, "cmd", cmd, "logs"]) => commands::logs(st, id, cmd).await,
        ("POST", ["api", "v1", "sandboxes", id, cmd, "kill"]) => commands::kill(st, id, cmd, &rec.json()),
        ("POST", ["api", "v1", "sandboxes", id, "fs", "read"]) => files::read(st, id, &rec.json()),
        ("POST", ["api", "v1", "sandboxes", id, "fs", "write"]) => files::write(st, id, &rec).await,
        _ => error(404, "not_found", "The requested endpoint was not found"),
    }
}

/// Stops sandboxes whose timeout has passed (`startedAt + timeout`).
fn expire(st: &State) {
    let now = now_ms();
    for s in st.sandboxes.lock().unwrap().values_mut() {
        if s.is_live() && s.started_at.unwrap_or(s.created_at) + s.timeout_ms <= now {
            s.status = "stopped";
            s.stopped_at = Some(now);
            s.updated_at = now;
        }
    }
}

fn bad(message: &str) -> Reply {
    error(400, "bad_request", message)
}

/// `POST /v1/sandboxes` `CreateSandboxRequest` → `{sandbox, routes}`, `pending`.
fn create(st: &State, body: &Value) -> Result<Value, Reply> {
    let now = now_ms();
    let timeout_ms = body["timeout"].as_u64().unwrap_or(DEFAULT_TIMEOUT_MS);
    let vcpus = body["resources"]["vcpus"].as_u64().unwrap_or(2);
    if !(1..=8).contains(&vcpus) {
        return Err(bad("resources.vcpus must be between 1 and 8"));
    }
    let env: BTreeMap<String, String> = body["env"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let ports: Vec<u16> =
        body["ports"].as_array().map(|a| a.iter().filter_map(|p| p.as_u64()?.try_into().ok()).collect()).unwrap_or_default();
    let root = tempfile::Builder::new().prefix("vercel-sim-").tempdir().map_err(|e| error(500, "internal_error", &e.to_string()))?;
    let (runtime, source_snapshot_id) = match &body["source"] {
        Value::Null => {
            let runtime = body["runtime"].as_str().unwrap_or(DEFAULT_RUNTIME);
            if !RUNTIMES.contains(&runtime) {
                return Err(bad(&format!("Invalid runtime '{runtime}': expected one of {}", RUNTIMES.join(", "))));
            }
            (runtime.to_string(), None)
        }
        source if source["type"] == "snapshot" => {
            let id = source["snapshotId"].as_str().unwrap_or_default();
            let snaps = st.snapshots.lock().unwrap();
            let Some(snap) = snaps.get(id) else {
                // Assumption: the SDK and reference pages do not say; 404 like any unknown id.
                return Err(error(404, "not_found", &format!("Snapshot {id} not found")));
            };
            crate::files::copy_tree(snap.files.path(), root.path()).map_err(|e| error(500, "internal_error", &e.to_string()))?;
            (snap.runtime.clone(), Some(id.to_string()))
        }
        _ => return Err(bad("this simulator starts sandboxes from a runtime or a snapshot, not from git or a tarball")),
    };
    std::fs::create_dir_all(root.path().join(SANDBOX_CWD.trim_start_matches('/')))
        .map_err(|e| error(500, "internal_error", &e.to_string()))?;
    let network_policy = body["networkPolicy"]["mode"].as_str().map(str::to_string);
    let id = new_id("sbx", st);
    let sb = SimSandbox {
        id: id.clone(),
        runtime,
        source_snapshot_id,
        vcpus,
        timeout_ms,
        status: "pending",
        created_at: now,
        started_at: None,
        stopped_at: None,
        updated_at: now,
        env,
        ports,
        network_policy,
        root,
    };
    let answer = json!({ "sandbox": sandbox_json(&sb), "routes": routes_json(&sb) });
    // Booted by the next read: `running`, its clock started now.
    let mut sb = sb;
    sb.status = "running";
    sb.started_at = Some(now);
    st.sandboxes.lock().unwrap().insert(id, sb);
    Ok(answer)
}

pub(crate) fn sandbox_json(s: &SimSandbox) -> Value {
    let mut v = json!({
        "id": s.id,
        "memory": s.vcpus * MB_PER_VCPU,
        "vcpus": s.vcpus,
        "region": "iad1",
        "runtime": s.runtime,
        "timeout": s.timeout_ms,
        "status": s.status,
        "requestedAt": s.created_at,
        "createdAt": s.created_at,
        "cwd": SANDBOX_CWD,
        "updatedAt": s.updated_at,
    });
    let m = v.as_object_mut().unwrap();
    if let Some(t) = s.started_at {
        m.insert("startedAt".into(), json!(t));
    }
    if let Some(t) = s.stopped_at {
        m.insert("stoppedAt".into(), json!(t));
        m.insert("duration".into(), json!(t.saturating_sub(s.started_at.unwrap_or(s.created_at))));
    }
    if let Some(snap) = &s.source_snapshot_id {
        m.insert("sourceSnapshotId".into(), json!(snap));
    }
    if let Some(mode) = &s.network_policy {
        m.insert("networkPolicy".into(), json!({ "mode": mode }));
    }
    v
}

/// One route per port published at create: `https://{subdomain}.vercel.run`.
fn routes_json(s: &SimSandbox) -> Value {
    let name = s.id.trim_start_matches("sbx_").to_ascii_lowercase();
    let routes: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            let subdomain = format!("sb-{name}-{p}");
            json!({ "url": format!("https://{subdomain}.vercel.run"), "subdomain": subdomain, "port": p })
        })
        .collect();
    json!(routes)
}

/// `GET /v1/sandboxes?limit&until`: newest first; `pagination.next` is the `createdAt` to
/// pass as `until` for the next (older) page, `null` on the last.
fn list(st: &State, rec: &Recorded) -> Reply {
    let limit = rec.query_param("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50);
    let limit = st.page_size.lock().unwrap().map_or(limit, |p| p.min(limit));
    let until = rec.query_param("until").and_then(|u| u.parse::<u64>().ok()).unwrap_or(u64::MAX);
    let sandboxes = st.sandboxes.lock().unwrap();
    let mut rows: Vec<&SimSandbox> = sandboxes.values().filter(|s| s.created_at < until).collect();
    // Newest first; the id breaks ties so a page boundary never splits one millisecond badly.
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more { rows.last().map(|s| json!(s.created_at)).unwrap_or(Value::Null) } else { Value::Null };
    let page: Vec<Value> = rows.iter().map(|s| sandbox_json(s)).collect();
    json(200, &json!({ "sandboxes": page, "pagination": { "count": page.len(), "next": next, "prev": null } }))
}

/// `POST /v1/sandboxes/{id}/stop` → `{sandbox}`, stopped. Assumption: a stopped sandbox
/// is answered again (the SDK's blocking stop polls until `stopped`, so it is not an error).
fn stop(st: &State, id: &str) -> Reply {
    let mut sandboxes = st.sandboxes.lock().unwrap();
    let Some(s) = sandboxes.get_mut(id) else { return not_found(id) };
    if s.is_live() {
        let now = now_ms();
        s.status = "stopped";
        s.stopped_at = Some(now);
        s.updated_at = now;
        st.commands.kill_all(id);
    }
    json(200, &json!({ "sandbox": sandbox_json(s) }))
}

/// `POST /v1/sandboxes/{id}/extend-timeout` `{duration}` → `{sandbox}` with `timeout`
/// grown by `duration`. Assumption: a sandbox that is not running is 400.
fn extend(st: &State, id: &str, body: &Value) -> Reply {
    let mut sandboxes = st.sandboxes.lock().unwrap();
    let Some(s) = sandboxes.get_mut(id) else { return not_found(id) };
    if !s.is_live() {
        return error(400, "sandbox_not_running", &format!("Sandbox {id} is {}", s.status));
    }
    s.timeout_ms += body["duration"].as_u64().unwrap_or(0);
    s.updated_at = now_ms();
    json(200, &json!({ "sandbox": sandbox_json(s) }))
}

/// `POST /v1/sandboxes/{id}/snapshot` → `{snapshot, sandbox}`: the files are captured and
/// the sandbox stops (answered `snapshotting`, read `stopped` afterwards).
fn snapshot(st: &State, id: &str) -> Reply {
    let mut sandboxes = st.sandboxes.lock().unwrap();
    let Some(s) = sandboxes.get_mut(id) else { return not_found(id) };
    if !s.is_live() {
        return error(400, "sandbox_not_running", &format!("Sandbox {id} is {}", s.status));
    }
    let files = match tempfile::Builder::new().prefix("vercel-sim-snap-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, "internal_error", &e.to_string()),
    };
    if let Err(e) = crate::files::copy_tree(s.root.path(), files.path()) {
        return error(500, "internal_error", &e.to_string());
    }
    let now = now_ms();
    let snap = SimSnapshot { id: new_id("snap", st), source: id.to_string(), runtime: s.runtime.clone(), created_at: now, files };
    s.status = "snapshotting";
    s.updated_at = now;
    let answer = json!({ "snapshot": snapshot_json(&snap, dir_size(snap.files.path())), "sandbox": sandbox_json(s) });
    s.status = "stopped";
    s.stopped_at = Some(now);
    st.commands.kill_all(id);
    st.snapshots.lock().unwrap().insert(snap.id.clone(), snap);
    json(200, &answer)
}

fn snapshot_json(s: &SimSnapshot, size: u64) -> Value {
    json!({
        "id": s.id, "sourceSandboxId": s.source, "region": "iad1", "status": "created",
        "sizeBytes": size, "createdAt": s.created_at, "updatedAt": s.created_at,
    })
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
