//! Commands through envd's Connect RPC `process.Process` (e2b-dev/E2B
//! `spec/envd/process/process.proto`). `Start` is a server stream (JSON codec,
//! `application/connect+json`) of `StartResponse{event}`: `start{pid}` first, then
//! `data{stdout|stderr}` (base64 bytes) and `keepalive`, then `end{exitCode, exited}`
//! (proto3 JSON omits zero values, so a missing `exitCode` is 0) and the end-of-stream
//! envelope. Events are decoded as the stream arrives and each output chunk is written
//! at once. Stdin is fed with the unary `SendInput` and `CloseStdin` once the pid is known.

use crate::connect::{envelope, Frame, Frames};
use crate::envd::{envd_error, Target};
use base64::Engine as _;
use provider_kit::errors::{bad_input, error, not_found, unavailable};
use provider_kit::upstream::{Call, Streamed};
use provider_kit::wstd::time::Duration;
use provider_kit::{Error, ErrorKind, ExecRequest, ExecResult, Output};
use serde::Deserialize;
use serde_json::json;

/// E2B SDK's default command timeout.
const DEFAULT_EXEC_TIMEOUT_MS: u64 = 60_000;
/// Seconds between envd keepalive events, so silent commands do not look stalled.
const KEEPALIVE_SECS: u64 = 20;
/// Output kept per stream of the plugin's own helper commands (they print a line).
const MAX_COLLECTED_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// Where a command's output goes.
trait Sink {
    /// Appends to `stream`; false once that stream wants no more bytes.
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> bool;
}

/// The host's exec output: each chunk goes to the caller as it arrives.
impl Sink for Output<'_> {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> bool {
        match stream {
            Stream::Stdout => self.stdout(bytes),
            Stream::Stderr => self.stderr(bytes),
        }
    }
}

/// A helper command's output, kept whole (bounded).
#[derive(Default)]
struct Collected([Vec<u8>; 2]);

impl Sink for Collected {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> bool {
        let kept = &mut self.0[stream as usize];
        let room = MAX_COLLECTED_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        kept.len() < MAX_COLLECTED_BYTES
    }
}

#[derive(Debug, Deserialize)]
struct StartResponse {
    #[serde(default)]
    event: Event,
}

/// `ProcessEvent`; `keepalive` (and anything newer) is ignored.
#[derive(Debug, Deserialize, Default)]
struct Event {
    start: Option<StartEvent>,
    data: Option<DataEvent>,
    end: Option<EndEvent>,
}

#[derive(Debug, Deserialize)]
struct StartEvent {
    #[serde(default)]
    pid: u32,
}

#[derive(Debug, Deserialize)]
struct DataEvent {
    stdout: Option<String>,
    stderr: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EndEvent {
    #[serde(rename = "exitCode", default)]
    exit_code: i32,
    #[serde(default)]
    exited: bool,
}

#[derive(Debug, Deserialize, Default)]
struct EndOfStream {
    error: Option<ConnectError>,
}

#[derive(Debug, Deserialize)]
struct ConnectError {
    code: String,
    #[serde(default)]
    message: String,
}

/// How much more of one stream the sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    All,
    /// The sink said its budget is spent. It says so when the budget is exactly full
    /// too, before anything was cut: one more chunk is written so that later output is
    /// counted as cut (and the answer flagged truncated), then the stream is dropped.
    Spent,
    Nothing,
}

/// What the stream has told so far.
struct Progress {
    pid: Option<u32>,
    /// Per stream; past `Spent` the rest is not even decoded.
    wanted: [Want; 2],
    exit_code: Option<i32>,
    timed_out: bool,
}

impl Progress {
    fn new() -> Self {
        Progress { pid: None, wanted: [Want::All, Want::All], exit_code: None, timed_out: false }
    }

    fn apply(&mut self, event: Event, sink: &mut impl Sink) -> Result<(), Error> {
        if let Some(start) = event.start {
            self.pid = Some(start.pid);
        }
        if let Some(data) = event.data {
            for (stream, field) in [(Stream::Stdout, data.stdout), (Stream::Stderr, data.stderr)] {
                let want = &mut self.wanted[stream as usize];
                let Some(b64) = field.filter(|_| *want != Want::Nothing) else { continue };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| unavailable(format!("envd sent output that is not base64 ({e})")))?;
                let took_all = sink.write(stream, &bytes);
                *want = match (*want, took_all) {
                    (Want::All, true) => Want::All,
                    (Want::All, false) => Want::Spent,
                    _ => Want::Nothing,
                };
            }
        }
        if let Some(end) = event.end {
            // A process killed by a signal reports exited=false and exitCode -1.
            self.exit_code = Some(if end.exited { end.exit_code } else { -1 });
        }
        Ok(())
    }

    /// The end-of-stream envelope: `{}`, or the Connect error that ended the call.
    fn end_of_stream(&mut self, payload: &[u8]) -> Result<(), Error> {
        let end: EndOfStream = if payload.is_empty() {
            EndOfStream::default()
        } else {
            serde_json::from_slice(payload).map_err(|e| unavailable(format!("envd sent an unreadable end of stream ({e})")))?
        };
        let Some(err) = end.error else { return Ok(()) };
        let message = format!("envd process stream failed ({}): {}", err.code, err.message);
        match err.code.as_str() {
            "deadline_exceeded" => self.timed_out = true,
            "not_found" => return Err(not_found(message)),
            "invalid_argument" => return Err(bad_input(message)),
            "unauthenticated" | "permission_denied" => return Err(error(ErrorKind::AuthInvalid, message)),
            "resource_exhausted" => return Err(error(ErrorKind::RateLimited, message)),
            _ => return Err(unavailable(message)),
        }
        Ok(())
    }

    fn result(self) -> Result<ExecResult, Error> {
        match (self.exit_code, self.timed_out) {
            (_, true) => Ok(ExecResult { exit_code: -1, timed_out: true }),
            (Some(exit_code), false) => Ok(ExecResult { exit_code, timed_out: false }),
            (None, false) => Err(unavailable("envd's process stream ended without an end event")),
        }
    }
}

