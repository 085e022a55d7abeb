//! The daemon's shell sessions (toolbox.json `process/session…`; behaviour from v0.190.0
//! `apps/daemon/pkg/session`): create, get, delete (terminating the session's process
//! tree), execute sync or async, a command's details and its logs.
//!
//! A command runs as a real `sh -c <command>` in the sandbox's directory, stdin at EOF.
//! Its output goes through the daemon's labeller: one log holding each stdout line behind
//! `\x01\x01\x01` and each stderr line behind `\x02\x02\x02`, every line (an unterminated
//! last one too) ending in `\n`, NUL bytes dropped (the daemon's `while read -r line`). The
//! log grows while the command runs; the exit code is recorded once both streams ended.
//! Clients sending `X-Daytona-SDK-Version` ≥ 0.167.0 get `{output, stdout, stderr}` split
//! by the server; others the combined output without labels (plain text for the logs).

use super::toolbox::{daemon_error, Target};
use crate::server::{empty, json, raw, Recorded, Reply};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

pub const STDOUT_PREFIX: &[u8] = &[1, 1, 1];
pub const STDERR_PREFIX: &[u8] = &[2, 2, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The daemon's line labeller for one stream.
#[derive(Debug, Default)]
pub struct Labeller {
    pending: Vec<u8>,
}

impl Labeller {
    /// Appends every line completed by `bytes` to `log`, labelled for `stream`.
    pub fn feed(&mut self, stream: Stream, bytes: &[u8], log: &mut Vec<u8>) {
        for &b in bytes {
            match b {
                b'\n' => Self::emit(stream, &std::mem::take(&mut self.pending), log),
                0 => {}
                _ => self.pending.push(b),
            }
        }
    }

    /// At the stream's end: an unterminated last line is written with a newline.
    pub fn finish(&mut self, stream: Stream, log: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            Self::emit(stream, &std::mem::take(&mut self.pending), log);
        }
    }

    fn emit(stream: Stream, line: &[u8], log: &mut Vec<u8>) {
        log.extend_from_slice(if stream == Stream::Stdout { STDOUT_PREFIX } else { STDERR_PREFIX });
        log.extend_from_slice(line);
        log.push(b'\n');
    }
}

/// A labelled log split into (stdout, stderr), and the combined output without labels.
fn demux(log: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut out, mut err, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let mut current = Stream::Stdout;
    let mut i = 0;
    while i < log.len() {
        if log[i..].starts_with(STDOUT_PREFIX) {
            (current, i) = (Stream::Stdout, i + 3);
        } else if log[i..].starts_with(STDERR_PREFIX) {
            (current, i) = (Stream::Stderr, i + 3);
        } else {
            if current == Stream::Stdout { &mut out } else { &mut err }.push(log[i]);
            all.push(log[i]);
            i += 1;
        }
    }
    (out, err, all)
}

pub struct Command {
    id: String,
    command: String,
    log: Mutex<Vec<u8>>,
    exit: watch::Sender<Option<i32>>,
    pgid: Option<u32>,
}

impl Command {
    fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    fn dto(&self) -> Value {
        let mut v = json!({ "id": self.id, "command": self.command });
        if let Some(code) = self.exit_code() {
            v["exitCode"] = json!(code);
        }
        v
    }

    fn signal(&self, sig: &str) {
        if let (Some(pgid), None) = (self.pgid, self.exit_code()) {
            let _ = std::process::Command::new("kill").args([sig, "--", &format!("-{pgid}")]).status();
        }
    }
}

pub struct Session {
    id: String,
    commands: Mutex<Vec<Arc<Command>>>,
    cancelled: watch::Sender<bool>,
}

impl Session {
    fn kill(&self) {
        self.cancelled.send_replace(true);
        for c in self.commands.lock().unwrap().iter() {
            c.signal("-CONT");
            c.signal("-KILL");
        }
    }

    fn command(&self, id: &str) -> Option<Arc<Command>> {
        self.commands.lock().unwrap().iter().find(|c| c.id == id).cloned()
    }
}

/// A sandbox's sessions, shared with the toolbox handlers.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<BTreeMap<String, Arc<Session>>>>);

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.lock().unwrap().keys()).finish()
    }
}

impl Sessions {
    /// The daemon stopped: every session and its processes end.
    pub fn kill_all(&self) {
        for s in std::mem::take(&mut *self.0.lock().unwrap()).values() {
            s.kill();
        }
    }

    /// Freezes (`-STOP`) or thaws (`-CONT`) every running command, as a VM pause does.
    pub fn signal_all(&self, sig: &str) {
        for s in self.0.lock().unwrap().values() {
            s.commands.lock().unwrap().iter().for_each(|c| c.signal(sig));
        }
    }

    /// Session ids, for tests (left over after an exec means it was not deleted).
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }

    fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.0.lock().unwrap().get(id).cloned()
    }
}

/// Whether the client gets split stdout/stderr (`X-Daytona-SDK-Version` ≥ 0.167.0).
fn split(rec: &Recorded) -> bool {
    let Some(v) = rec.header("x-daytona-sdk-version") else { return false };
    let parts: Vec<u64> = v.trim_start_matches('v').split(['.', '-']).take(3).map(|p| p.parse().unwrap_or(0)).collect();
    parts.len() == 3 && (parts[0], parts[1], parts[2]) >= (0, 167, 0)
}

