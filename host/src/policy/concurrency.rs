//! Concurrency cap on live sandboxes per provider (`max_concurrent_sandboxes`, default 10).
//!
//! `in_flight` is derived, never counted separately: it is the number of sandboxes the
//! book knows to be live plus the creates still waiting on the upstream. So it cannot
//! go negative, a stop releases a slot exactly once (only the first stop of a known id
//! removes it), and `list` reconciliation simply replaces the live set with upstream's.
//! A [`Reservation`] is an RAII guard: dropping it without `commit` releases the slot.
//! The book is keyed by provider name in the registry, so it survives a plugin swap.

use crate::contract::codes::{CallError, Code};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the host remembers of a live sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSandbox {
    pub image: String,
    /// RFC 3339, when known.
    pub started_at: Option<String>,
}

#[derive(Debug, Default)]
struct Book {
    /// Live sandboxes and the commit generation that added each (0 = learnt from upstream).
    live: HashMap<String, (LiveSandbox, u64)>,
    pending: usize,
    /// Bumped by every commit, so a reconcile can keep what was created while it listed.
    generation: u64,
}

/// Per-provider slot accounting.
#[derive(Debug, Default)]
pub struct SlotBook {
    inner: Mutex<Book>,
}

impl SlotBook {
    pub fn new() -> Arc<Self> {
        Arc::new(SlotBook::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        // The book holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live sandboxes plus pending creates.
    pub fn in_flight(&self) -> usize {
        let b = self.lock();
        b.live.len() + b.pending
    }

    /// Reserves a slot for a create, or S400 at the cap.
    pub fn reserve(self: &Arc<Self>, plugin: &str, cap: usize) -> Result<Reservation, CallError> {
        self.reserve_many(plugin, cap, 1).map(|mut r| r.pop().expect("one reservation"))
    }

    /// Reserves `n` slots at once (a `branch`), or S400 when they do not all fit.
    pub fn reserve_many(self: &Arc<Self>, plugin: &str, cap: usize, n: usize) -> Result<Vec<Reservation>, CallError> {
        let mut b = self.lock();
        let used = b.live.len() + b.pending;
        if used.saturating_add(n) > cap {
            let asked = if n == 1 { String::new() } else { format!(" ({n} requested)") };
            return Err(CallError::new(
                Code::CapReached,
                format!(
                    "provider `{plugin}` is at its cap of {cap} concurrent sandboxes ({used} in flight){asked}; \
                     stop one first or raise max_concurrent_sandboxes in plugins/{plugin}.toml."
                ),
            ));
        }
        b.pending += n;
        Ok((0..n).map(|_| Reservation { book: Some(self.clone()) }).collect())
    }

    /// Marks `id` stopped. Returns true when this released a slot (first stop of a known id).
    pub fn release(&self, id: &str) -> bool {
        self.lock().live.remove(id).is_some()
    }

    /// What the host knows of `id`, if it is live.
    pub fn get(&self, id: &str) -> Option<LiveSandbox> {
        self.lock().live.get(id).map(|(s, _)| s.clone())
    }

    /// The commit generation now; pass it to `reconcile` when the upstream list started.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Replaces the live set with what the upstream reported in a list that started at
    /// `listed_at`; sandboxes committed after that are kept even if the list missed them.
    pub fn reconcile(&self, upstream: impl IntoIterator<Item = (String, LiveSandbox)>, listed_at: u64) {
        let mut b = self.lock();
        let mut fresh: HashMap<String, (LiveSandbox, u64)> = upstream.into_iter().map(|(id, s)| (id, (s, 0))).collect();
        for (id, (known, gen)) in b.live.iter() {
            match fresh.get_mut(id) {
                // Keep what only the host knew (e.g. the create-time start).
                Some((s, g)) => {
                    if s.started_at.is_none() {
                        s.started_at = known.started_at.clone();
                    }
                    *g = *gen;
                }
                None if *gen > listed_at => {
                    fresh.insert(id.clone(), (known.clone(), *gen));
                }
                None => {}
            }
        }
        b.live = fresh;
    }
}

/// A pending create's slot. `commit` turns it into a live sandbox; drop releases it.
#[derive(Debug)]
pub struct Reservation {
    book: Option<Arc<SlotBook>>,
}

impl Reservation {
    pub fn commit(mut self, id: String, sandbox: LiveSandbox) {
        if let Some(book) = self.book.take() {
            let mut b = book.lock();
            b.pending -= 1;
            b.generation += 1;
            let gen = b.generation;
            b.live.insert(id, (sandbox, gen));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(book) = self.book.take() {
            book.lock().pending -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_committed_while_a_list_ran_survives_the_reconcile() {
        let book = SlotBook::new();
        let listed_at = book.generation();
        // The list is in flight upstream; meanwhile a create commits.
        book.reserve("p", 5).unwrap().commit("new".into(), sbx());
        book.reconcile([("old".to_string(), sbx())], listed_at);
        assert_eq!(book.in_flight(), 2);
        assert!(book.release("new"));
    }

    #[test]
    fn many_slots_are_reserved_together_or_not_at_all() {
        let book = SlotBook::new();
        book.reserve("p", 3).unwrap().commit("a".into(), sbx());
        let e = book.reserve_many("p", 3, 3).unwrap_err();
        assert!(e.message().contains("(3 requested)"), "{e}");
        let two = book.reserve_many("p", 3, 2).unwrap();
        assert_eq!(book.in_flight(), 3);
        drop(two);
        assert_eq!(book.in_flight(), 1);
    }

    fn sbx() -> LiveSandbox {
        LiveSandbox { image: "base".into(), started_at: None }
    }

    #[test]
    fn cap_is_enforced_and_a_dropped_reservation_rolls_back() {
        let book = SlotBook::new();
        let r1 = book.reserve("p", 1).unwrap();
        assert_eq!(book.reserve("p", 1).unwrap_err().code, Code::CapReached);
        drop(r1);
        assert_eq!(book.in_flight(), 0);
        book.reserve("p", 1).unwrap().commit("a".into(), sbx());
        assert_eq!(book.in_flight(), 1);
        assert!(book.reserve("p", 1).is_err());
    }

    #[test]
    fn a_slot_is_released_once_per_sandbox() {
        let book = SlotBook::new();
        book.reserve("p", 5).unwrap().commit("a".into(), sbx());
        assert!(book.release("a"));
        assert!(!book.release("a"));
        assert!(!book.release("never-created"));
        assert_eq!(book.in_flight(), 0);
    }

    #[test]
    fn reconcile_replaces_the_live_set_but_keeps_pending_creates() {
        let book = SlotBook::new();
        book.reserve("p", 5).unwrap().commit("a".into(), sbx());
        let pending = book.reserve("p", 5).unwrap();
        book.reconcile([("x".to_string(), sbx()), ("y".to_string(), sbx())], book.generation());
        assert_eq!(book.in_flight(), 3);
        assert!(!book.release("a"));
        assert!(book.release("x"));
        drop(pending);
        assert_eq!(book.in_flight(), 1);
    }
}
