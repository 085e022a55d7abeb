//! The contract's leaves and their typed, validated requests and results.
//!
//! These types are version-neutral: `runtime::wit` converts them to and from the WIT
//! records of whichever world version a plugin targets, and `contract::validate`
//! builds requests from caller JSON. Results are turned back into the contract's JSON
//! shapes here, once, for every provider.

use base64::Engine as _;
use serde_json::{json, Value};
use std::fmt;

/// An optional leaf group a provider may offer (`capabilities` in `create`'s answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Snapshot,
    Branch,
    ExposePort,
    Fs,
    Get,
    SetTimeout,
    Pause,
    ExecStdin,
    NetworkOff,
    Sizing,
}

impl Capability {
    /// The contract's name for it, as listed in `capabilities`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Snapshot => "snapshot",
            Capability::Branch => "branch",
            Capability::ExposePort => "expose_port",
            Capability::Fs => "fs",
            Capability::Get => "get",
            Capability::SetTimeout => "set_timeout",
            Capability::Pause => "pause",
            Capability::ExecStdin => "exec_stdin",
            Capability::NetworkOff => "network_off",
            Capability::Sizing => "sizing",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One contract function, the `<leaf>` in `sandbox::provider::<p>::<leaf>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    Create,
    Exec,
    Stop,
    List,
    Snapshot,
    Branch,
    ExposePort,
    FsRead,
    FsWrite,
    Get,
    SetTimeout,
    Pause,
    Resume,
}

impl Leaf {
    pub const ALL: [Leaf; 13] = [
        Leaf::Create,
        Leaf::Exec,
        Leaf::Stop,
        Leaf::List,
        Leaf::Snapshot,
        Leaf::Branch,
        Leaf::ExposePort,
        Leaf::FsRead,
        Leaf::FsWrite,
        Leaf::Get,
        Leaf::SetTimeout,
        Leaf::Pause,
        Leaf::Resume,
    ];

    /// The id suffix, e.g. `fs::read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Leaf::Create => "create",
            Leaf::Exec => "exec",
            Leaf::Stop => "stop",
            Leaf::List => "list",
            Leaf::Snapshot => "snapshot",
            Leaf::Branch => "branch",
            Leaf::ExposePort => "expose_port",
            Leaf::FsRead => "fs::read",
            Leaf::FsWrite => "fs::write",
            Leaf::Get => "get",
            Leaf::SetTimeout => "set_timeout",
            Leaf::Pause => "pause",
            Leaf::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Leaf> {
        Leaf::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The capability that gates this leaf; `None` for the lifecycle floor.
    pub fn capability(self) -> Option<Capability> {
        match self {
            Leaf::Create | Leaf::Exec | Leaf::Stop | Leaf::List => None,
            Leaf::Snapshot => Some(Capability::Snapshot),
            Leaf::Branch => Some(Capability::Branch),
            Leaf::ExposePort => Some(Capability::ExposePort),
            Leaf::FsRead | Leaf::FsWrite => Some(Capability::Fs),
            Leaf::Get => Some(Capability::Get),
            Leaf::SetTimeout => Some(Capability::SetTimeout),
            Leaf::Pause | Leaf::Resume => Some(Capability::Pause),
        }
    }

    /// True when a provider with `caps` offers this leaf.
    pub fn offered_by(self, caps: &[Capability]) -> bool {
        self.capability().is_none_or(|c| caps.contains(&c))
    }

    /// One sentence for function descriptions.
    pub fn description(self) -> &'static str {
        match self {
            Leaf::Create => "Start a sandbox from an image/template.",
            Leaf::Exec => "Run a command in a sandbox and return its output and exit code.",
            Leaf::Stop => "Stop and delete a sandbox (idempotent).",
            Leaf::List => "List sandboxes and the provider's concurrency budget.",
            Leaf::Snapshot => "Capture a sandbox's state as an opaque snapshot id.",
            Leaf::Branch => "Fork live sibling sandboxes off a running sandbox.",
            Leaf::ExposePort => "Get a public URL for a port inside a sandbox.",
            Leaf::FsRead => "Read a file from a sandbox (base64).",
            Leaf::FsWrite => "Write a file into a sandbox (base64 or UTF-8).",
            Leaf::Get => "One sandbox's state, image, start and end times.",
            Leaf::SetTimeout => "Make a sandbox live timeout_secs from now.",
            Leaf::Pause => "Pause a sandbox, keeping its state (idempotent).",
            Leaf::Resume => "Resume a paused sandbox (idempotent).",
        }
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ordered string map, as the caller gave it.
pub type StringMap = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInput {
    pub image: String,
    /// `None` = the provider's configured default.
    pub idle_timeout_secs: Option<u64>,
    pub env: StringMap,
    pub metadata: StringMap,
    /// A label (the engine daemon's `name`), kept as metadata `name` too.
    pub name: Option<String>,
    pub cpus: Option<u32>,
    pub memory_mb: Option<u32>,
    /// `Some(false)` asks for a sandbox without network egress.
    pub network: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInput {
    pub sandbox_id: String,
    pub cmd: String,
    pub args: Vec<String>,
    pub env: StringMap,
    pub cwd: Option<String>,
    pub timeout_ms: Option<u64>,
    pub stdin: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsWriteInput {
    pub sandbox_id: String,
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: Option<u32>,
    pub parents: bool,
}

/// A validated call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateInput),
    Exec(ExecInput),
    Stop { sandbox_id: String },
    List,
    Snapshot { sandbox_id: String },
    Branch { sandbox_id: String, count: u32 },
    ExposePort { sandbox_id: String, port: u16 },
    FsRead { sandbox_id: String, path: String },
    FsWrite(FsWriteInput),
    Get { sandbox_id: String },
    SetTimeout { sandbox_id: String, timeout_secs: u64 },
    Pause { sandbox_id: String },
    Resume { sandbox_id: String, timeout_secs: Option<u64> },
}

impl Request {
    pub fn leaf(&self) -> Leaf {
        match self {
            Request::Create(_) => Leaf::Create,
            Request::Exec(_) => Leaf::Exec,
            Request::Stop { .. } => Leaf::Stop,
            Request::List => Leaf::List,
            Request::Snapshot { .. } => Leaf::Snapshot,
            Request::Branch { .. } => Leaf::Branch,
            Request::ExposePort { .. } => Leaf::ExposePort,
            Request::FsRead { .. } => Leaf::FsRead,
            Request::FsWrite(_) => Leaf::FsWrite,
            Request::Get { .. } => Leaf::Get,
            Request::SetTimeout { .. } => Leaf::SetTimeout,
            Request::Pause { .. } => Leaf::Pause,
            Request::Resume { .. } => Leaf::Resume,
        }
    }

    /// The sandbox the call is about, for leaves that name one.
    pub fn sandbox_id(&self) -> Option<&str> {
        match self {
            Request::Create(_) | Request::List => None,
            Request::Exec(e) => Some(&e.sandbox_id),
            Request::FsWrite(w) => Some(&w.sandbox_id),
            Request::Stop { sandbox_id }
            | Request::Snapshot { sandbox_id }
            | Request::Branch { sandbox_id, .. }
            | Request::ExposePort { sandbox_id, .. }
            | Request::FsRead { sandbox_id, .. }
            | Request::Get { sandbox_id }
            | Request::SetTimeout { sandbox_id, .. }
            | Request::Pause { sandbox_id }
            | Request::Resume { sandbox_id, .. } => Some(sandbox_id),
        }
    }
}

/// Whether a sandbox runs or is paused with its state kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxState {
    #[default]
    Running,
    Paused,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
        }
    }
}

