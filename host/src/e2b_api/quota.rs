//! Each key's own limits, beside the providers' caps the host enforces for everyone: a
//! request rate (token bucket, one minute's worth banked at most) and a sandbox count.
//!
//! The count is what the providers' lists show the key owning, so it survives restarts
//! and sees sandboxes that ended upstream. A capped key's creates run one at a time
//! (count, then create), so two cannot both see the last free place.

use super::auth::Caller;
use super::errors::ApiError;
use crate::policy::rate::TokenBucket;

pub struct KeyQuota {
    bucket: Option<TokenBucket>,
    creating: tokio::sync::Mutex<()>,
    name: String,
}

impl KeyQuota {
    pub fn new(name: &str, rate_per_minute: Option<u32>) -> KeyQuota {
        let bucket = rate_per_minute.map(|r| TokenBucket::new(f64::from(r) / 60.0, r));
        KeyQuota { bucket, creating: tokio::sync::Mutex::new(()), name: name.into() }
    }

    /// Takes one request's token, or says 429 and when to come back.
    pub fn admit(&self) -> Result<(), ApiError> {
        let Some(bucket) = &self.bucket else { return Ok(()) };
        bucket.try_take().map_err(|wait| {
            let mut e = ApiError::new(429, format!("[S500] key {:?} is over its rate limit; retry in {} ms", self.name, wait.as_millis()));
            e.retry_after = Some(wait);
            e
        })
    }

    /// Held across a capped key's count and create.
    pub async fn serialise_creates(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.creating.lock().await
    }
}

/// The 429 for a key at its sandbox cap; retrying cannot help until one is killed.
pub fn cap_reached(name: &str, owned: usize, max: usize) -> ApiError {
    ApiError::new(429, format!("[S400] key {name:?} has {owned} sandboxes, its cap is {max}; kill one first")).no_retry()
}

pub struct Quotas(Vec<KeyQuota>);

impl Quotas {
    pub fn new(keys: impl Iterator<Item = (String, Option<u32>)>) -> Quotas {
        Quotas(keys.map(|(name, rate)| KeyQuota::new(&name, rate)).collect())
    }

    pub fn of(&self, caller: Caller) -> &KeyQuota {
        &self.0[caller.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_rate_gets_429_with_a_retry_hint_and_no_rate_means_no_limit() {
        let q = KeyQuota::new("capped", Some(2));
        assert!(q.admit().is_ok() && q.admit().is_ok());
        let e = q.admit().unwrap_err();
        assert_eq!(e.status, 429);
        assert!(e.retry_after.is_some() && !e.final_answer, "a rate limit clears: the SDK may retry");
        let free = KeyQuota::new("free", None);
        assert!((0..1000).all(|_| free.admit().is_ok()));
    }

    #[test]
    fn a_full_cap_is_final() {
        let e = cap_reached("capped", 1, 1);
        assert_eq!((e.status, e.final_answer), (429, true));
        assert!(e.message.starts_with("[S400]"));
    }
}
