//! The one wasmtime [`Engine`] every plugin shares: pooling allocator, epoch
//! interruption, and a precompiled-component cache on disk so a restart does not
//! recompile.
//!
//! Cache key: SHA-256 of the component bytes + a hash of the engine's compatibility
//! settings (`Engine::precompile_compatibility_hash`) + the wasmtime version. Entries
//! are written to a temporary file and renamed into place, so a crash mid-write never
//! leaves a truncated entry that a later start would trust.

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
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
    cache_dir: Option<PathBuf>,
    compat: String,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
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
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `SANDBOX_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf` can name JIT frames.
        if std::env::var_os("SANDBOX_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;
        super::super::policy::cpu::start_ticker(&engine);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = format!("{:016x}", h.finish());
        Ok(Runtime { engine, cache_dir, compat })
    }

    /// Compiles `bytes`, or loads its precompiled form from the cache.
    pub fn component(&self, bytes: &[u8]) -> anyhow::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.cache_dir else {
            return Ok((Component::new(&self.engine, bytes)?, CacheOutcome::Compiled));
        };
        let path = dir.join(format!("{}-{}.cwasm", hex::encode(Sha256::digest(bytes)), self.compat));
        if path.exists() {
            // SAFETY: the cache directory belongs to this host and entries are only
            // ever written whole (rename) by `precompile_component` of this engine
            // configuration, which the file name encodes.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => tracing::warn!("discarding unusable cache entry {}: {e:#}", path.display()),
            }
        }
        let compiled = self.engine.precompile_component(bytes)?;
        if let Err(e) = write_atomically(dir, &path, &compiled) {
            tracing::warn!("could not write the precompiled cache entry {}: {e:#}", path.display());
        }
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled)? };
        Ok((component, CacheOutcome::Compiled))
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Unique per process and per write, so concurrent loads never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp{}-{seq}", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
