//! Latency percentiles and closed-loop throughput, measured the same way for every path.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

/// `n` sequential calls after `warmup` unmeasured ones.
pub async fn latency<F, Fut>(warmup: usize, n: usize, mut f: F) -> Latency
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..warmup {
        f().await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    samples.sort();
    Latency { p50: samples[n / 2], p99: samples[(n * 99 / 100).min(n - 1)] }
}

/// Calls made by `callers` concurrent closed loops for `window`, and how long they took
/// (the window plus the last calls' ends).
async fn closed_loops<F, Fut>(callers: usize, window: Duration, f: F) -> (u64, Duration)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (f, done) = (f.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    f().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

/// Process CPU time (user + system) so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU per call and calls/s with `callers` closed loops for `window`.
pub async fn cpu_per_call<F, Fut>(callers: usize, window: Duration, f: F) -> (Duration, f64)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let before = cpu_time();
    let (calls, took) = closed_loops(callers, window, f).await;
    let spent = cpu_time().saturating_sub(before);
    let calls = calls.max(1) as f64;
    (spent.div_f64(calls), calls / took.as_secs_f64())
}

pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Resident set size of this process, bytes.
pub fn rss() -> u64 {
    proc_number("/proc/self/status", "VmRSS:") * 1024
}

/// Proportional set size of this process, bytes: pages shared between mappings (every
/// instance maps its plugin's memory image) counted once, not once per mapping as RSS does.
pub fn pss() -> u64 {
    proc_number("/proc/self/smaps_rollup", "Pss:") * 1024
}

/// Threads of this process.
pub fn threads() -> u64 {
    proc_number("/proc/self/status", "Threads:")
}

/// The number after `key` on its line of `file` (0 when absent).
fn proc_number(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
