//! JSON Schemas of each leaf's input and output, registered with every iii function so
//! callers and tools can see the contract. Generated from one table, the same shapes
//! `validate` enforces and `shapes::reply` produces.

use super::shapes::{Capability, Leaf};

/// Every capability, for the `capabilities` enum.
const ALL_CAPABILITIES: [Capability; 10] = [
    Capability::Snapshot,
    Capability::Branch,
    Capability::ExposePort,
    Capability::Fs,
    Capability::Get,
    Capability::SetTimeout,
    Capability::Pause,
    Capability::ExecStdin,
    Capability::NetworkOff,
    Capability::Sizing,
];
use serde_json::{json, Value};

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

/// An object of strings, or the engine daemon's list of `"K=V"`.
fn env() -> Value {
    json!({"oneOf": [string_map(), {"type": "array", "items": {"type": "string", "pattern": "^[^=]+="}}]})
}

fn lifetime() -> Value {
    json!({"type": "integer", "minimum": 1, "description": "seconds from now; at most limits.max_timeout_secs"})
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
                "env": env(),
                "metadata": string_map(),
                "name": {"type": "string", "description": "a label, kept as metadata `name`"},
                "cpus": {"type": "integer", "minimum": 1, "description": "honoured by providers with `sizing`, else listed in `ignored`"},
                "memory_mb": {"type": "integer", "minimum": 1},
                "network": {"type": "boolean", "description": "false needs `network_off`, else S404"},
            }),
            &["image"],
        ),
        Leaf::Exec => object(
            json!({
                "sandbox_id": id(),
                "cmd": {"type": "string", "minLength": 1, "description": "executable, or a whole command line (shlex-split) without `args`"},
                "args": {"type": "array", "items": {"type": "string"}},
                "argv": {"type": "array", "items": {"type": "string"}, "description": "instead of cmd/args"},
                "env": env(),
                "cwd": {"type": "string"},
                "workdir": {"type": "string", "description": "synonym of cwd"},
                "timeout_ms": {"type": "integer", "minimum": 1},
                "stdin": {"type": "string", "contentEncoding": "base64", "description": "needs `exec_stdin`"},
                "stream": {"type": "object", "description": "iii channel writer ref: output chunks as they are produced"},
            }),
            &["sandbox_id"],
        ),
        Leaf::Stop | Leaf::Snapshot | Leaf::Get | Leaf::Pause => object(json!({"sandbox_id": id()}), &["sandbox_id"]),
        Leaf::SetTimeout => object(json!({"sandbox_id": id(), "timeout_secs": lifetime()}), &["sandbox_id", "timeout_secs"]),
        Leaf::Resume => object(json!({"sandbox_id": id(), "timeout_secs": lifetime()}), &["sandbox_id"]),
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
                "content_b64": {"type": "string", "contentEncoding": "base64", "description": "synonym of bytes_base64"},
                "content": {"type": "string", "description": "the file as UTF-8 text; exactly one body field"},
                "mode": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 0o7777}, {"type": "string", "pattern": "^(0o)?[0-7]{1,4}$"}]},
                "parents": {"type": "boolean"},
            }),
            &["sandbox_id", "path"],
        ),
    };
    if with_provider {
        s["properties"]["provider"] = json!({"type": "string", "description": "provider plugin name; default_provider when absent"});
    }
    s
}

/// Output schema of `leaf`.
pub fn response(leaf: Leaf) -> Value {
    let state = json!({"enum": ["running", "paused"]});
    let sandbox = object(
        json!({
            "sandbox_id": {"type": "string"}, "image": {"type": "string"}, "started_at": {"type": "string", "format": "date-time"},
            "state": state, "name": {"type": ["string", "null"]}, "age_secs": {"type": "integer", "minimum": 0},
        }),
        &["sandbox_id", "image", "started_at", "state", "age_secs"],
    );
    let caps: Vec<&str> = ALL_CAPABILITIES.iter().map(|c| c.as_str()).collect();
    match leaf {
        Leaf::Create => object(
            json!({
                "sandbox_id": {"type": "string"}, "image": {"type": "string"},
                "capabilities": {"type": "array", "items": {"enum": caps}},
                "started_at": {"type": "string", "format": "date-time"},
                "state": state, "name": {"type": "string"}, "ends_at": {"type": "string", "format": "date-time"},
                "ignored": {"type": "array", "items": {"type": "string"}, "description": "create fields this provider cannot honour"},
            }),
            &["sandbox_id", "image", "capabilities", "started_at", "state"],
        ),
        Leaf::Exec => object(
            json!({
                "stdout": {"type": "string"}, "stderr": {"type": "string"}, "exit_code": {"type": "integer"},
                "timed_out": {"type": "boolean"}, "success": {"type": "boolean"},
                "truncated": {"type": "boolean", "description": "output beyond limits.max_exec_output_kib was cut"},
                "duration_ms": {"type": "integer", "minimum": 0},
            }),
            &["stdout", "stderr", "exit_code", "timed_out", "success", "truncated", "duration_ms"],
        ),
        Leaf::Stop => object(json!({"sandbox_id": {"type": "string"}, "stopped": {"const": true}}), &["sandbox_id", "stopped"]),
        Leaf::FsWrite => {
            object(json!({"bytes_written": {"type": "integer", "minimum": 0}, "path": {"type": "string"}}), &["bytes_written", "path"])
        }
        Leaf::Get => object(
            json!({
                "sandbox_id": {"type": "string"}, "image": {"type": "string"}, "state": state,
                "started_at": {"type": "string", "format": "date-time"},
                "ends_at": {"type": ["string", "null"], "format": "date-time"}, "metadata": string_map(),
            }),
            &["sandbox_id", "image", "state", "started_at", "ends_at", "metadata"],
        ),
        Leaf::SetTimeout => object(
            json!({"sandbox_id": {"type": "string"}, "timeout_secs": {"type": "integer"}, "ends_at": {"type": "string", "format": "date-time"}}),
            &["sandbox_id", "timeout_secs", "ends_at"],
        ),
        Leaf::Pause | Leaf::Resume => object(json!({"sandbox_id": {"type": "string"}, "state": state}), &["sandbox_id", "state"]),
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
        Leaf::ExposePort => object(json!({"url": {"type": "string", "format": "uri"}, "headers": string_map()}), &["url", "headers"]),
        Leaf::FsRead => object(
            json!({
                "bytes_base64": {"type": "string", "contentEncoding": "base64"}, "size": {"type": "integer", "minimum": 0},
                "body": {"type": "string", "description": "the file as text, when UTF-8 and under 1 MiB"},
            }),
            &["bytes_base64", "size"],
        ),
    }
}
