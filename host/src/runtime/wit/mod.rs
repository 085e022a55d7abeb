//! The edge between version-neutral contract types and the WIT worlds a plugin may
//! target. Nothing outside this module touches generated binding types: each world
//! version has its own module (`v0_1`, `v0_2`) that converts to and from host types,
//! and [`PluginPre`] picks the one the component exports, as Zed adapts old extension
//! worlds. A leaf an old world lacks is simply not offered.

/// What every world version has in common, implemented once over that version's generated
/// modules (`types`, `log`, `config` in scope where it is invoked): the error record's
/// conversion (its message bounded where it first becomes a host value, so a huge one is
/// cut and freed before anything formats, logs or forwards it), and the `log` and
/// `config` imports.
macro_rules! shared_imports {
    ($types:ident, $log:ident, $config:ident) => {
        impl From<$types::Error> for crate::runtime::wit::PluginFailure {
            fn from(e: $types::Error) -> Self {
                use crate::runtime::wit::ErrorKind;
                let kind = match e.kind {
                    $types::ErrorKind::BadInput => ErrorKind::BadInput,
                    $types::ErrorKind::NotFound => ErrorKind::NotFound,
                    $types::ErrorKind::RateLimited => ErrorKind::RateLimited,
                    $types::ErrorKind::QuotaExhausted => ErrorKind::QuotaExhausted,
                    $types::ErrorKind::Unavailable => ErrorKind::Unavailable,
                    $types::ErrorKind::AuthInvalid => ErrorKind::AuthInvalid,
                    $types::ErrorKind::Unsupported => ErrorKind::Unsupported,
                };
                let message = crate::policy::plugin_text::bounded_owned(e.message, crate::policy::plugin_text::MAX_ERROR_MESSAGE_BYTES);
                crate::runtime::wit::PluginFailure { kind, message, upstream_status: e.upstream_status, retry_after_ms: e.retry_after_ms }
            }
        }

        impl $types::Host for crate::runtime::store::StoreState {}

        impl $log::Host for crate::runtime::store::StoreState {
            /// Through the call's log meter (`policy/log_budget.rs`).
            fn log(&mut self, level: $log::Level, message: String) {
                use crate::policy::log_budget::LogLevel;
                let level = match level {
                    $log::Level::Trace => LogLevel::Trace,
                    $log::Level::Debug => LogLevel::Debug,
                    $log::Level::Info => LogLevel::Info,
                    $log::Level::Warn => LogLevel::Warn,
                    $log::Level::Error => LogLevel::Error,
                };
                self.logs.write(level, message);
            }
        }

        impl $config::Host for crate::runtime::store::StoreState {
            fn get(&mut self, key: String) -> Option<String> {
                self.config.get(&key).cloned()
            }
        }
    };
}

pub mod v0_1;
pub mod v0_2;

use crate::contract::shapes::{Capability, PluginReply, Request};
use crate::policy::CredentialSpec;
use crate::runtime::store::StoreState;
use wasmtime::component::InstancePre;
use wasmtime::Store;

/// The world new plugins should target.
pub const WORLD: &str = v0_2::WORLD;

/// Every world version the host loads, newest first.
pub const WORLDS: [&str; 2] = [v0_2::WORLD, v0_1::WORLD];

/// What `describe()` returned, in host types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub version: String,
    pub capabilities: Vec<Capability>,
    pub default_egress_hosts: Vec<String>,
    pub credentials: Vec<CredentialSpec>,
}

/// The kind of a plugin-reported failure (the same in every world version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadInput,
    NotFound,
    RateLimited,
    QuotaExhausted,
    Unavailable,
    AuthInvalid,
    Unsupported,
}

/// A plugin-reported failure, in host terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    pub kind: ErrorKind,
    pub message: String,
    pub upstream_status: Option<u16>,
    pub retry_after_ms: Option<u64>,
}

/// A plugin ready to instantiate, for the world version it exports.
pub enum PluginPre {
    V0_1(v0_1::ProviderPluginPre<StoreState>),
    V0_2(v0_2::ProviderPluginPre<StoreState>, Box<v0_2::Exports>),
}

