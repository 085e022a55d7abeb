//! `envd`, the daemon inside every E2B sandbox (port 49983).
//! Processes: Connect RPC `process.Process/Start` (server streaming, JSON codec: 5-byte
//! envelopes, `application/connect+json`; proto3 JSON omits zero values, so a missing
//! `exitCode` is 0). Files: `GET /files?path=` (raw bytes), `POST /files?path=`
//! (multipart field `file`). Shapes: e2b-dev/E2B `spec/envd/process/process.proto`,
//! `spec/envd/envd.yaml`.

use crate::api;
use base64::Engine as _;
use provider_kit::errors::{bad_input, not_found, unavailable};
use provider_kit::upstream::{encode, multipart_file, Call, Reply};
use provider_kit::wstd::time::Duration;
use provider_kit::{config, Error, ExecRequest, ExecResult, Output};
use serde::Deserialize;
use serde_json::json;

const ENVD_PORT: u16 = 49983;
/// E2B SDK's default command timeout.
const DEFAULT_EXEC_TIMEOUT_MS: u64 = 60_000;
/// Seconds between envd keepalive events, so silent commands do not look stalled.
const KEEPALIVE_SECS: u64 = 20;
/// Largest stdout/stderr kept per stream.
const MAX_OUTPUT_BYTES: usize = 8 << 20;

/// Where and how to reach one sandbox's envd.
pub struct Target {
    sandbox_id: String,
    base: String,
    token: Option<String>,
}

