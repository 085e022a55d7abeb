//! The edge between version-neutral contract types and the WIT world
//! `iii:sandbox/provider-plugin@0.1.0`. Nothing outside this module touches generated
//! binding types; a future world version gets a sibling module and a variant here.

use crate::contract::shapes::{Capability, ExecOutput, PluginReply, Request, SandboxInfo};
use crate::policy::log_budget::LogLevel;
use crate::policy::plugin_text::{bounded_owned, MAX_ERROR_MESSAGE_BYTES};
use crate::policy::CredentialSpec;
use crate::runtime::store::StoreState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider-plugin",
        exports: { default: async },
    });
}

pub use bindings::exports::iii::sandbox::provider::Guest as ProviderExports;
pub use bindings::iii::sandbox::types::{Error as WitError, ErrorKind};
use bindings::iii::sandbox::{config, log, types};
pub use bindings::{ProviderPlugin, ProviderPluginPre};

/// The world version this module binds.
pub const WORLD: &str = "iii:sandbox/provider-plugin@0.1.0";

/// What `describe()` returned, in host types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    pub capabilities: Vec<Capability>,
    pub default_egress_hosts: Vec<String>,
    pub credentials: Vec<CredentialSpec>,
}

impl From<types::Descriptor> for Descriptor {
    fn from(d: types::Descriptor) -> Self {
        let mut capabilities: Vec<Capability> = d
            .capabilities
            .into_iter()
            .map(|c| match c {
                types::Capability::Snapshot => Capability::Snapshot,
                types::Capability::Branch => Capability::Branch,
                types::Capability::ExposePort => Capability::ExposePort,
                types::Capability::Fs => Capability::Fs,
            })
            .collect();
        capabilities.sort();
        capabilities.dedup();
        Descriptor {
            name: d.name,
            version: d.version,
            capabilities,
            default_egress_hosts: d.default_egress_hosts,
            credentials: d
                .credentials
                .into_iter()
                .map(|c| CredentialSpec { name: c.name, header: c.header, value_prefix: c.value_prefix, hosts: c.hosts })
                .collect(),
        }
    }
}

/// A plugin-reported failure, in host terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    pub kind: ErrorKind,
    pub message: String,
    pub upstream_status: Option<u16>,
    pub retry_after_ms: Option<u64>,
}

impl From<WitError> for PluginFailure {
    /// Bounds the message here, where it first becomes a host value: a huge one is cut
    /// (and its allocation freed) before anything formats, logs or forwards it.
    fn from(e: WitError) -> Self {
        let message = bounded_owned(e.message, MAX_ERROR_MESSAGE_BYTES);
        PluginFailure { kind: e.kind, message, upstream_status: e.upstream_status, retry_after_ms: e.retry_after_ms }
    }
}

fn sandbox(s: types::Sandbox) -> SandboxInfo {
    SandboxInfo { sandbox_id: s.sandbox_id, image: s.image, started_at: s.started_at }
}

/// Calls the export for `req`. `idle_default` fills `create`'s optional lifetime.
/// Outer error: a trap; inner error: the plugin's own failure.
pub async fn invoke(
    plugin: &ProviderPlugin,
    store: &mut wasmtime::Store<StoreState>,
    req: &Request,
    idle_default: u64,
) -> wasmtime::Result<Result<PluginReply, PluginFailure>> {
    let p = plugin.iii_sandbox_provider();
    let r = match req {
        Request::Create(c) => p
            .call_create(
                &mut *store,
                &types::CreateRequest {
                    image: c.image.clone(),
                    idle_timeout_secs: c.idle_timeout_secs.unwrap_or(idle_default),
                    env: c.env.clone(),
                    metadata: c.metadata.clone(),
                },
            )
            .await?
            .map(|s| PluginReply::Created(sandbox(s))),
        Request::Exec(e) => p
            .call_exec(
                &mut *store,
                &types::ExecRequest {
                    sandbox_id: e.sandbox_id.clone(),
                    cmd: e.cmd.clone(),
                    args: e.args.clone(),
                    env: e.env.clone(),
                    cwd: e.cwd.clone(),
                    timeout_ms: e.timeout_ms,
                },
            )
            .await?
            .map(|r| {
                PluginReply::Executed(ExecOutput { stdout: r.stdout, stderr: r.stderr, exit_code: r.exit_code, timed_out: r.timed_out })
            }),
        Request::Stop { sandbox_id } => p.call_stop(&mut *store, sandbox_id).await?.map(|()| PluginReply::Stopped),
        Request::List => p.call_list_sandboxes(&mut *store).await?.map(|l| PluginReply::Listed(l.into_iter().map(sandbox).collect())),
        Request::Snapshot { sandbox_id } => p.call_snapshot(&mut *store, sandbox_id).await?.map(PluginReply::Snapshotted),
        Request::Branch { sandbox_id, count } => p.call_branch(&mut *store, sandbox_id, *count).await?.map(PluginReply::Branched),
        Request::ExposePort { sandbox_id, port } => p.call_expose_port(&mut *store, sandbox_id, *port).await?.map(PluginReply::Exposed),
        Request::FsRead { sandbox_id, path } => p.call_fs_read(&mut *store, sandbox_id, path).await?.map(PluginReply::Read),
        Request::FsWrite(w) => p
            .call_fs_write(
                &mut *store,
                &types::FsWriteRequest { sandbox_id: w.sandbox_id.clone(), path: w.path.clone(), bytes: w.bytes.clone(), mode: w.mode },
            )
            .await?
            .map(|()| PluginReply::Written),
    };
    Ok(r.map_err(PluginFailure::from))
}

/// Calls `describe()`.
pub async fn describe(plugin: &ProviderPlugin, store: &mut wasmtime::Store<StoreState>) -> wasmtime::Result<Descriptor> {
    Ok(plugin.iii_sandbox_provider().call_describe(store).await?.into())
}

/// Adds the world's imports (`log`, `config`) to `linker`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> wasmtime::Result<()> {
    ProviderPlugin::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(linker, |s| s)
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    /// Through the call's log meter: lines are cut, budgeted per call and rate-limited
    /// per plugin (`policy/log_budget.rs`).
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.logs.write(level, message);
    }
}

impl config::Host for StoreState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    /// A released world is frozen: the current file must equal its `since_v*` copy.
    #[test]
    fn the_current_wit_matches_its_frozen_release() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let current = std::fs::read_to_string(root.join("sandbox.wit")).unwrap();
        let version = super::WORLD.rsplit('@').next().unwrap();
        assert!(current.contains(&format!("package iii:sandbox@{version};")), "WORLD and the package line disagree");
        let frozen = std::fs::read_to_string(root.join(format!("since_v{version}/sandbox.wit")))
            .unwrap_or_else(|_| panic!("wit/since_v{version}/sandbox.wit is missing: freeze the release"));
        assert_eq!(current, frozen, "wit/sandbox.wit changed after {version} was released: start a new version instead");
    }
}