impl PluginPre {
    /// Binds `pre` to the newest world whose provider interface the component exports.
    pub fn new(pre: InstancePre<StoreState>) -> anyhow::Result<Self> {
        let v2 = match v0_2::ProviderPluginPre::new(pre.clone()) {
            Ok(p) => {
                let exports = Box::new(v0_2::Exports::new(&p)?);
                return Ok(PluginPre::V0_2(p, exports));
            }
            Err(e) => e,
        };
        match v0_1::ProviderPluginPre::new(pre) {
            Ok(p) => Ok(PluginPre::V0_1(p)),
            Err(v1) => anyhow::bail!("not {} ({v2:#}), nor {} ({v1:#})", v0_2::WORLD, v0_1::WORLD),
        }
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            PluginPre::V0_1(p) => p.engine(),
            PluginPre::V0_2(p, _) => p.engine(),
        }
    }

    /// The world this plugin was built against.
    pub fn world(&self) -> &'static str {
        match self {
            PluginPre::V0_1(_) => v0_1::WORLD,
            PluginPre::V0_2(..) => v0_2::WORLD,
        }
    }

    /// The capabilities this world version can express at all.
    pub fn knows(&self, cap: Capability) -> bool {
        match self {
            PluginPre::V0_1(_) => v0_1::knows(cap),
            PluginPre::V0_2(..) => true,
        }
    }

    /// Instantiates and calls the export for `req`. `idle_default` fills `create`'s
    /// optional lifetime. Outer error: a trap; inner error: the plugin's own failure.
    pub async fn invoke(
        &self,
        store: &mut Store<StoreState>,
        req: &Request,
        idle_default: u64,
    ) -> wasmtime::Result<Result<PluginReply, PluginFailure>> {
        match self {
            PluginPre::V0_1(p) => {
                let instance = p.instantiate_async(&mut *store).await?;
                v0_1::invoke(&instance, store, req, idle_default).await
            }
            PluginPre::V0_2(p, exports) => v0_2::invoke(p, exports, store, req, idle_default).await,
        }
    }

    /// Only instantiates, as a call does (the instance lives as long as `store`): for
    /// measurements.
    pub async fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<()> {
        match self {
            PluginPre::V0_1(p) => p.instantiate_async(store).await.map(drop),
            PluginPre::V0_2(p, _) => p.instance_pre().instantiate_async(store).await.map(drop),
        }
    }

    /// Instantiates and checks that every export has the type the world gives it (a
    /// call checks only the export it calls): once, at load.
    pub async fn check_exports(&self, store: &mut Store<StoreState>) -> wasmtime::Result<()> {
        match self {
            PluginPre::V0_1(p) => p.instantiate_async(store).await.map(drop),
            PluginPre::V0_2(p, exports) => v0_2::check_exports(p, exports, store).await,
        }
    }

    /// Instantiates and calls `describe()`.
    pub async fn describe(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Descriptor> {
        match self {
            PluginPre::V0_1(p) => {
                let instance = p.instantiate_async(&mut *store).await?;
                v0_1::describe(&instance, store).await
            }
            PluginPre::V0_2(p, exports) => v0_2::describe(p, exports, store).await,
        }
    }
}

/// Adds every world version's imports (`log`, `config`, `output`) to `linker`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> wasmtime::Result<()> {
    v0_1::add_to_linker(linker)?;
    v0_2::add_to_linker(linker)
}

/// Sorts and dedups capabilities a plugin declared.
fn tidy(mut caps: Vec<Capability>) -> Vec<Capability> {
    caps.sort();
    caps.dedup();
    caps
}

#[cfg(test)]
mod tests {
    /// A released world is frozen: its `since_v*` copy is what the host binds, and the
    /// current file names the newest version.
    #[test]
    fn the_current_wit_is_the_newest_world() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let current = std::fs::read_to_string(root.join("sandbox.wit")).unwrap();
        let version = super::WORLD.rsplit('@').next().unwrap();
        assert!(current.contains(&format!("package iii:sandbox@{version};")), "WORLD and the package line disagree");
        for world in super::WORLDS {
            let v = world.rsplit('@').next().unwrap();
            let frozen = root.join(format!("since_v{v}/sandbox.wit"));
            if v != version {
                assert!(frozen.exists(), "{world} is no longer current, so wit/since_v{v}/ must hold it");
            } else if let Ok(frozen) = std::fs::read_to_string(frozen) {
                assert_eq!(current, frozen, "wit/sandbox.wit changed after {version} was released: start a new version");
            }
        }
    }
}
