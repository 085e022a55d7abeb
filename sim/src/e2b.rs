//! An E2B-shaped simulator: the control plane (`/sandboxes`, `/v2/sandboxes`, pause,
//! timeout) and each sandbox's `envd` (Connect `process.Process/Start`, `/files`), on one
//! loopback port. envd requests are routed by the `E2b-Sandbox-Id` header, as on E2B's
//! shared `sandbox.{domain}` host. Shapes follow e2b-dev/E2B `spec/openapi.yml` and
//! `spec/envd`: errors `{code, message}`, proto3 JSON that omits zero values.
//!
//! Sandboxes are real: each gets a temporary directory as its home and default working
//! directory, commands run as local processes (via the plugin's `/bin/bash`), relative
//! file paths resolve inside that directory. It binds 127.0.0.1 only; it is a local
//! development and test double, not an isolation boundary.

use crate::server::{empty, json, raw, Handler, Recorded, Reply, Sim};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The templates the simulator knows (alias → template id).
pub const TEMPLATES: [(&str, &str); 2] = [("base", "rki5dems9wqfm4r03t7g"), ("code-interpreter-v1", "nlhz8vlwyupq845jsdg9")];

#[derive(Debug)]
pub struct SimSandbox {
    pub id: String,
    pub template_id: String,
    pub alias: String,
    pub started_at: DateTime<Utc>,
    pub timeout_secs: u64,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub paused: bool,
    pub token: Option<String>,
    pub root: tempfile::TempDir,
}

#[derive(Default)]
pub struct State {
    pub sandboxes: Mutex<BTreeMap<String, SimSandbox>>,
    counter: AtomicU64,
    /// Page size of `/v2/sandboxes` (to exercise `X-Next-Token`).
    pub page_size: Mutex<Option<usize>>,
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
            Box::pin(async move { route(&st, &key, rec).await })
        });
        let st = state.clone();
        let envd_handler: Handler = Arc::new(move |rec| {
            let st = st.clone();
            Box::pin(async move { envd(&st, rec).await })
        });
        let api = Sim::serve(port, api).await?;
        let envd = Sim::serve(if port == 0 { 0 } else { port + 1 }, envd_handler).await?;
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

