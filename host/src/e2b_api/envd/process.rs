//! `process.Process/*`: `Start` runs the command with the host's streaming exec and
//! answers envd's event stream — `start` first, `data` as output is produced,
//! `keepalive` while the command is quiet, then `end` and the end-stream envelope.
//! `connect-timeout-ms` becomes the exec's deadline; a command past it ends the stream
//! with `deadline_exceeded`. `List` shows the commands this API is running.

use super::super::errors::ConnectError;
use super::super::http::{self, Reply};
use super::super::E2bApi;
use super::connect::{self, STREAM_CONTENT_TYPE};
use super::Target;
use crate::contract::shapes::Leaf;
use crate::runtime::output::{OutputChunk, OutputStream};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// envd's default when the SDK sends no `Keepalive-Ping-Interval`.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(50);

/// Commands running through this API, by the pid it gave them.
#[derive(Default)]
pub struct Processes {
    next_pid: AtomicU32,
    running: Mutex<HashMap<u32, Running>>,
}

struct Running {
    sandbox_id: String,
    config: Value,
    tag: Option<String>,
}

impl Processes {
    fn register(&self, sandbox_id: &str, config: Value, tag: Option<String>) -> u32 {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) + 1;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(pid, Running { sandbox_id: sandbox_id.to_string(), config, tag });
        pid
    }

    fn finish(&self, pid: u32) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
    }

    fn of(&self, sandbox_id: &str) -> Vec<Value> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<(u32, Value)> = running
            .iter()
            .filter(|(_, r)| r.sandbox_id == sandbox_id)
            .map(|(pid, r)| {
                let mut p = json!({ "pid": pid, "config": r.config });
                if let Some(tag) = &r.tag {
                    p["tag"] = json!(tag);
                }
                (*pid, p)
            })
            .collect();
        list.sort_by_key(|(pid, _)| *pid);
        list.into_iter().map(|(_, p)| p).collect()
    }

    fn has(&self, sandbox_id: &str, pid: u64) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        u32::try_from(pid).ok().and_then(|pid| running.get(&pid)).is_some_and(|r| r.sandbox_id == sandbox_id)
    }
}

/// The exec payload a `StartRequest` asks for.
fn exec_payload(target: &Target, message: &Value, deadline: Option<u64>) -> Result<Value, ConnectError> {
    let process = &message["process"];
    let cmd = process["cmd"]
        .as_str()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConnectError::new("invalid_argument", "process.cmd is required"))?;
    if !message["pty"].is_null() {
        return Err(ConnectError::new(
            "unimplemented",
            format!(
                "PTY sessions are not available on provider {:?} through this API; run the command without pty",
                target.sandbox.provider
            ),
        ));
    }
    // A field of the wrong type is refused, never dropped: the command would run otherwise.
    let wrong = |field: &str, want: &str| ConnectError::new("invalid_argument", format!("process.{field} must be {want}"));
    let args = match &process["args"] {
        Value::Null => Vec::new(),
        Value::Array(a) if a.iter().all(Value::is_string) => a.clone(),
        _ => return Err(wrong("args", "an array of strings")),
    };
    let envs = match &process["envs"] {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) if m.values().all(Value::is_string) => m.clone(),
        _ => return Err(wrong("envs", "an object of strings")),
    };
    let mut payload = json!({ "sandbox_id": target.sandbox.upstream_id, "cmd": cmd, "args": args, "env": envs });
    match &process["cwd"] {
        Value::Null => {}
        Value::String(c) if c.is_empty() => {}
        Value::String(c) => payload["cwd"] = json!(c),
        _ => return Err(wrong("cwd", "a string")),
    }
    if let Some(ms) = deadline {
        payload["timeout_ms"] = json!(ms);
    }
    Ok(payload)
}

pub struct StartOptions {
    /// `connect-timeout-ms`, if the SDK set a deadline.
    pub deadline_ms: Option<u64>,
    pub keepalive: Duration,
}

impl StartOptions {
    pub fn from_headers(headers: &hyper::HeaderMap) -> StartOptions {
        let number = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        StartOptions {
            deadline_ms: number("connect-timeout-ms").filter(|ms| *ms > 0),
            keepalive: number("keepalive-ping-interval").filter(|s| *s > 0).map(Duration::from_secs).unwrap_or(DEFAULT_KEEPALIVE),
        }
    }
}

