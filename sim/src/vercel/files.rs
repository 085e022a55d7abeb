//! Files: `POST /v1/sandboxes/{id}/fs/read` `{path, cwd?}` answers the bytes
//! (`application/octet-stream`, 404 when missing); `POST …/fs/write` takes a
//! gzip-compressed tar archive and extracts it under the `x-cwd` directory (SDK 1.10.2
//! `readFile`, `writeFiles` with its `FileWriter`: tar-stream entries, gzipped).
//!
//! Extraction is the machine's own `tar` (GNU or BSD), into the sandbox's root: entry
//! names are relative to `x-cwd`, parents are created, modes kept, owners not.

use super::{error, not_found, State, SANDBOX_CWD};
use crate::server::{json, raw, Recorded, Reply};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

pub fn read(st: &State, id: &str, body: &Value) -> Reply {
    let sandboxes = st.sandboxes.lock().unwrap();
    let Some(s) = sandboxes.get(id).filter(|s| s.is_live()) else { return not_found(id) };
    let path = body["path"].as_str().unwrap_or_default();
    let path = match body["cwd"].as_str() {
        Some(cwd) if !path.starts_with('/') => format!("{}/{path}", cwd.trim_end_matches('/')),
        _ => path.to_string(),
    };
    match std::fs::read(s.local(&path)) {
        Ok(bytes) => raw(200, "application/octet-stream", bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => error(404, "file_not_found", &format!("File {path} not found")),
        Err(e) => error(400, "bad_request", &format!("cannot read {path}: {e}")),
    }
}

pub async fn write(st: &State, id: &str, rec: &Recorded) -> Reply {
    let dir = {
        let sandboxes = st.sandboxes.lock().unwrap();
        let Some(s) = sandboxes.get(id).filter(|s| s.is_live()) else { return not_found(id) };
        s.local(rec.header("x-cwd").unwrap_or(SANDBOX_CWD))
    };
    if !rec.body.starts_with(&[0x1f, 0x8b]) {
        return error(400, "bad_request", "the body is not a gzip stream");
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return error(400, "bad_request", &format!("cannot create {}: {e}", dir.display()));
    }
    let child = tokio::process::Command::new("tar")
        .arg("-xzf")
        .arg("-")
        .arg("--no-same-owner")
        .arg("-C")
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return error(500, "internal_error", &format!("cannot run tar: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&rec.body).await;
    }
    match child.wait_with_output().await {
        Ok(o) if o.status.success() => json(200, &json!({})),
        Ok(o) => error(400, "bad_request", &format!("the archive could not be extracted: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => error(500, "internal_error", &e.to_string()),
    }
}