fn error(status: u16, message: &str) -> Reply {
    json(status, &json!({ "code": status, "message": message }))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn route(st: &State, key: &str, rec: Recorded) -> Reply {
    if rec.header("x-api-key") != Some(key) {
        return error(401, "Invalid API key, it must start with 'e2b_'");
    }
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    match (rec.method.as_str(), segs.as_slice()) {
        ("POST", ["sandboxes"]) => create(st, &rec),
        ("GET", ["sandboxes"]) => list(st, &rec, false),
        ("GET", ["v2", "sandboxes"]) => list(st, &rec, true),
        ("GET", ["sandboxes", id]) => match st.sandboxes.lock().unwrap().get(*id) {
            Some(s) => json(200, &detail(s)),
            None => error(404, &format!("sandbox \"{id}\" doesn't exist or you don't have access to it")),
        },
        ("DELETE", ["sandboxes", id]) => match st.sandboxes.lock().unwrap().remove(*id) {
            Some(_) => empty(204),
            None => error(404, &format!("sandbox \"{id}\" doesn't exist or you don't have access to it")),
        },
        ("POST", ["sandboxes", id, "pause"]) => match st.sandboxes.lock().unwrap().get_mut(*id) {
            Some(s) if s.paused => error(409, &format!("Error pausing sandbox - sandbox '{id}' is already paused")),
            Some(s) => {
                s.paused = true;
                empty(204)
            }
            None => error(404, &format!("sandbox \"{id}\" doesn't exist or you don't have access to it")),
        },
        ("POST", ["sandboxes", id, "timeout"]) => match st.sandboxes.lock().unwrap().get_mut(*id) {
            Some(s) => match rec.json().get("timeout").and_then(Value::as_u64) {
                Some(t) => {
                    s.timeout_secs = t;
                    empty(204)
                }
                None => error(400, "timeout is required"),
            },
            None => error(404, &format!("sandbox \"{id}\" doesn't exist or you don't have access to it")),
        },
        _ => error(404, &format!("no route for {} {}", rec.method, rec.path)),
    }
}

fn create(st: &State, rec: &Recorded) -> Reply {
    let body = rec.json();
    let Some(template) = body.get("templateID").and_then(Value::as_str) else {
        return error(400, "request body has an error: doesn't match schema: property \"templateID\" is missing");
    };
    let Some((alias, template_id)) = TEMPLATES.iter().find(|(a, t)| *a == template || *t == template) else {
        return error(404, &format!("template '{template}' not found"));
    };
    let map = |k: &str| -> BTreeMap<String, String> {
        body.get(k)
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default()
    };
    let n = st.counter.fetch_add(1, Ordering::Relaxed);
    let id = format!("i{:x}{:06x}", Utc::now().timestamp_subsec_nanos(), n);
    let secure = body.get("secure").and_then(Value::as_bool).unwrap_or(false);
    let token = secure.then(|| format!("tok-{id}"));
    let root = match tempfile::Builder::new().prefix("e2b-sim-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, &format!("cannot create the sandbox: {e}")),
    };
    let sbx = SimSandbox {
        id: id.clone(),
        template_id: template_id.to_string(),
        alias: alias.to_string(),
        started_at: Utc::now(),
        timeout_secs: body.get("timeout").and_then(Value::as_u64).unwrap_or(15),
        metadata: map("metadata"),
        env_vars: map("envVars"),
        paused: false,
        token: token.clone(),
        root,
    };
    st.sandboxes.lock().unwrap().insert(id.clone(), sbx);
    json(
        201,
        &json!({
            "sandboxID": id, "templateID": template_id, "alias": alias, "clientID": "6532622b",
            "envdVersion": "0.2.0", "envdAccessToken": token, "domain": null,
        }),
    )
}

fn listed(s: &SimSandbox) -> Value {
    json!({
        "templateID": s.template_id, "alias": s.alias, "sandboxID": s.id, "clientID": "6532622b",
        "startedAt": rfc3339(s.started_at),
        "endAt": rfc3339(s.started_at + chrono::Duration::seconds(s.timeout_secs as i64)),
        "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 512, "metadata": s.metadata,
        "state": if s.paused { "paused" } else { "running" }, "envdVersion": "0.2.0",
    })
}

fn detail(s: &SimSandbox) -> Value {
    let mut v = listed(s);
    v["envdAccessToken"] = json!(s.token);
    v["domain"] = Value::Null;
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

// ---- envd ----

fn envd_error(status: u16, message: &str) -> Reply {
    json(status, &json!({ "code": status, "message": message }))
}

struct EnvdTarget {
    root: PathBuf,
    env_vars: BTreeMap<String, String>,
}

fn envd_target(st: &State, rec: &Recorded) -> Result<EnvdTarget, Box<Reply>> {
    let Some(id) = rec.header("e2b-sandbox-id") else {
        return Err(Box::new(raw(400, "text/plain", b"Invalid host".to_vec())));
    };
    if rec.header("e2b-sandbox-port") != Some("49983") {
        return Err(Box::new(raw(400, "text/plain", b"Missing header: E2b-Sandbox-Port".to_vec())));
    }
    let boxes = st.sandboxes.lock().unwrap();
    let Some(s) = boxes.get(id).filter(|s| !s.paused) else {
        // What E2B's edge proxy answers for a sandbox that is not running.
        return Err(Box::new(json(502, &json!({ "sandboxId": id, "message": "The sandbox was not found", "code": 502 }))));
    };
    if let Some(t) = &s.token {
        if rec.header("x-access-token") != Some(t.as_str()) {
            return Err(Box::new(envd_error(401, "unauthorized access, please provide a valid access token")));
        }
    }
    Ok(EnvdTarget { root: s.root.path().to_path_buf(), env_vars: s.env_vars.clone() })
}

async fn envd(st: &State, rec: Recorded) -> Reply {
    let target = match envd_target(st, &rec) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match (rec.method.as_str(), rec.path.as_str()) {
        ("POST", "/process.Process/Start") => start_process(&target, &rec).await,
        ("GET", "/files") => read_file(&target, &rec),
        ("POST", "/files") => write_file(&target, &rec),
        _ => envd_error(404, &format!("no envd route {} {}", rec.method, rec.path)),
    }
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        root.join(path)
    }
}

fn read_file(t: &EnvdTarget, rec: &Recorded) -> Reply {
    let Some(path) = rec.query_param("path") else { return envd_error(400, "path is required") };
    let full = resolve(&t.root, &path);
    if full.is_dir() {
        return envd_error(400, &format!("path '{path}' is a directory"));
    }
    match std::fs::read(&full) {
        Ok(bytes) => raw(200, "application/octet-stream", bytes),
        Err(_) => envd_error(404, &format!("path '{path}' does not exist")),
    }
}

fn write_file(t: &EnvdTarget, rec: &Recorded) -> Reply {
    let Some(path) = rec.query_param("path") else { return envd_error(400, "path is required") };
    let Some(bytes) = multipart_file_part(rec) else { return envd_error(400, "multipart field 'file' is missing") };
    let full = resolve(&t.root, &path);
    if full.is_dir() {
        return envd_error(400, &format!("path '{path}' is a directory"));
    }
    if let Some(parent) = full.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&full, &bytes) {
        return envd_error(500, &format!("error writing file: {e}"));
    }
    let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    json(200, &json!([{ "path": full.to_string_lossy(), "name": name, "type": "file" }]))
}