/// Runs `req.cmd` with `req.args` (no shell), honouring env, cwd, stdin and timeout,
/// writing its output into `output` as envd streams it.
pub async fn run(target: &Target, req: &ExecRequest, mut output: Output<'_>) -> Result<ExecResult, Error> {
    run_into(target, req, &mut output).await
}

/// Runs one of the plugin's own helper commands and returns its output whole.
async fn run_collected(target: &Target, req: &ExecRequest) -> Result<(ExecResult, Collected), Error> {
    let mut out = Collected::default();
    let result = run_into(target, req, &mut out).await?;
    Ok((result, out))
}

async fn run_into(target: &Target, req: &ExecRequest, sink: &mut impl Sink) -> Result<ExecResult, Error> {
    let mut stream = start(target, req).await?;
    let mut frames = Frames::default();
    let mut progress = Progress::new();
    let mut stdin = req.stdin.as_deref();
    while let Some(piece) = stream.chunk().await? {
        frames.feed(&piece);
        while let Some(frame) = frames.next_frame()? {
            match frame {
                Frame::Message(bytes) => {
                    let msg: StartResponse =
                        serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("envd sent an unreadable process event ({e})")))?;
                    progress.apply(msg.event, sink)?;
                    if let (Some(pid), Some(input)) = (progress.pid, stdin) {
                        stdin = None;
                        feed_stdin(target, pid, input).await?;
                    }
                }
                Frame::End(payload) => progress.end_of_stream(&payload)?,
            }
        }
    }
    frames.finish()?;
    progress.result()
}

/// Opens the `Start` stream: its status and headers, the body still to come.
async fn start(target: &Target, req: &ExecRequest) -> Result<Streamed, Error> {
    let timeout_ms = req.timeout_ms.unwrap_or(DEFAULT_EXEC_TIMEOUT_MS);
    let envs: serde_json::Map<String, serde_json::Value> = req.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    // Through a login shell, as E2B's SDKs run commands (PATH from the profile), but
    // exec'ing argv unchanged: no word splitting, and a missing command exits 127.
    let mut argv = vec!["-l".to_string(), "-c".to_string(), "exec \"$0\" \"$@\"".to_string(), req.cmd.clone()];
    argv.extend(req.args.iter().cloned());
    let mut process = json!({ "cmd": "/bin/bash", "args": argv, "envs": envs });
    if let Some(cwd) = &req.cwd {
        process["cwd"] = json!(cwd);
    }
    // Without stdin the command reads end-of-file at once (envd's default is an open pipe).
    let message = serde_json::to_vec(&json!({ "process": process, "stdin": req.stdin.is_some() })).unwrap_or_default();
    let stream = target
        .call(Call::post(format!("{}/process.Process/Start", target.base)))
        .header("content-type", "application/connect+json")
        .header("connect-protocol-version", "1")
        // envd runs the process under this deadline and kills it when it passes.
        .header("connect-timeout-ms", timeout_ms.to_string())
        .header("keepalive-ping-interval", KEEPALIVE_SECS.to_string())
        .body(envelope(0, &message))
        .timeout(Duration::from_secs(KEEPALIVE_SECS * 3))
        .open()
        .await?;
    if !stream.is_success() {
        return Err(envd_error(&stream.into_reply().await?, "process.Process/Start"));
    }
    Ok(stream)
}

/// Writes `bytes` to the process's stdin, then closes it so the command reads EOF.
async fn feed_stdin(target: &Target, pid: u32, bytes: &[u8]) -> Result<(), Error> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    unary(target, "SendInput", json!({ "process": { "pid": pid }, "input": { "stdin": b64 } })).await?;
    unary(target, "CloseStdin", json!({ "process": { "pid": pid } })).await
}