/// One sandbox as a plugin reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub sandbox_id: String,
    pub image: String,
    pub started_at: Option<String>,
    pub state: SandboxState,
    pub ends_at: Option<String>,
    pub metadata: StringMap,
}

impl SandboxInfo {
    /// A running sandbox with no end time or metadata (what a 0.1.0 plugin reports).
    pub fn running(sandbox_id: String, image: String, started_at: Option<String>) -> Self {
        SandboxInfo { sandbox_id, image, started_at, state: SandboxState::Running, ends_at: None, metadata: Vec::new() }
    }
}

/// An exec's answer: the output the host kept (`runtime/output.rs`), and how the
/// command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub timed_out: bool,
    /// Output beyond the per-stream budget was cut (and counted).
    pub truncated: bool,
    pub duration_ms: u64,
}

/// A URL for a port, and the headers a request to it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposedPort {
    pub url: String,
    pub headers: StringMap,
}

/// What a plugin answered, before the host's contract semantics are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginReply {
    Created(SandboxInfo),
    Executed(ExecOutput),
    Stopped,
    Listed(Vec<SandboxInfo>),
    Snapshotted(String),
    Branched(Vec<String>),
    Exposed(ExposedPort),
    Read(Vec<u8>),
    Written,
    Got(SandboxInfo),
    TimeoutSet,
    Paused,
    Resumed,
}

