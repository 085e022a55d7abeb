//! Commands: `POST /v1/sandboxes/{id}/cmd` starts one detached and answers it at once;
//! `GET …/cmd/{cmdId}` reports it (with `wait=true`, once it has exited); `GET
//! …/cmd/{cmdId}/logs` is its output as NDJSON `LogLine`s; `POST …/{id}/{cmdId}/kill`
//! signals it (SDK 1.10.2 `runCommand`, `getCommand`, `getLogs`, `killCommand`).
//!
//! The executable runs as a local process with `args` as its argv (no shell), in the
//! command's `cwd` (see the module doc of [`super`] for how paths map). Assumptions where
//! the SDK is silent: an executable that does not exist exits 127 with a `command not
//! found` line on stderr, as a shell would report it; a command ended by a signal exits
//! 128 + the signal; killing one that has exited is 400; commands on a stopped sandbox
//! are 404. The logs answer is sent once the command has ended (Vercel streams it while
//! it runs; the lines are the same).

use super::{error, new_id, not_found, now_ms, State, SANDBOX_CWD};
use crate::server::{json, raw, Reply};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// Longest a simulated command may run (only so a forgotten test process ends).
const EXEC_CAP: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

pub struct Cmd {
    id: String,
    name: String,
    args: Vec<String>,
    cwd: String,
    sandbox_id: String,
    started_at: u64,
    pid: Option<u32>,
    /// Output in the order it was read.
    output: Mutex<Vec<(Stream, Vec<u8>)>>,
    exit: tokio::sync::watch::Sender<Option<i32>>,
}

impl Cmd {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "args": self.args, "cwd": self.cwd,
            "sandboxId": self.sandbox_id, "exitCode": *self.exit.borrow(), "startedAt": self.started_at,
        })
    }

    fn push(&self, stream: Stream, bytes: &[u8]) {
        self.output.lock().unwrap().push((stream, bytes.to_vec()));
    }

    async fn exited(&self) -> Option<i32> {
        let mut rx = self.exit.subscribe();
        let _ = tokio::time::timeout(EXEC_CAP, rx.wait_for(Option::is_some)).await;
        *self.exit.borrow()
    }
}

/// Every command, by sandbox and command id.
#[derive(Default)]
pub struct Commands(Mutex<BTreeMap<(String, String), Arc<Cmd>>>);

impl Commands {
    fn get(&self, sandbox: &str, cmd: &str) -> Option<Arc<Cmd>> {
        self.0.lock().unwrap().get(&(sandbox.to_string(), cmd.to_string())).cloned()
    }

    /// SIGKILLs the running commands of a sandbox that stops.
    pub fn kill_all(&self, sandbox: &str) {
        for c in self.0.lock().unwrap().values().filter(|c| c.sandbox_id == sandbox && c.exit.borrow().is_none()) {
            signal(c, 9);
        }
    }
}

fn signal(c: &Cmd, sig: i64) {
    if let Some(pid) = c.pid {
        let _ = std::process::Command::new("kill").arg("-s").arg(sig.to_string()).arg(pid.to_string()).status();
    }
}

/// The sandbox's root and environment, when it runs.
fn running(st: &State, id: &str) -> Result<(PathBuf, BTreeMap<String, String>), Reply> {
    match st.sandboxes.lock().unwrap().get(id) {
        Some(s) if s.is_live() => Ok((s.root.path().to_path_buf(), s.env.clone())),
        Some(s) => Err(error(404, "not_found", &format!("Sandbox {id} is {}", s.status))),
        None => Err(not_found(id)),
    }
}

