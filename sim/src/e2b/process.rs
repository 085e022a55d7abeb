//! envd's `process.Process` service (`spec/envd/process/process.proto`): `Start` runs a
//! real local process and streams its events as they happen (one Connect envelope per
//! read of its stdout or stderr, flushed at once), `SendInput` and `CloseStdin` feed the
//! stdin of one started with `stdin: true`. The deadline comes from `connect-timeout-ms`
//! and kills the process, as envd's `context.WithTimeout` does; keepalive events follow
//! `keepalive-ping-interval`. A client that goes away kills its process.

use super::envd::{resolve, Target};
use super::State;
use crate::server::{json, raw, streamed, Recorded, Reply};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;

/// The stdin of one process started with `stdin: true`: its sandbox, and the writer
/// task's queue (dropping it closes the pipe).
struct Stdin {
    sandbox: String,
    queue: UnboundedSender<Vec<u8>>,
}

/// Every open stdin, by pid.
#[derive(Default)]
pub(super) struct Table(Mutex<HashMap<u32, Stdin>>);

const CONTENT_TYPE: &str = "application/connect+json";

fn frame(flags: u8, v: &Value) -> Bytes {
    let msg = serde_json::to_vec(v).unwrap_or_default();
    let mut out = vec![flags];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    Bytes::from(out)
}

fn event(v: Value) -> Bytes {
    frame(0, &json!({ "event": v }))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Connect unary error: HTTP status and `{code, message}` with the lower-case code.
fn unary_error(status: u16, code: &str, message: &str) -> Reply {
    json(status, &json!({ "code": code, "message": message }))
}

pub(super) fn start(st: &Arc<State>, t: &Target, rec: &Recorded) -> Reply {
    if rec.header("content-type") != Some(CONTENT_TYPE) {
        return unary_error(415, "unknown", "unsupported content type");
    }
    let end_err = |code: &str, msg: &str| raw(200, CONTENT_TYPE, frame(2, &json!({"error": {"code": code, "message": msg}})).to_vec());
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
    // `optional bool stdin = 4`: absent means true ("for backwards compatibility").
    let with_stdin = msg["stdin"].as_bool().unwrap_or(true);
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
    let stdin = if with_stdin { std::process::Stdio::piped() } else { std::process::Stdio::null() };
    command.stdin(stdin).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return end_err("internal", &format!("error starting process: {e}")),
    };
    let pid = child.id().unwrap_or(0);
    if let Some(mut input) = child.stdin.take() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        st.processes.0.lock().unwrap().insert(pid, Stdin { sandbox: t.id.clone(), queue: tx });
        // Writes in the order received; the sender dropped (CloseStdin, exit) is EOF.
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if input.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
    }
    let header_ms = |name: &str, unit: u64| rec.header(name).and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0).map(|n| n * unit);
    let run = Run {
        deadline: header_ms("connect-timeout-ms", 1).map(Duration::from_millis),
        keepalive: header_ms("keepalive-ping-interval", 1000).map(Duration::from_millis),
    };
    let (reply, tx) = streamed(200, CONTENT_TYPE);
    let st = st.clone();
    tokio::spawn(async move {
        run.pump(pid, child, &tx).await;
        st.processes.0.lock().unwrap().remove(&pid);
    });
    reply
}

struct Run {
    deadline: Option<Duration>,
    keepalive: Option<Duration>,
}

/// How the process's stream ended.
enum Ending {
    Exited(std::process::ExitStatus),
    DeadlinePassed,
    /// The client went away (the process is killed as the child drops).
    Gone,
}

impl Run {
    async fn pump(&self, pid: u32, mut child: tokio::process::Child, tx: &UnboundedSender<Bytes>) {
        let send = |b: Bytes| tx.send(b).is_ok();
        if !send(event(json!({ "start": { "pid": pid } }))) {
            return;
        }
        let ending = self.forward(&mut child, &send).await;
        let (end, end_of_stream) = match ending {
            Ending::Gone => return,
            Ending::Exited(status) => (end_event(status), json!({})),
            Ending::DeadlinePassed => {
                let _ = child.kill().await;
                let killed = json!({ "exitCode": -1, "status": "signal: killed", "error": "signal: killed" });
                (killed, json!({ "error": { "code": "deadline_exceeded", "message": "context deadline exceeded" } }))
            }
        };
        if send(event(json!({ "end": end }))) {
            send(frame(2, &end_of_stream));
        }
    }