pub async fn start(api: &Arc<E2bApi>, target: Target, message: Value, options: StartOptions) -> Reply {
    let payload = match exec_payload(&target, &message, options.deadline_ms) {
        Ok(p) => p,
        Err(e) => return connect::stream_error(&e),
    };
    let config = json!({
        "cmd": payload["cmd"],
        "args": payload["args"],
        "envs": payload["env"],
        "cwd": payload.get("cwd").cloned().unwrap_or(Value::Null),
    });
    let pid = api.processes.register(&target.id, config, message["tag"].as_str().map(str::to_string));
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let api = api.clone();
    tokio::spawn(async move {
        let stream = EventStream(tx);
        stream.send(json!({ "start": { "pid": pid } })).await;
        let ending = run(&api, &target, &payload, &stream, options.keepalive).await;
        api.processes.finish(pid);
        match ending {
            Ok(end) => {
                stream.send(json!({ "end": end })).await;
                stream.close(None).await;
            }
            Err(e) => stream.close(Some(&e)).await,
        }
    });
    http::streamed(STREAM_CONTENT_TYPE, rx)
}

/// Envelopes on their way to the SDK. A caller that went away (`disconnect()`) stops
/// receiving; the command still runs to its end, as envd's do.
struct EventStream(mpsc::Sender<Bytes>);

impl EventStream {
    async fn send(&self, event: Value) {
        let _ = self.0.send(connect::envelope(&json!({ "event": event }))).await;
    }

    async fn close(self, error: Option<&ConnectError>) {
        let _ = self.0.send(connect::end_stream(error)).await;
    }
}

fn data_event(chunk: &OutputChunk) -> Value {
    let key = match chunk.stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    };
    json!({ "data": { key: base64::engine::general_purpose::STANDARD.encode(&chunk.bytes) } })
}

/// Runs the exec, forwarding output and keepalives; returns the `end` event.
async fn run(api: &E2bApi, target: &Target, payload: &Value, stream: &EventStream, keepalive: Duration) -> Result<Value, ConnectError> {
    let (tap, mut chunks) = mpsc::unbounded_channel();
    let exec = api.host.call_streaming(&target.sandbox.provider, Leaf::Exec, payload, tap);
    tokio::pin!(exec);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let mut streamed = [0usize; 2];
    let answer = loop {
        tokio::select! {
            biased;
            Some(chunk) = chunks.recv() => {
                streamed[usize::from(chunk.stream == OutputStream::Stderr)] += chunk.bytes.len();
                stream.send(data_event(&chunk)).await;
            }
            done = &mut exec => break done,
            _ = ticks.tick() => stream.send(json!({ "keepalive": {} })).await,
        }
    };
    // Chunks the plugin wrote just before it returned.
    while let Ok(chunk) = chunks.try_recv() {
        streamed[usize::from(chunk.stream == OutputStream::Stderr)] += chunk.bytes.len();
        stream.send(data_event(&chunk)).await;
    }
    let answer = answer.map_err(|e| ConnectError::from_call(&e))?;
    // A plugin that cannot stream (world 0.1.0) gives its output only in the answer.
    for (i, (field, stream_kind)) in [("stdout", OutputStream::Stdout), ("stderr", OutputStream::Stderr)].into_iter().enumerate() {
        let text = answer[field].as_str().unwrap_or_default();
        if streamed[i] == 0 && !text.is_empty() {
            stream.send(data_event(&OutputChunk { stream: stream_kind, bytes: text.as_bytes().to_vec() })).await;
        }
    }
    end_event(&answer)
}

/// envd's `end` event for an exec answer; a timed-out command is an error instead.
fn end_event(answer: &Value) -> Result<Value, ConnectError> {
    if answer["timed_out"] == true {
        return Err(ConnectError::new("deadline_exceeded", "the command ran past its deadline (connect-timeout-ms) and was stopped"));
    }
    let code = answer["exit_code"].as_i64().unwrap_or(-1);
    let mut end = json!({ "exitCode": code, "exited": true, "status": format!("exit status {code}") });
    if code != 0 {
        end["error"] = json!(format!("exit status {code}"));
    }
    if answer["truncated"] == true {
        end["error"] = json!("output beyond the host's per-stream limit (limits.max_exec_output_kib) was cut");
    }
    Ok(end)
}

