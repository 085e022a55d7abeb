//! JSON Schemas of each leaf's input and output, registered with every iii function so
//! callers and tools can see the contract. Generated from one table, the same shapes
//! `validate` enforces and `shapes::reply` produces.

use super::shapes::Leaf;
use serde_json::{json, Value};

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn id() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9_:-][A-Za-z0-9._:-]*$"})
}

/// Input schema of `leaf`. `with_provider` adds the router's optional `provider` field.
pub fn request(leaf: Leaf, with_provider: bool) -> Value {
    let mut s = match leaf {
        Leaf::Create => object(
            json!({
                "image": {"type": "string", "description": "template / image / snapshot to start from"},
                "idle_timeout_secs": {"type": "integer", "minimum": 1},
                "env": string_map(),
                "metadata": string_map(),
            }),
            &["image"],
        ),
        Leaf::Exec => object(
            json!({
                "sandbox_id": id(),
                "cmd": {"type": "string", "minLength": 1},
                "args": {"type": "array", "items": {"type": "string"}},
                "env": string_map(),
                "cwd": {"type": "string"},
                "timeout_ms": {"type": "integer", "minimum": 1},
            }),
            &["sandbox_id", "cmd"],
        ),
        Leaf::Stop | Leaf::Snapshot => object(json!({"sandbox_id": id()}), &["sandbox_id"]),
        Leaf::List => object(json!({}), &[]),
        Leaf::Branch => object(
            json!({"sandbox_id": id(), "count": {"type": "integer", "minimum": 1, "maximum": u32::MAX, "default": 2}}),
            &["sandbox_id"],
        ),
        Leaf::ExposePort => {
            object(json!({"sandbox_id": id(), "port": {"type": "integer", "minimum": 1, "maximum": 65535}}), &["sandbox_id", "port"])
        }
        Leaf::FsRead => object(json!({"sandbox_id": id(), "path": {"type": "string", "minLength": 1}}), &["sandbox_id", "path"]),
        Leaf::FsWrite => object(
            json!({
                "sandbox_id": id(),
                "path": {"type": "string", "minLength": 1},
                "bytes_base64": {"type": "string", "contentEncoding": "base64"},
                "mode": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
            }),
            &["sandbox_id", "path", "bytes_base64"],
        ),
    };
    if with_provider {
        s["properties"]["provider"] = json!({"type": "string", "description": "provider plugin name; default_provider when absent"});
    }
    s
}

/// Output schema of `leaf`.
pub fn response(leaf: Leaf) -> Value {
    let sandbox = object(
        json!({"sandbox_id": {"type": "string"}, "image": {"type": "string"}, "started_at": {"type": "string", "format": "date-time"}}),
        &["sandbox_id", "image", "started_at"],
    );
    match leaf {
        Leaf::Create => object(
            json!({
                "sandbox_id": {"type": "string"}, "image": {"type": "string"},
                "capabilities": {"type": "array", "items": {"enum": ["snapshot", "branch", "expose_port", "fs"]}},
                "started_at": {"type": "string", "format": "date-time"},
            }),
            &["sandbox_id", "image", "capabilities", "started_at"],
        ),
        Leaf::Exec => object(
            json!({"stdout": {"type": "string"}, "stderr": {"type": "string"}, "exit_code": {"type": "integer"}, "timed_out": {"type": "boolean"}}),
            &["stdout", "stderr", "exit_code", "timed_out"],
        ),
        Leaf::Stop | Leaf::FsWrite => object(json!({}), &[]),
        Leaf::List => object(
            json!({
                "sandboxes": {"type": "array", "items": sandbox},
                "in_flight": {"type": "integer", "minimum": 0}, "cap": {"type": "integer", "minimum": 1},
                "remaining": {"type": "integer", "minimum": 0}, "reconciled": {"type": "boolean"},
                "reconcile_error": {"type": "string", "description": "why the upstream list failed, when reconciled is false"},
            }),
            &["sandboxes", "in_flight", "cap", "remaining", "reconciled"],
        ),
        Leaf::Snapshot => object(json!({"snapshot_id": {"type": "string"}}), &["snapshot_id"]),
        Leaf::Branch => object(json!({"sandbox_ids": {"type": "array", "items": {"type": "string"}}}), &["sandbox_ids"]),
        Leaf::ExposePort => object(json!({"url": {"type": "string", "format": "uri"}}), &["url"]),
        Leaf::FsRead => object(json!({"bytes_base64": {"type": "string", "contentEncoding": "base64"}}), &["bytes_base64"]),
    }
}