/// `POST /v1/sandboxes/{id}/cmd` `{command, args?, cwd?, env?}` → `{command}`, running.
pub fn start(st: &State, id: &str, body: &Value) -> Reply {
    let (root, sandbox_env) = match running(st, id) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let name = body["command"].as_str().unwrap_or_default().to_string();
    let args: Vec<String> =
        body["args"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
    let cwd = body["cwd"].as_str().unwrap_or(SANDBOX_CWD).to_string();
    // The sandbox's own directory maps into its root; other absolute paths are the machine's.
    let local_cwd = match cwd.strip_prefix(SANDBOX_CWD) {
        Some(rest) => root.join(SANDBOX_CWD.trim_start_matches('/')).join(rest.trim_start_matches('/')),
        None if cwd.starts_with('/') => PathBuf::from(&cwd),
        None => root.join(SANDBOX_CWD.trim_start_matches('/')).join(&cwd),
    };
    let mut cmd = tokio::process::Command::new(&name);
    cmd.args(&args).current_dir(&local_cwd).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
    cmd.env("HOME", root.join(SANDBOX_CWD.trim_start_matches('/'))).env("USER", "vercel-sandbox");
    cmd.envs(&sandbox_env);
    if let Some(env) = body["env"].as_object() {
        cmd.envs(env.iter().filter_map(|(k, v)| Some((k, v.as_str()?))));
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let (child, missing) = match cmd.spawn() {
        Ok(c) => (Some(c), false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && local_cwd.is_dir() => (None, true),
        Err(e) => return error(400, "bad_request", &format!("cannot run {name:?} in {cwd}: {e}")),
    };
    let c = Arc::new(Cmd {
        id: new_id("cmd", st),
        name: name.clone(),
        args,
        cwd,
        sandbox_id: id.to_string(),
        started_at: now_ms(),
        pid: child.as_ref().and_then(|c| c.id()),
        output: Mutex::default(),
        exit: tokio::sync::watch::channel(None).0,
    });
    st.commands.0.lock().unwrap().insert((id.to_string(), c.id.clone()), c.clone());
    let answer = json(200, &json!({ "command": c.json() }));
    match child {
        Some(child) => {
            tokio::spawn(pump(child, c));
        }
        None if missing => {
            c.push(Stream::Stderr, format!("{name}: command not found\n").as_bytes());
            c.exit.send_replace(Some(127));
        }
        None => {}
    }
    answer
}

/// Collects a running command's output until it exits (or [`EXEC_CAP`] passes).
async fn pump(mut child: tokio::process::Child, c: Arc<Cmd>) {
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else { return };
    let (mut ob, mut eb) = (vec![0u8; 8192], vec![0u8; 8192]);
    let (mut out_open, mut err_open) = (true, true);
    let cap = tokio::time::sleep(EXEC_CAP);
    tokio::pin!(cap);
    while out_open || err_open {
        tokio::select! {
            n = out.read(&mut ob), if out_open => match n { Ok(n) if n > 0 => c.push(Stream::Stdout, &ob[..n]), _ => out_open = false },
            n = err.read(&mut eb), if err_open => match n { Ok(n) if n > 0 => c.push(Stream::Stderr, &eb[..n]), _ => err_open = false },
            _ = &mut cap => { let _ = child.start_kill(); break; }
        }
    }
    let code = match child.wait().await {
        Ok(s) => s.code().or_else(|| s.signal().map(|sig| 128 + sig)).unwrap_or(-1),
        Err(_) => -1,
    };
    c.exit.send_replace(Some(code));
}

/// `GET /v1/sandboxes/{id}/cmd/{cmdId}[?wait=true]` → `{command}`.
pub async fn get(st: &State, id: &str, cmd: &str, wait: bool) -> Reply {
    let Some(c) = st.commands.get(id, cmd) else { return error(404, "not_found", &format!("Command {cmd} not found")) };
    if wait {
        c.exited().await;
    }
    json(200, &json!({ "command": c.json() }))
}

/// `GET /v1/sandboxes/{id}/cmd/{cmdId}/logs` → `application/x-ndjson`, one `LogLine` per
/// run of output on one stream (runs are merged so a character is never split between two).
pub async fn logs(st: &State, id: &str, cmd: &str) -> Reply {
    let Some(c) = st.commands.get(id, cmd) else { return error(404, "not_found", &format!("Command {cmd} not found")) };
    c.exited().await;
    let mut runs: Vec<(Stream, Vec<u8>)> = Vec::new();
    for (stream, bytes) in c.output.lock().unwrap().iter() {
        match runs.last_mut() {
            Some((s, b)) if s == stream => b.extend_from_slice(bytes),
            _ => runs.push((*stream, bytes.clone())),
        }
    }
    let mut body = Vec::new();
    for (stream, bytes) in runs {
        let name = if stream == Stream::Stdout { "stdout" } else { "stderr" };
        body.extend(serde_json::to_vec(&json!({ "stream": name, "data": String::from_utf8_lossy(&bytes) })).unwrap_or_default());
        body.push(b'\n');
    }
    raw(200, "application/x-ndjson", body)
}

/// `POST /v1/sandboxes/{id}/{cmdId}/kill` `{signal}` → `{command}`.
pub fn kill(st: &State, id: &str, cmd: &str, body: &Value) -> Reply {
    if let Err(r) = running(st, id) {
        return r;
    }
    let Some(c) = st.commands.get(id, cmd) else { return error(404, "not_found", &format!("Command {cmd} not found")) };
    if c.exit.borrow().is_some() {
        return error(400, "command_finished", &format!("Command {cmd} has already finished"));
    }
    signal(&c, body["signal"].as_i64().unwrap_or(15));
    json(200, &json!({ "command": c.json() }))
}