/// The content of the part named `file` of a multipart body.
pub fn multipart_file_part(rec: &Recorded) -> Option<Vec<u8>> {
    let ct = rec.header("content-type")?;
    let boundary = ct.split("boundary=").nth(1)?.trim_matches('"');
    let delim = format!("--{boundary}");
    let body = &rec.body;
    let mut pos = find(body, delim.as_bytes(), 0)?;
    loop {
        let part_start = pos + delim.len();
        if body.get(part_start..part_start + 2) == Some(b"--") {
            return None;
        }
        let head_end = find(body, b"\r\n\r\n", part_start)?;
        let head = String::from_utf8_lossy(&body[part_start..head_end]).to_ascii_lowercase();
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4)?;
        if head.contains("name=\"file\"") {
            return Some(body[head_end + 4..next].to_vec());
        }
        pos = next + 2;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

fn frame(flags: u8, v: &Value) -> Vec<u8> {
    let msg = serde_json::to_vec(v).unwrap_or_default();
    let mut out = vec![flags];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

async fn start_process(t: &EnvdTarget, rec: &Recorded) -> Reply {
    if rec.header("content-type") != Some("application/connect+json") {
        return envd_error(415, "unsupported content type");
    }
    let end_err = |code: &str, msg: &str| raw(200, "application/connect+json", frame(2, &json!({"error": {"code": code, "message": msg}})));
    let body = &rec.body;
    if body.len() < 5 || body[0] != 0 {
        return end_err("invalid_argument", "expected one uncompressed envelope");
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let Some(msg) = body.get(5..5 + len).and_then(|m| serde_json::from_slice::<Value>(m).ok()) else {
        return end_err("invalid_argument", "unreadable StartRequest");
    };
    let p = &msg["process"];
    let Some(cmd) = p["cmd"].as_str() else { return end_err("invalid_argument", "process.cmd is required") };
    let args: Vec<String> =
        p["args"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
    let cwd = p["cwd"].as_str().map(|c| resolve(&t.root, c)).unwrap_or_else(|| t.root.clone());
    if !cwd.is_dir() {
        return end_err("invalid_argument", &format!("cwd '{}' does not exist", cwd.display()));
    }
    let mut command = tokio::process::Command::new(cmd);
    command.args(&args).current_dir(&cwd).env_clear();
    command.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()));
    command.env("HOME", &t.root).env("USER", "user").env("LOGNAME", "user");
    command.envs(&t.env_vars);
    if let Some(envs) = p["envs"].as_object() {
        for (k, v) in envs {
            command.env(k, v.as_str().unwrap_or_default());
        }
    }
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return end_err("internal", &format!("error starting process: {e}")),
    };
    let pid = child.id().unwrap_or(0);
    let deadline = rec.header("connect-timeout-ms").and_then(|v| v.parse::<u64>().ok()).filter(|ms| *ms > 0);
    let wait = child.wait_with_output();
    let (output, timed_out) = match deadline {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), wait).await {
            Ok(r) => (r.ok(), false),
            Err(_) => (None, true),
        },
        None => (wait.await.ok(), false),
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut out = frame(0, &json!({"event": {"start": {"pid": pid}}}));
    match output {
        Some(o) => {
            if !o.stdout.is_empty() {
                out.extend(frame(0, &json!({"event": {"data": {"stdout": b64(&o.stdout)}}})));
            }
            if !o.stderr.is_empty() {
                out.extend(frame(0, &json!({"event": {"data": {"stderr": b64(&o.stderr)}}})));
            }
            let code = o.status.code();
            let mut end = json!({"exited": code.is_some(), "status": format!("exit status {}", code.unwrap_or(-1))});
            // proto3 JSON omits zero values: a clean exit has no exitCode.
            match code {
                Some(0) => {}
                Some(c) => end["exitCode"] = json!(c),
                None => {
                    end = json!({"exitCode": -1, "status": "signal: killed", "error": "signal: killed"});
                }
            }
            out.extend(frame(0, &json!({"event": {"end": end}})));
            out.extend(frame(2, &json!({})));
        }
        None if timed_out => {
            out.extend(frame(0, &json!({"event": {"end": {"exitCode": -1, "status": "signal: killed", "error": "signal: killed"}}})));
            out.extend(frame(2, &json!({"error": {"code": "deadline_exceeded", "message": "context deadline exceeded"}})));
        }
        None => out.extend(frame(2, &json!({"error": {"code": "internal", "message": "error waiting for process"}}))),
    }
    raw(200, "application/connect+json", out)
}
