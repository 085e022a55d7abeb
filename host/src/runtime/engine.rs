//! The one wasmtime [`Engine`] every plugin shares: pooling allocator, epoch
//! interruption, and a precompiled-component cache on disk so a restart does not
//! recompile.
//!
//! A cached entry is native code, so it runs only after [`super::cache`] has proved that
//! this host wrote it for these component bytes and this engine (keyed MAC, checked on
//! the bytes in memory that are then deserialized). Anything else is compiled again.
//! Entry name: SHA-256 of the component bytes + a hash of the engine's compatibility
//! settings (`Engine::precompile_compatibility_hash`, which covers the wasmtime version).

use super::cache::Cache;
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Largest linear memory any plugin may have; per-plugin limits must not exceed it
/// (with pooling this is also a hard per-memory cap).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Instances alive at once across all plugins (each call holds one).
pub const POOL_INSTANCES: u32 = 1000;

/// Per linear memory, bytes reset in place instead of decommitted between calls.
pub const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Slots decommitted together (one TLB shootdown per batch, not per call).
const DECOMMIT_BATCH: usize = 16;

/// How a component was obtained, for diagnostics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the precompiled cache.
    Hit,
    /// Compiled now (and written to the cache when one is configured).
    Compiled,
}

#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    cache: Option<Arc<Cache>>,
    compiling: Arc<InFlight>,
}

/// One compile per component at a time: loads of the same bytes that miss the cache
/// together wait for the first, then load what it stored, instead of each running
/// Cranelift (hosts starting side by side on one engine, as the test suites do, compiled
/// the 19 MiB Python plugin once per host).
#[derive(Default)]
struct InFlight(std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<std::sync::Mutex<()>>>>);

impl InFlight {
    fn slot(&self, key: &[u8; 32]) -> Arc<std::sync::Mutex<()>> {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(*key).or_default().clone()
    }

    /// Forgets `key` once no other load holds its slot.
    fn release(&self, key: &[u8; 32], slot: Arc<std::sync::Mutex<()>>) {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&slot) == 2 {
            slots.remove(key);
        }
    }
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker. `cache_dir` is created (0700) and
    /// checked; one this host must not trust is not used, with a warning naming it and
    /// the fix (see [`super::cache`]).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memory_size(MAX_MEMORY_BYTES)
            // A call's instance lives microseconds; resetting its slot with madvise
            // costs a TLB shootdown on every core each time. Keep the first pages
            // resident and reset them with memset (only the dirty ones where the
            // kernel can tell us), and batch the decommits that remain.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `SANDBOX_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf` can name JIT frames.
        if std::env::var_os("SANDBOX_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;
        super::super::policy::cpu::start_ticker(&engine);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = format!("{:016x}", h.finish());
        let cache = cache_dir.and_then(|dir| match Cache::open(&dir, &compat) {
            Ok(cache) => Some(Arc::new(cache)),
            Err(refused) => {
                tracing::warn!("{refused}");
                None
            }
        });
        Ok(Runtime { engine, cache, compiling: Arc::default() })
    }

    /// The precompiled cache in use; `None` when none was configured or it was refused.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_deref().map(Cache::dir)
    }

    /// Compiles `bytes`, or loads its precompiled form from the cache.
    pub fn component(&self, bytes: &[u8]) -> anyhow::Result<(Component, CacheOutcome)> {
        let Some(cache) = &self.cache else {
            return Ok((Component::new(&self.engine, bytes)?, CacheOutcome::Compiled));
        };
        let component_sha256: [u8; 32] = Sha256::digest(bytes).into();
        let slot = self.compiling.slot(&component_sha256);
        let loaded = {
            let _only = slot.lock().unwrap_or_else(|p| p.into_inner());
            // And across processes sharing the cache (hosts, test suites side by side);
            // taken only for a missing entry, so a load from the cache makes no lock file.
            let missing = !cache.entry_path(&component_sha256).exists();
            let _only_here = missing.then(|| cache.lock_entry(&component_sha256)).flatten();
            self.cached_or_compiled(cache, bytes, &component_sha256)
        };
        self.compiling.release(&component_sha256, slot);
        loaded
    }

    fn cached_or_compiled(&self, cache: &Cache, bytes: &[u8], component_sha256: &[u8; 32]) -> anyhow::Result<(Component, CacheOutcome)> {
        match cache.load(component_sha256) {
            Ok(Some(verified)) => {
                // SAFETY: these bytes are in memory and carry this host's MAC over this
                // component's hash, this engine and the artifact itself, so they are what
                // this engine's `precompile_component` made from `bytes`; they are the
                // bytes that were checked, not a file that could change since.
                match unsafe { Component::deserialize(&self.engine, verified.artifact()) } {
                    Ok(component) => return Ok((component, CacheOutcome::Hit)),
                    Err(e) => tracing::warn!("discarding unusable cache entry {}: {e:#}", cache.entry_path(component_sha256).display()),
                }
            }
            Ok(None) => {}
            Err(refused) => tracing::warn!("{refused}"),
        }
        let compiled = self.engine.precompile_component(bytes)?;
        if let Err(e) = cache.store(component_sha256, &compiled) {
            tracing::warn!("could not write the precompiled cache entry {}: {e:#}", cache.entry_path(component_sha256).display());
        }
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled)? };
        Ok((component, CacheOutcome::Compiled))
    }
}