impl Target {
    /// Looks the sandbox up (404 → not-found, so S410 comes before any envd call).
    pub async fn resolve(sandbox_id: &str) -> Result<Self, Error> {
        let detail = api::detail(sandbox_id).await?;
        if detail.state.as_deref() == Some("paused") {
            return Err(bad_input(format!(
                "sandbox {sandbox_id} is paused (snapshotted); resume it before running commands or touching files"
            )));
        }
        let base = match config::get("envd-url").filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://{ENVD_PORT}-{sandbox_id}.{}", detail.domain()),
        };
        Ok(Target { sandbox_id: sandbox_id.to_string(), base, token: detail.envd_access_token.filter(|t| !t.is_empty()) })
    }

    fn call(&self, call: Call) -> Call {
        let call = call.header("e2b-sandbox-id", self.sandbox_id.clone()).header("e2b-sandbox-port", ENVD_PORT.to_string());
        match &self.token {
            Some(t) => call.header("x-access-token", t.clone()),
            None => call,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
struct StartResponse {
    #[serde(default)]
    event: Event,
}

#[derive(Debug, Deserialize, Default)]
struct Event {
    start: Option<serde_json::Value>,
    data: Option<DataEvent>,
    end: Option<EndEvent>,
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

/// Runs `req.cmd` with `req.args` (no shell), honouring env, cwd and timeout.
pub async fn run(target: &Target, req: &ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
    let (out, exit_code) = run_collected(target, req).await?;
    Ok(output.finished(&out.stdout_text(), &out.stderr_text(), exit_code, out.timed_out))
}

/// Runs a command and collects its whole output (for the plugin's own helper commands).
async fn run_collected(target: &Target, req: &ExecRequest) -> Result<(Collected, i32), Error> {
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
    let message = serde_json::to_vec(&json!({ "process": process, "stdin": false })).unwrap_or_default();
    let reply = target
        .call(Call::post(format!("{}/process.Process/Start", target.base)))
        .header("content-type", "application/connect+json")
        .header("connect-protocol-version", "1")
        // envd runs the process under this deadline and kills it when it passes.
        .header("connect-timeout-ms", timeout_ms.to_string())
        .header("keepalive-ping-interval", KEEPALIVE_SECS.to_string())
        .body(envelope(0, &message))
        .timeout(Duration::from_secs(KEEPALIVE_SECS * 3))
        .send()
        .await?;
    if !reply.is_success() {
        return Err(envd_error(&reply, "process.Process/Start"));
    }
    let mut out = Collected::default();
    for frame in frames(&reply.body)? {
        match frame {
            Frame::Message(bytes) => {
                let msg: StartResponse =
                    serde_json::from_slice(bytes).map_err(|e| unavailable(format!("envd sent an unreadable process event ({e})")))?;
                out.apply(msg.event)?;
            }
            Frame::End(bytes) => {
                let end: EndOfStream = if bytes.is_empty() {
                    EndOfStream::default()
                } else {
                    serde_json::from_slice(bytes).map_err(|e| unavailable(format!("envd sent an unreadable end of stream ({e})")))?
                };
                if let Some(err) = end.error {
                    match err.code.as_str() {
                        "deadline_exceeded" => out.timed_out = true,
                        "not_found" => return Err(not_found(format!("envd: {}", err.message))),
                        "invalid_argument" => return Err(bad_input(format!("envd rejected the command: {}", err.message))),
                        _ => return Err(unavailable(format!("envd process stream failed ({}): {}", err.code, err.message))),
                    }
                }
            }
        }
    }
    let Some(exit_code) = out.exit_code.or(out.timed_out.then_some(-1)) else {
        return Err(unavailable("envd's process stream ended without an end event"));
    };
    Ok((out, exit_code))
}

#[derive(Default)]
struct Collected {
    started: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_code: Option<i32>,
    timed_out: bool,
}

impl Collected {
    fn apply(&mut self, event: Event) -> Result<(), Error> {
        if event.start.is_some() {
            self.started = true;
        }
        if let Some(data) = event.data {
            for (field, sink) in [(data.stdout, &mut self.stdout), (data.stderr, &mut self.stderr)] {
                if let Some(b64) = field {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| unavailable(format!("envd sent output that is not base64 ({e})")))?;
                    let room = MAX_OUTPUT_BYTES.saturating_sub(sink.len());
                    sink.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
        }
        if let Some(end) = event.end {
            // A process killed by a signal reports exited=false and exitCode -1.
            self.exit_code = Some(if end.exited { end.exit_code } else { -1 });
        }
        Ok(())
    }
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub async fn read_file(target: &Target, path: &str) -> Result<Vec<u8>, Error> {
    let reply = target.call(Call::get(format!("{}/files?path={}", target.base, encode(path)))).send().await?;
    if !reply.is_success() {
        return Err(envd_error(&reply, "GET /files"));
    }
    Ok(reply.body)
}

pub async fn write_file(target: &Target, path: &str, bytes: &[u8]) -> Result<(), Error> {
    let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("file");
    let (content_type, body) = multipart_file("file", name, bytes);
    let reply = target
        .call(Call::post(format!("{}/files?path={}", target.base, encode(path))))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    if !reply.is_success() {
        return Err(envd_error(&reply, "POST /files"));
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
    let (out, exit_code) = run_collected(target, &req).await?;
    if exit_code != 0 {
        return Err(bad_input(format!("the file was written but chmod {:o} failed: {}", mode & 0o7777, out.stderr_text().trim())));
    }
    Ok(())
}

/// envd answers errors as `{code, message}` with an HTTP status; the proxy answers 502
/// for a sandbox that is not running.
fn envd_error(reply: &Reply, what: &str) -> Error {
    let mut e = reply.error();
    e.message = format!("envd {what}: {}", e.message);
    e
}

fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(flags);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

enum Frame<'a> {
    Message(&'a [u8]),
    End(&'a [u8]),
}

/// Splits a Connect streaming body into frames.
fn frames(mut body: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(unavailable("envd's process stream was cut inside a frame header"));
        }
        let flags = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() < 5 + len {
            return Err(unavailable("envd's process stream was cut inside a frame"));
        }
        if flags & 0x01 != 0 {
            return Err(unavailable("envd sent a compressed frame, which was not negotiated"));
        }
        let payload = &body[5..5 + len];
        out.push(if flags & 0x02 != 0 { Frame::End(payload) } else { Frame::Message(payload) });
        body = &body[5 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_messages_and_end_of_stream() {
        let mut body = envelope(0, br#"{"event":{"start":{"pid":7}}}"#);
        body.extend(envelope(2, b"{}"));
        let f = frames(&body).unwrap();
        assert!(matches!(f[0], Frame::Message(_)) && matches!(f[1], Frame::End(b"{}")));
        assert!(frames(&body[..7]).is_err());
    }

    #[test]
    fn a_missing_exit_code_is_zero_and_a_killed_process_is_minus_one() {
        let mut c = Collected::default();
        c.apply(serde_json::from_str::<StartResponse>(r#"{"event":{"end":{"exited":true,"status":"exit status 0"}}}"#).unwrap().event)
            .unwrap();
        assert_eq!(c.exit_code, Some(0));
        c.apply(serde_json::from_str::<StartResponse>(r#"{"event":{"end":{"exitCode":-1,"status":"signal: killed"}}}"#).unwrap().event)
            .unwrap();
        assert_eq!(c.exit_code, Some(-1));
    }
}
