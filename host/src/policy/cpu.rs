//! CPU and wall-clock budgets per call.
//!
//! Guest CPU is metered with epoch interruption: a ticker thread bumps the engine's
//! epoch every [`TICK`]; each tick that lands while guest code runs invokes the Store's
//! deadline callback, which charges one tick, yields to the async executor (so a busy
//! guest cannot starve other calls on the same thread) and traps once the budget is
//! spent. Epochs do not advance the budget while the guest waits on host I/O, so every
//! call is also wrapped in a wall-clock deadline. Either limit → S701.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Epoch tick; the granularity of CPU accounting and of preemption.
pub const TICK: Duration = Duration::from_millis(5);

/// Guest CPU consumed by one call, in ticks; shared with the deadline callback.
#[derive(Debug, Default, Clone)]
pub struct CpuMeter(Arc<AtomicU64>);

impl CpuMeter {
    pub fn charge(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
    pub fn ticks(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn approx_cpu(&self) -> Duration {
        TICK * self.ticks() as u32
    }
}

/// Budget in ticks for `cpu`, at least one.
pub fn ticks_for(cpu: Duration) -> u64 {
    (cpu.as_nanos() / TICK.as_nanos()).max(1) as u64
}

/// Starts the ticker for `engine`. It holds only a weak reference, so it stops when the
/// engine is dropped.
pub fn start_ticker(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
