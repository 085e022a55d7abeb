//! Per-plugin call admission: a request-rate token bucket and a cap on calls in flight.
//! Both reject at once with S500 and a retry hint; waiting could pile up callers behind
//! a slow plugin and turn one misbehaving provider into host-wide latency.
//! Defaults: 64 calls in flight, no rate limit (set `limits.rate_per_sec`).

use crate::contract::codes::{CallError, Code};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` banked.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: rate_per_sec, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&self) -> Result<(), Duration> {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = *s;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *s = (tokens - 1.0, now);
            Ok(())
        } else {
            *s = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

/// Admission state of one plugin version.
#[derive(Debug)]
pub struct Admission {
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    bucket: Option<TokenBucket>,
}

/// A call's admission; dropping it frees the in-flight place.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(max_in_flight: usize, rate_per_sec: Option<f64>, burst: Option<u32>) -> Self {
        let bucket = rate_per_sec.map(|r| TokenBucket::new(r, burst.unwrap_or(r.ceil().max(1.0) as u32)));
        Admission { max_in_flight, in_flight: Arc::default(), bucket }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Admits a call now or refuses it with S500.
    pub fn admit(&self, plugin: &str) -> Result<Admitted, CallError> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.in_flight.clone());
        if now >= self.max_in_flight {
            return Err(CallError::new(
                Code::RateLimited,
                format!(
                    "plugin `{plugin}` already has {} calls in flight, its limit; retry after 100 ms or raise limits.max_calls_in_flight in plugins/{plugin}.toml.",
                    self.max_in_flight
                ),
            )
            .with_retry_after(Some(100)));
        }
        if let Some(bucket) = &self.bucket {
            if let Err(wait) = bucket.try_take() {
                let ms = wait.as_millis().max(1) as u64;
                return Err(CallError::new(
                    Code::RateLimited,
                    format!("plugin `{plugin}` is over its request rate ({}/s); retry after {ms} ms or raise limits.rate_per_sec in plugins/{plugin}.toml.", bucket.rate),
                )
                .with_retry_after(Some(ms)));
            }
        }
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refills_at_the_rate() {
        let b = TokenBucket::new(10.0, 2);
        let t0 = Instant::now();
        assert!(b.try_take_at(t0).is_ok());
        assert!(b.try_take_at(t0).is_ok());
        let wait = b.try_take_at(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::from_millis(90), "{wait:?}");
        assert!(b.try_take_at(t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn calls_beyond_the_in_flight_cap_are_refused_at_once_and_places_come_back() {
        let a = Admission::new(1, None, None);
        let first = a.admit("p").unwrap();
        let e = a.admit("p").unwrap_err();
        assert_eq!((e.code, e.retry_after_ms), (Code::RateLimited, Some(100)));
        drop(first);
        assert_eq!(a.in_flight(), 0);
        assert!(a.admit("p").is_ok());
    }

    #[test]
    fn a_rate_refusal_carries_the_wait() {
        let a = Admission::new(10, Some(1.0), Some(1));
        let _ok = a.admit("p").unwrap();
        let e = a.admit("p").unwrap_err();
        assert!(e.message().contains("retry after"), "{e}");
        assert!(e.retry_after_ms.unwrap() > 900);
    }
}