    /// Copies stdout and stderr into data events as they are read, until both close and
    /// the process exits, the deadline passes or the client is gone.
    async fn forward(&self, child: &mut tokio::process::Child, send: &impl Fn(Bytes) -> bool) -> Ending {
        const FOREVER: Duration = Duration::from_secs(365 * 86_400);
        let deadline = tokio::time::sleep(self.deadline.unwrap_or(FOREVER));
        tokio::pin!(deadline);
        let mut keepalive = tokio::time::interval(self.keepalive.unwrap_or(FOREVER));
        keepalive.tick().await;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let (mut out_buf, mut err_buf) = (vec![0u8; 32 << 10], vec![0u8; 32 << 10]);
        while out.is_some() || err.is_some() {
            let (stream, read) = tokio::select! {
                r = read_some(&mut out, &mut out_buf), if out.is_some() => ("stdout", r),
                r = read_some(&mut err, &mut err_buf), if err.is_some() => ("stderr", r),
                _ = keepalive.tick() => {
                    if !send(event(json!({ "keepalive": {} }))) { return Ending::Gone; }
                    continue;
                }
                _ = &mut deadline => return Ending::DeadlinePassed,
            };
            let buf = if stream == "stdout" { &out_buf } else { &err_buf };
            match read {
                Some(n) => {
                    if !send(event(json!({ "data": { stream: b64(&buf[..n]) } }))) {
                        return Ending::Gone;
                    }
                }
                None if stream == "stdout" => out = None,
                None => err = None,
            }
        }
        tokio::select! {
            status = child.wait() => match status {
                Ok(s) => Ending::Exited(s),
                Err(_) => Ending::Gone,
            },
            _ = &mut deadline => Ending::DeadlinePassed,
        }
    }
}

/// Bytes read from `pipe` into `buf`: `None` at end of file or on an error.
async fn read_some(pipe: &mut Option<impl AsyncReadExt + Unpin>, buf: &mut [u8]) -> Option<usize> {
    match pipe.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// `EndEvent` in proto3 JSON, which omits zero values: a clean exit has no `exitCode`.
fn end_event(status: std::process::ExitStatus) -> Value {
    match status.code() {
        Some(0) => json!({ "exited": true, "status": "exit status 0" }),
        Some(c) => json!({ "exitCode": c, "exited": true, "status": format!("exit status {c}"), "error": format!("exit status {c}") }),
        // Killed by a signal: envd reports ExitCode() -1 and exited false.
        None => json!({ "exitCode": -1, "status": "signal: killed", "error": "signal: killed" }),
    }
}

/// The writer for `{"process": {"pid": N}}` of sandbox `t`, or the Connect error.
fn selected(st: &State, t: &Target, rec: &Recorded, take: bool) -> Result<(Value, UnboundedSender<Vec<u8>>), Box<Reply>> {
    if !rec.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err(Box::new(unary_error(415, "unknown", "unsupported content type")));
    }
    let body = rec.json();
    let Some(pid) = body["process"]["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
        return Err(Box::new(unary_error(400, "invalid_argument", "process.pid is required")));
    };
    let mut table = st.processes.0.lock().unwrap();
    let found = match table.get(&pid) {
        Some(stdin) if stdin.sandbox == t.id => stdin.queue.clone(),
        _ => return Err(Box::new(unary_error(404, "not_found", &format!("process with pid {pid} not found")))),
    };
    if take {
        table.remove(&pid);
    }
    Ok((body, found))
}

pub(super) fn send_input(st: &State, t: &Target, rec: &Recorded) -> Reply {
    let (body, tx) = match selected(st, t, rec, false) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(bytes) = body["input"]["stdin"].as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()) else {
        return unary_error(400, "invalid_argument", "input.stdin must be base64 bytes");
    };
    let _ = tx.send(bytes);
    json(200, &json!({}))
}

/// Drops the process's writer: once what was sent is written, its stdin reads EOF.
pub(super) fn close_stdin(st: &State, t: &Target, rec: &Recorded) -> Reply {
    match selected(st, t, rec, true) {
        Ok(_) => json(200, &json!({})),
        Err(r) => *r,
    }
}
