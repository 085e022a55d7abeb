//! `POST /sandboxes/{id}/snapshots` (spec `SandboxSnapshotRequest {name?}` → 201
//! `SnapshotInfo {snapshotID, names}`): the sandbox's files kept as a template that new
//! sandboxes start from (`templateID` = the snapshot id). The sandbox keeps running.

use super::{error, not_found, State};
use crate::server::{json, Recorded, Reply};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// A snapshot template: the files new sandboxes start from.
#[derive(Debug)]
pub struct Snapshot {
    pub files: tempfile::TempDir,
}

pub fn create(st: &State, id: &str, rec: &Recorded) -> Reply {
    let body = rec.json();
    if !body.is_object() {
        return error(400, "request body has an error: value must be an object");
    }
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return error(400, "request body has an error: property \"name\" must be a string"),
    };
    let boxes = st.sandboxes.lock().unwrap();
    let Some(sandbox) = boxes.get(id) else { return not_found(id) };
    let files = match tempfile::Builder::new().prefix("e2b-sim-snap-").tempdir() {
        Ok(d) => d,
        Err(e) => return error(500, &format!("cannot snapshot: {e}")),
    };
    if let Err(e) = crate::files::copy_tree(sandbox.root.path(), files.path()) {
        return error(500, &format!("cannot snapshot: {e}"));
    }
    let n = st.snapshot_counter.fetch_add(1, Ordering::Relaxed);
    let snapshot_id = match &name {
        Some(name) => format!("sim-team/{name}:default"),
        None => format!("snap{n:04}{}:default", &sandbox.template_id[..8.min(sandbox.template_id.len())]),
    };
    let snapshot = Snapshot { files };
    drop(boxes);
    st.snapshots.lock().unwrap().insert(snapshot_id.clone(), snapshot);
    json(201, &json!({ "snapshotID": snapshot_id, "names": [snapshot_id] }))
}