pub fn list(api: &E2bApi, target: &Target) -> Result<Value, ConnectError> {
    Ok(json!({ "processes": api.processes.of(&target.id) }))
}

pub fn send_signal(api: &E2bApi, target: &Target, message: &Value) -> Result<Value, ConnectError> {
    let pid = message["process"]["pid"].as_u64().unwrap_or(0);
    if !api.processes.has(&target.id, pid) {
        return Err(ConnectError::new("not_found", format!("process {pid} was not found in sandbox {}", target.id)));
    }
    Err(ConnectError::new(
        "unimplemented",
        format!(
            "provider {:?} cannot signal a running command through this API; process {pid} ends at its timeout",
            target.sandbox.provider
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2b_api::ids::SandboxRef;

    fn target() -> Target {
        Target { caller: first(), id: "morph_vm1".into(), sandbox: SandboxRef::new("morph", "vm1") }
    }

    fn first() -> crate::e2b_api::auth::Caller {
        let s = crate::e2b_api::Settings { insecure_no_auth: true, ..Default::default() };
        crate::e2b_api::auth::Keys::new(&s).identify(None).unwrap()
    }

    #[test]
    fn a_start_request_becomes_an_exec_of_the_upstream_sandbox() {
        let m = json!({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "pwd"], "envs": {"A": "1"}, "cwd": "/tmp"}, "stdin": false});
        let p = exec_payload(&target(), &m, Some(2000)).unwrap();
        assert_eq!(
            p,
            json!({"sandbox_id": "vm1", "cmd": "/bin/bash", "args": ["-l", "-c", "pwd"], "env": {"A": "1"}, "cwd": "/tmp", "timeout_ms": 2000})
        );
        assert_eq!(exec_payload(&target(), &json!({"process": {}}), None).unwrap_err().code, "invalid_argument");
        for bad in [json!({"cmd": "ls", "args": "-la"}), json!({"cmd": "ls", "envs": ["A=1"]}), json!({"cmd": "ls", "cwd": 7})] {
            assert_eq!(exec_payload(&target(), &json!({"process": bad}), None).unwrap_err().code, "invalid_argument", "{bad}");
        }
        let pty = json!({"process": {"cmd": "bash"}, "pty": {"size": {"rows": 1, "cols": 1}}});
        assert_eq!(exec_payload(&target(), &pty, None).unwrap_err().code, "unimplemented");
    }

    #[test]
    fn the_end_event_carries_the_exit_code_and_a_timeout_is_deadline_exceeded() {
        let end = end_event(&json!({"exit_code": 3, "timed_out": false})).unwrap();
        assert_eq!((end["exitCode"].as_i64(), end["error"].as_str()), (Some(3), Some("exit status 3")));
        assert!(end_event(&json!({"exit_code": 0})).unwrap().get("error").is_none());
        assert_eq!(end_event(&json!({"exit_code": -1, "timed_out": true})).unwrap_err().code, "deadline_exceeded");
        assert!(end_event(&json!({"exit_code": 0, "truncated": true})).unwrap()["error"].as_str().unwrap().contains("cut"));
    }

    #[test]
    fn running_commands_are_listed_per_sandbox_until_they_finish() {
        let p = Processes::default();
        let a = p.register("s1", json!({"cmd": "a"}), Some("t".into()));
        let b = p.register("s2", json!({"cmd": "b"}), None);
        assert_eq!(p.of("s1"), vec![json!({"pid": a, "config": {"cmd": "a"}, "tag": "t"})]);
        assert!(p.has("s2", u64::from(b)) && !p.has("s1", u64::from(b)));
        p.finish(a);
        assert!(p.of("s1").is_empty());
    }

    #[test]
    fn deadline_and_keepalive_come_from_the_headers() {
        let mut h = hyper::HeaderMap::new();
        h.insert("connect-timeout-ms", "2500".parse().unwrap());
        h.insert("keepalive-ping-interval", "7".parse().unwrap());
        let o = StartOptions::from_headers(&h);
        assert_eq!((o.deadline_ms, o.keepalive), (Some(2500), Duration::from_secs(7)));
        let o = StartOptions::from_headers(&hyper::HeaderMap::new());
        assert_eq!((o.deadline_ms, o.keepalive), (None, DEFAULT_KEEPALIVE));
    }
}