/// A unary Connect call (JSON body; success is 200 with a JSON object).
async fn unary(target: &Target, method: &str, body: serde_json::Value) -> Result<(), Error> {
    let call = Call::post(format!("{}/process.Process/{method}", target.base)).header("connect-protocol-version", "1").json(&body);
    let reply = target.call(call).send().await?;
    if !reply.is_success() {
        return Err(envd_error(&reply, &format!("process.Process/{method}")));
    }
    Ok(())
}

/// Applies `mode` after an upload (envd's upload has no mode parameter).
pub async fn chmod(target: &Target, path: &str, mode: u32) -> Result<(), Error> {
    let req = ExecRequest {
        sandbox_id: target.sandbox_id.clone(),
        cmd: "chmod".into(),
        args: vec![format!("{:o}", mode & 0o7777), path.to_string()],
        env: Vec::new(),
        cwd: None,
        timeout_ms: Some(10_000),
        stdin: None,
    };
    let (result, out) = run_collected(target, &req).await?;
    if result.exit_code != 0 {
        let stderr = String::from_utf8_lossy(&out.0[Stream::Stderr as usize]).trim().to_string();
        return Err(bad_input(format!("the file was written but chmod {:o} failed: {stderr}", mode & 0o7777)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        serde_json::from_str::<StartResponse>(json).unwrap().event
    }

    #[test]
    fn a_missing_exit_code_is_zero_and_a_killed_process_is_minus_one() {
        let mut p = Progress::new();
        p.apply(event(r#"{"event":{"end":{"exited":true,"status":"exit status 0"}}}"#), &mut Collected::default()).unwrap();
        assert_eq!(p.exit_code, Some(0));
        p.apply(event(r#"{"event":{"end":{"exitCode":-1,"status":"signal: killed"}}}"#), &mut Collected::default()).unwrap();
        assert_eq!(p.exit_code, Some(-1));
    }

    /// A sink that records what it was offered and takes at most `budget` bytes.
    struct Budget {
        budget: usize,
        offered: Vec<usize>,
    }

    impl Sink for Budget {
        fn write(&mut self, _: Stream, bytes: &[u8]) -> bool {
            self.offered.push(bytes.len());
            self.offered.iter().sum::<usize>() < self.budget
        }
    }

    fn data(stream: &str, bytes: &[u8]) -> Event {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        event(&format!(r#"{{"event":{{"data":{{"{stream}":"{b64}"}}}}}}"#))
    }

    #[test]
    fn data_goes_to_its_stream_until_the_sink_wants_no_more() {
        let (mut p, mut sink) = (Progress::new(), Collected::default());
        p.apply(event(r#"{"event":{"start":{"pid":7}}}"#), &mut sink).unwrap();
        assert_eq!(p.pid, Some(7));
        p.apply(data("stdout", &vec![b'a'; MAX_COLLECTED_BYTES]), &mut sink).unwrap();
        p.apply(data("stderr", b"oops\n"), &mut sink).unwrap();
        assert_eq!(p.wanted, [Want::Spent, Want::All], "stdout is full, stderr is not");
        p.apply(data("stdout", b"more"), &mut sink).unwrap();
        // Past that a chunk is neither decoded nor kept: even a malformed one.
        p.apply(event(r#"{"event":{"data":{"stdout":"!!"}}}"#), &mut sink).unwrap();
        assert_eq!((sink.0[0].len(), sink.0[1].as_slice()), (MAX_COLLECTED_BYTES, &b"oops\n"[..]));
        assert!(p.apply(event(r#"{"event":{"data":{"stderr":"!!"}}}"#), &mut sink).is_err());
    }

    #[test]
    fn a_budget_filled_exactly_still_sees_the_next_chunk_so_the_cut_is_counted() {
        let (mut p, mut sink) = (Progress::new(), Budget { budget: 8, offered: Vec::new() });
        for _ in 0..4 {
            p.apply(data("stdout", b"abcd"), &mut sink).unwrap();
        }
        assert_eq!(sink.offered, [4, 4, 4], "full after two chunks; the third shows the host there was more; no fourth");
    }

    #[test]
    fn end_of_stream_errors_map_to_kinds_and_a_deadline_is_a_timeout() {
        let mut p = Progress::new();
        p.end_of_stream(br#"{"error":{"code":"deadline_exceeded","message":"context deadline exceeded"}}"#).unwrap();
        assert!(matches!(p.result(), Ok(ExecResult { exit_code: -1, timed_out: true })));
        let kind = |code: &str| Progress::new().end_of_stream(format!(r#"{{"error":{{"code":"{code}"}}}}"#).as_bytes()).unwrap_err().kind;
        assert_eq!(kind("not_found"), ErrorKind::NotFound);
        assert_eq!(kind("unauthenticated"), ErrorKind::AuthInvalid);
        assert_eq!(kind("resource_exhausted"), ErrorKind::RateLimited);
        assert_eq!(kind("internal"), ErrorKind::Unavailable);
        assert!(Progress::new().result().is_err(), "no end event");
    }
}
