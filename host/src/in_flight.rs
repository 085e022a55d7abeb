//! A count of work in flight that can be awaited until it reaches zero: the bridge's
//! calls during a drain, the settlements of abandoned creates before `call` exits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One unit of work; dropping it ends it.
#[derive(Debug)]
pub struct Entered(Arc<InFlight>);

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> Entered {
        self.count.fetch_add(1, Ordering::AcqRel);
        Entered(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits up to `limit` for the count to reach zero; true when it did.
    pub async fn idle_within(&self, limit: Duration) -> bool {
        let all_done = async {
            loop {
                let idle = self.idle.notified();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(limit, all_done).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_until_the_last_unit_ends() {
        let work = Arc::new(InFlight::default());
        let (a, b) = (work.enter(), work.enter());
        assert_eq!(work.count(), 2);
        assert!(!work.idle_within(Duration::from_millis(20)).await);
        drop(a);
        let ended = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(b);
        });
        assert!(work.idle_within(Duration::from_secs(5)).await);
        ended.await.unwrap();
        assert_eq!(work.count(), 0);
    }
}
