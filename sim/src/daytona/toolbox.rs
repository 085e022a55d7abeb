//! The toolbox daemon inside each sandbox, behind the proxy: sessions ([`super::session`])
//! and files (toolbox.json `files/…`; behaviour from v0.190.0 `apps/daemon/pkg/toolbox/fs`).
//! Errors are the daemon's `ErrorResponse {statusCode, message, path, method, timestamp}`.
//!
//! `files/upload-v2` takes multipart `file` or a raw body, creates missing parents and
//! answers `UploadedFile`; `files/upload` is the route of daemons before it, modelled as
//! built with a gin older than 1.9, whose `SaveUploadedFile` created no parents.

use super::{error, not_found, session, State};
use crate::server::{empty, json, raw, Recorded, Reply};
use crate::spec::exempt;
use chrono::Utc;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// What a toolbox call works on: the sandbox's directory, env and sessions.
pub(super) struct Target {
    pub root: PathBuf,
    pub env: BTreeMap<String, String>,
    pub sessions: session::Sessions,
}

pub(super) fn daemon_error(status: u16, message: &str, rec: &Recorded) -> Reply {
    json(
        status,
        &json!({
            "statusCode": status, "message": message, "path": rec.path, "method": rec.method,
            "timestamp": Utc::now().to_rfc3339(), "source": "DAYTONA_DAEMON",
        }),
    )
}

pub(super) async fn route(st: &State, id: &str, rest: &[&str], rec: &Recorded) -> Reply {
    let target = {
        let mut boxes = st.sandboxes.lock().unwrap();
        match boxes.get_mut(id) {
            None => return not_found(id),
            Some(s) => {
                super::expire(s);
                if s.state == "destroyed" {
                    return not_found(id);
                }
                if !super::is_live(&s.state) {
                    // What the proxy answers when the sandbox's daemon is not running.
                    return error(400, format!("Sandbox {id} is not started (state: {})", s.state));
                }
                Target { root: s.root.path().to_path_buf(), env: s.env.clone(), sessions: s.sessions.clone() }
            }
        }
    };
    match (rec.method.as_str(), rest) {
        (_, ["process", "session", more @ ..]) => session::route(&target, more, rec).await,
        ("GET", ["files", "download"]) => download(&target, rec),
        ("POST", ["files", "upload-v2"]) if !st.no_upload_v2.load(Ordering::Relaxed) => upload(&target, rec, true),
        ("POST", ["files", "upload"]) => upload(&target, rec, false),
        ("POST", ["files", "folder"]) => folder(&target, rec),
        ("POST", ["files", "permissions"]) => permissions(&target, rec),
        // gin's answer for a route the daemon does not have (upload-v2: one that predates it).
        (_, ["files", "upload-v2"]) => exempt::mark(raw(404, "text/plain", b"404 page not found".to_vec()), "daytona:old-daemon"),
        _ => raw(404, "text/plain", b"404 page not found".to_vec()),
    }
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        root.join(path)
    }
}

fn path_param(rec: &Recorded) -> Result<String, Reply> {
    rec.query_param("path").filter(|p| !p.is_empty()).ok_or_else(|| daemon_error(400, "path is required", rec))
}

fn download(t: &Target, rec: &Recorded) -> Reply {
    let path = match path_param(rec) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let full = resolve(&t.root, &path);
    if full.is_dir() {
        return daemon_error(400, "path must be a file", rec);
    }
    match std::fs::read(&full) {
        Ok(bytes) => {
            let mut r = raw(200, "application/octet-stream", bytes);
            let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Ok(v) = format!("attachment; filename={name}").parse() {
                r.headers_mut().insert("content-disposition", v);
            }
            r
        }
        Err(e) => io_error(&e, rec),
    }
}

fn io_error(e: &std::io::Error, rec: &Recorded) -> Reply {
    match e.kind() {
        std::io::ErrorKind::NotFound => daemon_error(404, "file not found", rec),
        std::io::ErrorKind::PermissionDenied => daemon_error(403, "permission denied", rec),
        _ => daemon_error(400, &e.to_string(), rec),
    }
}

/// `upload-v2` (`v2`) or the old `upload`.
fn upload(t: &Target, rec: &Recorded, v2: bool) -> Reply {
    let path = match path_param(rec) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let multipart = rec.header("content-type").is_some_and(|c| c.starts_with("multipart/form-data"));
    let bytes = match (multipart, v2) {
        (true, _) => crate::e2b::multipart_file_part(rec),
        (false, true) => Some(rec.body.clone()),
        (false, false) => None,
    };
    let Some(bytes) = bytes else { return daemon_error(400, "http: no such file", rec) };
    let full = resolve(&t.root, &path);
    if full.is_dir() {
        return daemon_error(400, "path is a directory", rec);
    }
    if v2 {
        if let Some(parent) = full.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    if let Err(e) = std::fs::write(&full, &bytes) {
        return daemon_error(400, &e.to_string(), rec);
    }
    if !v2 {
        return empty(200);
    }
    let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    json(200, &json!({ "name": name, "path": full.to_string_lossy(), "type": "file" }))
}

fn mode_param(rec: &Recorded) -> Result<Option<u32>, Reply> {
    match rec.query_param("mode").filter(|m| !m.is_empty()) {
        None => Ok(None),
        Some(m) => u32::from_str_radix(&m, 8).map(Some).map_err(|_| daemon_error(400, "invalid mode format", rec)),
    }
}

/// `os.MkdirAll(path, mode)` → 201.
fn folder(t: &Target, rec: &Recorded) -> Reply {
    let (path, mode) = match (path_param(rec), mode_param(rec)) {
        (Ok(p), Ok(m)) => (p, m.unwrap_or(0o755)),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let full = resolve(&t.root, &path);
    match std::fs::create_dir_all(&full).and_then(|_| std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))) {
        Ok(()) => empty(201),
        Err(e) => daemon_error(400, &e.to_string(), rec),
    }
}

/// chmod (owner and group are not modelled) → 200; 404 for a missing path.
fn permissions(t: &Target, rec: &Recorded) -> Reply {
    let (path, mode) = match (path_param(rec), mode_param(rec)) {
        (Ok(p), Ok(m)) => (p, m),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let full = resolve(&t.root, &path);
    if let Err(e) = std::fs::metadata(&full) {
        return io_error(&e, rec);
    }
    if let Some(mode) = mode {
        if let Err(e) = std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)) {
            return daemon_error(400, &format!("failed to change mode: {e}"), rec);
        }
    }
    empty(200)
}
