//! The simulated sandboxes' envd: routing by `E2b-Sandbox-Id` / `E2b-Sandbox-Port`, the
//! access token, what E2B's edge proxy answers for a sandbox that is not running, and
//! the `/files` routes (`spec/envd/envd.yaml`). Processes are in [`super::process`].

use super::{process, State};
use crate::server::{json, raw, Recorded, Reply};
use crate::spec::{self, contract::Contract, exempt};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// envd is checked against `spec/envd/envd.yaml` (paths from the server root).
pub(super) static CONTRACT: Contract =
    Contract { locate: |rec| Ok((spec::e2b_envd(), rec.path.clone())), reject: |_, status, message| envd_error(status, message) };

pub(super) fn envd_error(status: u16, message: &str) -> Reply {
    json(status, &json!({ "code": status, "message": message }))
}

/// The sandbox an envd request reached.
pub(super) struct Target {
    pub id: String,
    pub root: PathBuf,
    pub env_vars: BTreeMap<String, String>,
}

fn target(st: &State, rec: &Recorded) -> Result<Target, Box<Reply>> {
    let Some(id) = rec.header("e2b-sandbox-id") else {
        return Err(Box::new(exempt::mark(raw(400, "text/plain", b"Invalid host".to_vec()), "e2b:edge-proxy")));
    };
    if rec.header("e2b-sandbox-port") != Some("49983") {
        return Err(Box::new(exempt::mark(raw(400, "text/plain", b"Missing header: E2b-Sandbox-Port".to_vec()), "e2b:edge-proxy")));
    }
    let boxes = st.sandboxes.lock().unwrap();
    let Some(s) = boxes.get(id).filter(|s| !s.paused) else {
        // What E2B's edge proxy answers for a sandbox that is not running (gone or paused).
        let proxy = json(502, &json!({ "sandboxId": id, "message": "The sandbox was not found", "code": 502 }));
        return Err(Box::new(exempt::mark(proxy, "e2b:edge-proxy")));
    };
    if let Some(t) = &s.token {
        if rec.header("x-access-token") != Some(t.as_str()) {
            return Err(Box::new(envd_error(401, "unauthorized access, please provide a valid access token")));
        }
    }
    Ok(Target { id: id.to_string(), root: s.root.path().to_path_buf(), env_vars: s.env_vars.clone() })
}

pub(super) async fn serve(st: &Arc<State>, rec: Recorded) -> Reply {
    let target = match target(st, &rec) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match (rec.method.as_str(), rec.path.as_str()) {
        ("POST", "/process.Process/Start") => process::start(st, &target, &rec),
        ("POST", "/process.Process/SendInput") => process::send_input(st, &target, &rec),
        ("POST", "/process.Process/CloseStdin") => process::close_stdin(st, &target, &rec),
        ("GET", "/files") => read_file(&target, &rec),
        ("POST", "/files") => write_file(&target, &rec),
        _ => envd_error(404, &format!("no envd route {} {}", rec.method, rec.path)),
    }
}

pub(super) fn resolve(root: &Path, path: &str) -> PathBuf {
    if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        root.join(path)
    }
}

fn read_file(t: &Target, rec: &Recorded) -> Reply {
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

fn write_file(t: &Target, rec: &Recorded) -> Reply {
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
