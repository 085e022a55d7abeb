//! E2B's sandbox objects (`Sandbox`, `ListedSandbox`, `SandboxDetail`) built from the
//! host's `get`/`list` rows, and the two metadata entries through which a sandbox
//! remembers, upstream, which key owns it and which template it was asked for, so both
//! survive a host restart.

use super::ids::SandboxRef;
use serde_json::{json, Map, Value};

/// Metadata naming the key that created the sandbox.
pub const OWNER_KEY: &str = "e2b_api_owner";
/// Metadata keeping the template id as the caller wrote it.
pub const TEMPLATE_KEY: &str = "e2b_api_template";
/// Metadata keys callers may not set: they are the API's own.
pub const RESERVED_PREFIX: &str = "e2b_api_";

/// What the API reports as envd's version: new enough that the SDK takes its modern
/// paths and injects no default user (≥ 0.4.0), old enough that it refuses by itself
/// what this API does not serve (file metadata at 0.6.2, watch options at 0.6.3).
pub const ENVD_VERSION: &str = "0.5.7";
pub const CLIENT_ID: &str = "sandbox-host";
/// `endAt` of a sandbox whose provider reports no end time (it runs until stopped or
/// idle), as E2B requires one.
pub const NO_END: &str = "9999-12-31T23:59:59Z";

/// The key that owns a host `get`/`list` row.
pub fn owner(row: &Value) -> Option<&str> {
    row["metadata"][OWNER_KEY].as_str()
}

/// The caller's own metadata, without the API's and the host's entries.
pub fn caller_metadata(row: &Value) -> Map<String, Value> {
    let mut m = row["metadata"].as_object().cloned().unwrap_or_default();
    m.retain(|k, _| !k.starts_with(RESERVED_PREFIX) && k != crate::calls::create::CREATED_BY);
    m
}

pub fn template_id(sandbox: &SandboxRef, row: &Value) -> String {
    match row["metadata"][TEMPLATE_KEY].as_str() {
        Some(t) => t.to_string(),
        None => format!("{}/{}", sandbox.provider, row["image"].as_str().unwrap_or_default()),
    }
}

/// `ListedSandbox`: every field the SDK requires. cpu, memory and disk sizes are 0:
/// no provider reports them in its list.
pub fn listed(sandbox: &SandboxRef, row: &Value) -> Value {
    json!({
        "templateID": template_id(sandbox, row),
        "sandboxID": sandbox.id(),
        "clientID": CLIENT_ID,
        "startedAt": row["started_at"],
        "endAt": row["ends_at"].as_str().unwrap_or(NO_END),
        "cpuCount": 0,
        "memoryMB": 0,
        "diskSizeMB": 0,
        "state": row["state"].as_str().unwrap_or("running"),
        "envdVersion": ENVD_VERSION,
        "metadata": caller_metadata(row),
    })
}

/// `SandboxDetail`: a listed sandbox plus its envd token.
pub fn detail(sandbox: &SandboxRef, row: &Value, envd_token: &str) -> Value {
    let mut v = listed(sandbox, row);
    v["envdAccessToken"] = json!(envd_token);
    v["domain"] = Value::Null;
    v
}

/// `Sandbox`, the answer to create and connect.
pub fn sandbox(template_id: &str, sandbox: &SandboxRef, envd_token: &str) -> Value {
    json!({
        "templateID": template_id,
        "sandboxID": sandbox.id(),
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": envd_token,
        "trafficAccessToken": null,
        "domain": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_becomes_a_listed_sandbox_without_the_apis_own_metadata() {
        let row = json!({
            "sandbox_id": "vm1", "image": "snapshot_base", "state": "paused",
            "started_at": "2026-12-01T00:00:00Z", "ends_at": null,
            "metadata": {"team": "x", OWNER_KEY: "alice", TEMPLATE_KEY: "base", crate::calls::create::CREATED_BY: "m1"},
        });
        let s = SandboxRef::new("morph", "vm1");
        assert_eq!(owner(&row), Some("alice"));
        let v = listed(&s, &row);
        assert_eq!(v["sandboxID"], "morph_vm1");
        assert_eq!(v["templateID"], "base");
        assert_eq!(v["state"], "paused");
        assert_eq!(v["endAt"], NO_END);
        assert_eq!(v["metadata"], json!({"team": "x"}));
        for required in ["clientID", "startedAt", "cpuCount", "memoryMB", "diskSizeMB", "envdVersion"] {
            assert!(!v[required].is_null(), "{required} is required by the SDK");
        }
    }

    #[test]
    fn without_the_template_entry_the_template_is_provider_and_image() {
        let row = json!({"image": "base", "metadata": {}});
        assert_eq!(template_id(&SandboxRef::new("e2b", "i1"), &row), "e2b/base");
    }
}
