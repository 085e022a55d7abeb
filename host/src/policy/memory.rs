//! Memory cap per plugin instance, counted across **all** its linear memories and
//! tables (`StoreLimits::memory_size` would cap each memory separately, so a component
//! with several memories could use a multiple of the limit).
//!
//! Growth past the cap traps the instance; the limiter remembers that it did so the
//! call is reported as S702 (not a generic S700). Default: 64 MiB, which a provider
//! plugin (a few hundred KiB of code translating JSON) uses a small fraction of.

use wasmtime::ResourceLimiter;

/// Bytes charged per table element (a pointer-sized funcref/externref slot).
const TABLE_ELEMENT_BYTES: usize = 8;

#[derive(Debug)]
pub struct MemoryLimiter {
    limit_bytes: usize,
    /// Current size of each memory and table, summed.
    memories: usize,
    tables: usize,
    /// Largest total seen, for metrics.
    pub peak_bytes: usize,
    /// Set when a growth was refused: the size that was asked for.
    pub exceeded: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: usize) -> Self {
        MemoryLimiter { limit_bytes, memories: 0, tables: 0, peak_bytes: 0, exceeded: None }
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    fn admit(&mut self, extra: usize, asked_total: usize) -> wasmtime::Result<bool> {
        let total = self.memories + self.tables + extra;
        if total > self.limit_bytes {
            self.exceeded = Some(asked_total.max(total));
            // A trap, not a refused grow: a guest that ignores failed growth must not
            // keep running at the edge, and the caller gets S702 at once.
            return Err(wasmtime::Error::msg(format!("memory limit of {} bytes exceeded (instance asked for {total})", self.limit_bytes)));
        }
        self.peak_bytes = self.peak_bytes.max(total);
        Ok(true)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        let ok = self.admit(extra, desired)?;
        self.memories += extra;
        Ok(ok)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current).saturating_mul(TABLE_ELEMENT_BYTES);
        let ok = self.admit(extra, desired.saturating_mul(TABLE_ELEMENT_BYTES))?;
        self.tables += extra;
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_every_memory_and_table_together() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.table_growing(0, 4, None).unwrap()); // 32 bytes
                                                       // A second memory of 10 would be fine alone, not on top of the first.
        assert!(l.memory_growing(0, 10, None).is_err());
        assert_eq!(l.exceeded, Some(102));
        assert_eq!(l.peak_bytes, 92);
    }
}
