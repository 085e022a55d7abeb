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
}

impl Capability {
    /// The contract's name for it, as listed in `capabilities`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Snapshot => "snapshot",
            Capability::Branch => "branch",
            Capability::ExposePort => "expose_port",
            Capability::Fs => "fs",
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
}

impl Leaf {
    pub const ALL: [Leaf; 9] =
        [Leaf::Create, Leaf::Exec, Leaf::Stop, Leaf::List, Leaf::Snapshot, Leaf::Branch, Leaf::ExposePort, Leaf::FsRead, Leaf::FsWrite];

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
            Leaf::FsWrite => "Write a file into a sandbox (base64).",
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecInput {
    pub sandbox_id: String,
    pub cmd: String,
    pub args: Vec<String>,
    pub env: StringMap,
    pub cwd: Option<String>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsWriteInput {
    pub sandbox_id: String,
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: Option<u32>,
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
        }
    }
}

/// One sandbox as a plugin reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub sandbox_id: String,
    pub image: String,
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub timed_out: bool,
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
    Exposed(String),
    Read(Vec<u8>),
    Written,
}

/// One row of `list`'s answer, `started_at` already normalised to RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSandbox {
    pub sandbox_id: String,
    pub image: String,
    pub started_at: String,
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

    pub fn created(info: &ListedSandbox, caps: &[Capability]) -> Value {
        json!({
            "sandbox_id": info.sandbox_id,
            "image": info.image,
            "capabilities": caps.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "started_at": info.started_at,
        })
    }

    pub fn executed(out: &ExecOutput) -> Value {
        json!({
            "stdout": out.stdout,
            "stderr": out.stderr,
            "exit_code": out.exit_code,
            "timed_out": out.timed_out,
        })
    }

    pub fn empty() -> Value {
        json!({})
    }

    pub fn listed(out: &ListOutput) -> Value {
        let rows: Vec<Value> =
            out.sandboxes.iter().map(|s| json!({"sandbox_id": s.sandbox_id, "image": s.image, "started_at": s.started_at})).collect();
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

    pub fn exposed(url: &str) -> Value {
        json!({ "url": url })
    }

    pub fn read(bytes: &[u8]) -> Value {
        json!({ "bytes_base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
    }
}