pub(super) async fn route(t: &Target, rest: &[&str], rec: &Recorded) -> Reply {
    match (rec.method.as_str(), rest) {
        ("POST", []) => create(t, rec),
        ("GET", [sid]) => match t.sessions.get(sid) {
            Some(s) => {
                let commands: Vec<Value> = s.commands.lock().unwrap().iter().map(|c| c.dto()).collect();
                json(200, &json!({ "sessionId": s.id, "commands": commands }))
            }
            None => daemon_error(404, "session not found", rec),
        },
        ("DELETE", [sid]) => match t.sessions.0.lock().unwrap().remove(*sid) {
            Some(s) => {
                s.kill();
                empty(204)
            }
            None => daemon_error(404, "session not found", rec),
        },
        ("POST", [sid, "exec"]) => exec(t, sid, rec).await,
        ("GET", [sid, "command", cid]) => match t.sessions.get(sid).and_then(|s| s.command(cid)) {
            Some(c) => json(200, &c.dto()),
            None => daemon_error(404, "command not found", rec),
        },
        ("GET", [sid, "command", cid, "logs"]) => match t.sessions.get(sid).map(|s| s.command(cid)) {
            None => daemon_error(404, "session not found", rec),
            Some(None) => daemon_error(404, "command not found", rec),
            Some(Some(c)) => {
                let (out, err, all) = demux(&c.log.lock().unwrap());
                if split(rec) {
                    let log = String::from_utf8_lossy(&c.log.lock().unwrap()).into_owned();
                    json(200, &json!({ "output": log, "stdout": lossy(&out), "stderr": lossy(&err) }))
                } else {
                    raw(200, "text/plain; charset=utf-8", all)
                }
            }
        },
        _ => daemon_error(404, &format!("404 page not found: {} {}", rec.method, rec.path), rec),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn create(t: &Target, rec: &Recorded) -> Reply {
    let Some(id) = rec.json().get("sessionId").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string) else {
        return daemon_error(400, "invalid request body: sessionId is required", rec);
    };
    let mut sessions = t.sessions.0.lock().unwrap();
    if sessions.contains_key(&id) {
        return daemon_error(409, "session already exists", rec);
    }
    let (cancelled, _) = watch::channel(false);
    sessions.insert(id.clone(), Arc::new(Session { id, commands: Mutex::default(), cancelled }));
    empty(201)
}

async fn exec(t: &Target, sid: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    let Some(command) = body.get("command").and_then(Value::as_str).filter(|c| !c.trim().is_empty()) else {
        return daemon_error(400, "command cannot be empty", rec);
    };
    let run_async = [body.get("runAsync"), body.get("async")].into_iter().flatten().any(|v| v.as_bool() == Some(true));
    let Some(session) = t.sessions.get(sid) else { return daemon_error(404, "session not found", rec) };
    let cmd = match spawn(t, command) {
        Ok(c) => c,
        Err(e) => return daemon_error(400, &format!("failed to execute command: {e}"), rec),
    };
    session.commands.lock().unwrap().push(cmd.clone());
    if run_async {
        return json(202, &json!({ "cmdId": cmd.id }));
    }
    let (mut done, mut cancelled) = (cmd.exit.subscribe(), session.cancelled.subscribe());
    loop {
        let (finished, gone) = (*done.borrow_and_update(), *cancelled.borrow_and_update());
        if let Some(code) = finished {
            let log = cmd.log.lock().unwrap().clone();
            let (out, err, all) = demux(&log);
            return if split(rec) {
                json(
                    200,
                    &json!({ "cmdId": cmd.id, "output": lossy(&log), "stdout": lossy(&out), "stderr": lossy(&err), "exitCode": code }),
                )
            } else {
                json(200, &json!({ "cmdId": cmd.id, "output": lossy(&all), "exitCode": code }))
            };
        }
        if gone {
            return daemon_error(400, "failed to execute command: session cancelled", rec);
        }
        tokio::select! {
            _ = done.changed() => {}
            _ = cancelled.changed() => {}
        }
    }
}

fn spawn(t: &Target, command: &str) -> std::io::Result<Arc<Command>> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).current_dir(&t.root).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()));
    cmd.env("HOME", &t.root).env("USER", "daytona").envs(&t.env);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.process_group(0).kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let (exit, _) = watch::channel(None);
    let id = command_id();
    let c = Arc::new(Command { id, command: command.to_string(), log: Mutex::default(), exit, pgid: child.id() });
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let c2 = c.clone();
    tokio::spawn(async move {
        let r1 = tokio::spawn(label(out, Stream::Stdout, c2.clone()));
        let r2 = tokio::spawn(label(err, Stream::Stderr, c2.clone()));
        let status = child.wait().await;
        // The daemon writes the exit code only after its labellers flushed the log.
        let _ = (r1.await, r2.await);
        let code = status.ok().map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))).unwrap_or(-1);
        c2.exit.send_replace(Some(code));
    });
    Ok(c)
}

async fn label(pipe: Option<impl tokio::io::AsyncRead + Unpin>, stream: Stream, c: Arc<Command>) {
    let Some(mut pipe) = pipe else { return };
    let (mut labeller, mut buf) = (Labeller::default(), vec![0u8; 8192]);
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => labeller.feed(stream, &buf[..n], &mut c.log.lock().unwrap()),
        }
    }
    labeller.finish(stream, &mut c.log.lock().unwrap());
}

/// A unique command id (the daemon uses a UUID).
fn command_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", nanos as u32, (nanos >> 32) as u16, n & 0xfff, (nanos >> 48) & 0xfff, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labeller_ends_every_line_and_drops_nul() {
        let mut log = Vec::new();
        let mut l = Labeller::default();
        l.feed(Stream::Stdout, b"a\0b\nc", &mut log);
        l.finish(Stream::Stdout, &mut log);
        assert_eq!(log, b"\x01\x01\x01ab\n\x01\x01\x01c\n");
        let (out, err, all) = demux(&log);
        assert_eq!((out.as_slice(), err.as_slice(), all.as_slice()), (&b"ab\nc\n"[..], &b""[..], &b"ab\nc\n"[..]));
    }
}
