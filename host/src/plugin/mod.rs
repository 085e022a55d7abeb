//! Plugins: a `.wasm` component plus its optional `.toml` policy, loaded and checked
//! (`loader`), and the live set the host serves from (`registry`).

pub mod loader;
pub mod registry;
pub mod watch;

use crate::contract::shapes::{Capability, Leaf};
use crate::policy::PluginPolicy;
use crate::runtime::engine::CacheOutcome;
use crate::runtime::wit::{Descriptor, PluginPre};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A plugin ready to serve calls.
pub struct LoadedPlugin {
    pub name: Arc<str>,
    pub file: PathBuf,
    /// SHA-256 of the component bytes (hex).
    pub sha256: String,
    /// SHA-256 of the policy file it was loaded with, if there was one.
    pub policy_sha256: Option<String>,
    pub size_bytes: usize,
    pub descriptor: Descriptor,
    pub policy: PluginPolicy,
    /// Non-secret config the plugin may read.
    pub config: Arc<BTreeMap<String, String>>,
    pub pre: PluginPre,
    pub cache: CacheOutcome,
    /// Calls in flight and request rate; shared with the version this one replaced when
    /// their limits are the same, so a swap neither refills the bucket nor doubles the cap.
    pub admission: Arc<crate::policy::rate::Admission>,
    /// Repeated traps → calls fail fast for a while (`policy/quarantine.rs`). Never shared
    /// with the version it replaced: a new version starts afresh.
    pub quarantine: crate::policy::quarantine::Quarantine,
}

impl LoadedPlugin {
    pub fn capabilities(&self) -> &[Capability] {
        &self.descriptor.capabilities
    }

    /// The leaves this plugin offers: the floor plus its capabilities' leaves.
    pub fn leaves(&self) -> Vec<Leaf> {
        Leaf::ALL.into_iter().filter(|l| l.offered_by(self.capabilities())).collect()
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("version", &self.descriptor.version)
            .finish_non_exhaustive()
    }
}