/// One row of `list`'s answer, `started_at` already normalised to RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSandbox {
    pub sandbox_id: String,
    pub image: String,
    pub started_at: String,
    pub state: SandboxState,
    pub ends_at: Option<String>,
    pub metadata: StringMap,
}

impl ListedSandbox {
    /// The caller-given label, kept as metadata `name`.
    pub fn name(&self) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str())
    }

    /// Seconds since `started_at` (0 for a start time in the future).
    pub fn age_secs(&self, now: chrono::DateTime<chrono::Utc>) -> u64 {
        chrono::DateTime::parse_from_rfc3339(&self.started_at)
            .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0) as u64)
            .unwrap_or(0)
    }
}

/// `list`'s answer: upstream sandboxes plus the host's concurrency budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOutput {
    pub sandboxes: Vec<ListedSandbox>,
    pub in_flight: usize,
    pub cap: usize,
    pub reconciled: bool,
}

/// The contract's JSON answers.
pub mod reply {
    use super::*;

    /// `ignored` names create fields this provider cannot honour (said, never dropped silently).
    pub fn created(info: &ListedSandbox, caps: &[Capability], ignored: &[&str]) -> Value {
        let mut v = json!({
            "sandbox_id": info.sandbox_id,
            "image": info.image,
            "capabilities": caps.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "started_at": info.started_at,
            "state": info.state.as_str(),
        });
        if let Some(name) = info.name() {
            v["name"] = json!(name);
        }
        if let Some(end) = &info.ends_at {
            v["ends_at"] = json!(end);
        }
        if !ignored.is_empty() {
            v["ignored"] = json!(ignored);
        }
        v
    }

    pub fn executed(out: &ExecOutput) -> Value {
        json!({
            "stdout": out.stdout,
            "stderr": out.stderr,
            "exit_code": out.exit_code,
            "timed_out": out.timed_out,
            "success": out.exit_code == 0 && !out.timed_out,
            "truncated": out.truncated,
            "duration_ms": out.duration_ms,
        })
    }

    pub fn got(s: &ListedSandbox) -> Value {
        json!({
            "sandbox_id": s.sandbox_id,
            "image": s.image,
            "state": s.state.as_str(),
            "started_at": s.started_at,
            "ends_at": s.ends_at,
            "metadata": string_map(&s.metadata),
        })
    }

    pub fn stopped(sandbox_id: &str) -> Value {
        json!({ "sandbox_id": sandbox_id, "stopped": true })
    }

    pub fn state(sandbox_id: &str, state: SandboxState) -> Value {
        json!({ "sandbox_id": sandbox_id, "state": state.as_str() })
    }

    pub fn empty() -> Value {
        json!({})
    }

    pub fn listed(out: &ListOutput) -> Value {
        let now = chrono::Utc::now();
        let rows: Vec<Value> = out
            .sandboxes
            .iter()
            .map(|s| {
                json!({
                    "sandbox_id": s.sandbox_id,
                    "image": s.image,
                    "started_at": s.started_at,
                    "state": s.state.as_str(),
                    "name": s.name(),
                    "age_secs": s.age_secs(now),
                    "ends_at": s.ends_at,
                    "metadata": string_map(&s.metadata),
                })
            })
            .collect();
        json!({
            "sandboxes": rows,
            "in_flight": out.in_flight,
            "cap": out.cap,
            "remaining": out.cap.saturating_sub(out.in_flight),
            "reconciled": out.reconciled,
        })
    }

    pub fn snapshotted(id: &str) -> Value {
        json!({ "snapshot_id": id })
    }

    pub fn branched(ids: &[String]) -> Value {
        json!({ "sandbox_ids": ids })
    }

    pub fn exposed(port: &ExposedPort) -> Value {
        json!({ "url": port.url, "headers": string_map(&port.headers) })
    }

    /// A string map as a JSON object (a later duplicate key wins, as in the caller's JSON).
    fn string_map(pairs: &StringMap) -> Value {
        Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }

    /// Inline UTF-8 `body` only under this size, as the engine daemon's `fs::read`.
    pub const INLINE_BODY_MAX: usize = 1 << 20;

    pub fn read(bytes: &[u8]) -> Value {
        let mut v = json!({
            "bytes_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
            "size": bytes.len(),
        });
        if bytes.len() < INLINE_BODY_MAX {
            if let Ok(text) = std::str::from_utf8(bytes) {
                v["body"] = json!(text);
            }
        }
        v
    }

    pub fn written(path: &str, bytes_written: usize) -> Value {
        json!({ "bytes_written": bytes_written, "path": path })
    }
}
