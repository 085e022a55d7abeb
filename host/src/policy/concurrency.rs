//! Concurrency cap on live sandboxes per provider (`max_concurrent_sandboxes`, default 10).
//!
//! `in_flight` is derived, never counted separately: it is the number of sandboxes the
//! book knows to be live plus the creates still waiting on the upstream. So it cannot
//! go negative, a stop releases a slot exactly once (only the first stop of a known id
//! removes it), and `list` reconciliation simply replaces the live set with upstream's.
//! A [`Reservation`] is an RAII guard: dropping it without `commit` releases the slot.
//! The book is keyed by provider name in the registry, so it survives a plugin swap.
//!
//! Calls do not use [`SlotBook`] directly but a [`Book`]: the in-process one here
//! ([`LocalBook`], for `call`, `e2b-api` and hosts without an engine) or the one kept in
//! iii state and shared by every host on the engine (`policy/shared_book.rs`, `serve
//! --shared-state`). `calls/` cannot tell them apart.

use crate::contract::codes::{CallError, Code};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// What the host remembers of a live sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSandbox {
    pub image: String,
    /// RFC 3339, when known.
    pub started_at: Option<String>,
    /// The caller's label (create's `name`), for list rows whose upstream keeps no metadata.
    pub name: Option<String>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Live sandboxes and the generation that added each (0 = learnt from upstream).
    live: HashMap<String, (LiveSandbox, u64)>,
    /// Creates waiting on the upstream (each holds a [`Reservation`]).
    pending: usize,
    /// Upstream-learnt ids first seen while creates were pending: each may be one of
    /// those creates' own sandbox, so up to `pending` of them are not counted twice.
    unclaimed: HashSet<String>,
    /// Slots of abandoned creates whose sandbox may exist upstream, by the generation
    /// of the abandonment: each is held until a list that started after it is reconciled
    /// (that list counts the orphan itself, if the upstream made it).
    unknown: Vec<u64>,
    /// Stopped ids and the generation of the stop, kept while a list that started
    /// before the stop may still report them.
    released: HashMap<String, u64>,
    /// Start generations of the lists in flight (multiset), to prune `released`.
    lists: BTreeMap<u64, usize>,
    /// Bumped by every commit and release, so a reconcile can tell what changed while
    /// its list ran upstream.
    generation: u64,
}

impl Ledger {
    fn in_flight(&self) -> usize {
        let overlap = self.pending.min(self.unclaimed.len());
        self.live.len() + self.pending + self.unknown.len() - overlap
    }

    fn bump(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Ends a pending create; with none left, no upstream id can be one of them.
    fn settle_pending(&mut self) {
        self.pending -= 1;
        if self.pending == 0 {
            self.unclaimed.clear();
        }
    }

    /// Forgets stops that no list in flight can have missed.
    fn prune_released(&mut self) {
        match self.lists.keys().next().copied() {
            Some(oldest) => self.released.retain(|_, gen| *gen > oldest),
            None => self.released.clear(),
        }
    }
}

/// Per-provider slot accounting.
#[derive(Debug, Default)]
pub struct SlotBook {
    inner: Mutex<Ledger>,
}

impl SlotBook {
    pub fn new() -> Arc<Self> {
        Arc::new(SlotBook::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // The book holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live sandboxes plus pending creates plus abandoned creates not yet accounted for.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    /// Reserves a slot for a create, or S400 at the cap.
    pub fn reserve(self: &Arc<Self>, plugin: &str, cap: usize) -> Result<Reservation, CallError> {
        self.reserve_many(plugin, cap, 1).map(|mut r| r.pop().expect("one reservation"))
    }

    /// Reserves `n` slots at once (a `branch`), or S400 when they do not all fit.
    pub fn reserve_many(self: &Arc<Self>, plugin: &str, cap: usize, n: usize) -> Result<Vec<Reservation>, CallError> {
        let mut b = self.lock();
        let used = b.in_flight();
        if used.saturating_add(n) > cap {
            return Err(cap_reached(plugin, cap, used, n));
        }
        b.pending += n;
        Ok((0..n).map(|_| Reservation { book: Some(self.clone()) }).collect())
    }

    /// Records a live sandbox that had no reservation (e.g. a `branch` that returned
    /// more siblings than asked): it counts against the cap like any other.
    pub fn adopt(&self, id: String, sandbox: LiveSandbox) {
        let mut b = self.lock();
        let gen = b.bump();
        b.live.insert(id, (sandbox, gen));
    }

    /// Marks `id` stopped. Returns true when this released a slot (first stop of a known id).
    pub fn release(&self, id: &str) -> bool {
        let mut b = self.lock();
        let gen = b.bump();
        if !b.lists.is_empty() {
            b.released.insert(id.to_string(), gen);
        }
        b.unclaimed.remove(id);
        b.live.remove(id).is_some()
    }

    /// What the host knows of `id`, if it is live.
    pub fn get(&self, id: &str) -> Option<LiveSandbox> {
        self.lock().live.get(id).map(|(s, _)| s.clone())
    }

    /// Call when an upstream list is about to be sent; pass the ticket to `reconcile`.
    pub fn begin_list(self: &Arc<Self>) -> ListTicket {
        let mut b = self.lock();
        let started = b.generation;
        *b.lists.entry(started).or_default() += 1;
        ListTicket { book: self.clone(), started }
    }

    /// Replaces the live set with what the upstream reported in the list of `ticket`.
    /// Sandboxes committed after the list started are kept even if it missed them, and
    /// sandboxes stopped after it started are not brought back by it. Returns the
    /// sandboxes the book knew that the upstream no longer has (reaped upstream).
    pub fn reconcile(&self, upstream: impl IntoIterator<Item = (String, LiveSandbox)>, ticket: ListTicket) -> Vec<(String, LiveSandbox)> {
        let listed_at = ticket.started;
        let mut b = self.lock();
        let mut fresh: HashMap<String, (LiveSandbox, u64)> = upstream
            .into_iter()
            .filter(|(id, _)| b.released.get(id).is_none_or(|gen| *gen <= listed_at))
            .map(|(id, s)| (id, (s, 0)))
            .collect();
        for (id, (known, gen)) in b.live.iter() {
            match fresh.get_mut(id) {
                // Keep what only the host knew (e.g. the create-time start).
                Some((s, g)) => {
                    if s.started_at.is_none() {
                        s.started_at = known.started_at.clone();
                    }
                    if s.name.is_none() {
                        s.name = known.name.clone();
                    }
                    *g = *gen;
                }
                None if *gen > listed_at => {
                    fresh.insert(id.clone(), (known.clone(), *gen));
                }
                None => {}
            }
        }
        if b.pending > 0 {
            let new: Vec<String> = fresh.keys().filter(|id| !b.live.contains_key(*id)).cloned().collect();
            b.unclaimed.extend(new);
        }
        b.unclaimed.retain(|id| fresh.contains_key(id));
        b.unknown.retain(|since| *since > listed_at);
        let old = std::mem::replace(&mut b.live, fresh);
        let reaped = old.into_iter().filter(|(id, _)| !b.live.contains_key(id)).map(|(id, (s, _))| (id, s)).collect();
        drop(b);
        drop(ticket);
        reaped
    }
}

/// An upstream list in flight (see [`SlotBook::begin_list`]); dropping it unreconciled is fine.
#[derive(Debug)]
pub struct ListTicket {
    book: Arc<SlotBook>,
    started: u64,
}

impl Drop for ListTicket {
    fn drop(&mut self) {
        let mut b = self.book.lock();
        if let Some(n) = b.lists.get_mut(&self.started) {
            *n -= 1;
            if *n == 0 {
                b.lists.remove(&self.started);
            }
        }
        b.prune_released();
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
            b.unclaimed.remove(&id);
            b.settle_pending();
            let gen = b.bump();
            b.live.insert(id, (sandbox, gen));
        }
    }

    /// The create was abandoned after its request reached the upstream: the sandbox may
    /// exist, so the slot stays counted until a list that starts after now is reconciled.
    pub fn abandon(mut self) {
        if let Some(book) = self.book.take() {
            let mut b = book.lock();
            b.settle_pending();
            let since = b.bump();
            b.unknown.push(since);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(book) = self.book.take() {
            book.lock().settle_pending();
        }
    }
}

/// S400: `n` more slots do not fit under `cap` with `used` taken (every book says it so).
pub fn cap_reached(plugin: &str, cap: usize, used: usize, n: usize) -> CallError {
    let asked = if n == 1 { String::new() } else { format!(" ({n} requested)") };
    CallError::new(
        Code::CapReached,
        format!(
            "provider `{plugin}` is at its cap of {cap} concurrent sandboxes ({used} in flight){asked}; \
             stop one first or raise max_concurrent_sandboxes in plugins/{plugin}.toml."
        ),
    )
}

/// A boxed future of a [`Book`] method.
pub type BookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One provider's slot book as the calls see it. Every method that changes the count is
/// exactly-once per sandbox: a slot is reserved before the upstream create, committed or
/// given back after it, and released by the first stop (or list) that finds it gone.
pub trait Book: Send + Sync {
    /// Reserves `n` slots (a create is 1, a branch its count), or S400 when they do not
    /// all fit under `cap`; a book that cannot count (the engine away) refuses too.
    fn reserve_many<'a>(&'a self, plugin: &'a str, cap: usize, n: usize) -> BookFuture<'a, Result<Vec<Slot>, CallError>>;
    /// Counts a live sandbox that had no reservation (learnt by `get`/`resume`, or an
    /// extra branch sibling), unless the book knows it already.
    fn adopt(&self, id: String, sandbox: LiveSandbox) -> BookFuture<'_, ()>;
    /// Marks `id` stopped; true when this released its slot (the first stop of a known id).
    fn release<'a>(&'a self, id: &'a str) -> BookFuture<'a, bool>;
    /// What the book knows of `id`, if it is live.
    fn get<'a>(&'a self, id: &'a str) -> BookFuture<'a, Option<LiveSandbox>>;
    /// Every live sandbox the book knows (a list's rows complete theirs from it).
    fn known(&self) -> BookFuture<'_, HashMap<String, LiveSandbox>>;
    /// Call before an upstream list is sent; pass the ticket to `reconcile`.
    fn begin_list(&self) -> BookFuture<'_, Ticket>;
    /// Makes the book what the upstream list of `ticket` reported (repairing drift);
    /// returns the sandboxes it knew that the upstream no longer has (reaped).
    fn reconcile(
        &self,
        upstream: Vec<(String, LiveSandbox)>,
        ticket: Ticket,
    ) -> BookFuture<'_, Result<Vec<(String, LiveSandbox)>, CallError>>;
    /// Slots taken: live sandboxes, pending creates, abandoned ones not yet accounted for.
    fn in_flight(&self) -> BookFuture<'_, Result<usize, CallError>>;

    /// Reserves one slot (a create).
    fn reserve<'a>(&'a self, plugin: &'a str, cap: usize) -> BookFuture<'a, Result<Slot, CallError>> {
        Box::pin(async move {
            let mut slots = self.reserve_many(plugin, cap, 1).await?;
            slots.pop().ok_or_else(|| CallError::new(Code::PluginTrapped, format!("provider `{plugin}`: the slot book reserved nothing.")))
        })
    }
}

/// A reserved slot of some [`Book`]: `commit` turns it into a live sandbox, `abandon`
/// keeps it counted until a list accounts for it, and dropping it gives it back.
pub struct Slot(Box<dyn Held>);

/// What a [`Slot`] holds; its `Drop` gives the slot back when neither method ran.
pub trait Held: Send {
    fn commit(self: Box<Self>, id: String, sandbox: LiveSandbox) -> BookFuture<'static, ()>;
    fn abandon(self: Box<Self>) -> BookFuture<'static, ()>;
}

impl Slot {
    pub fn new(held: impl Held + 'static) -> Slot {
        Slot(Box::new(held))
    }

    pub async fn commit(self, id: String, sandbox: LiveSandbox) {
        self.0.commit(id, sandbox).await
    }

    /// The create was abandoned after its request reached the upstream (see [`Reservation::abandon`]).
    pub async fn abandon(self) {
        self.0.abandon().await
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Held for Reservation {
    fn commit(self: Box<Self>, id: String, sandbox: LiveSandbox) -> BookFuture<'static, ()> {
        Reservation::commit(*self, id, sandbox);
        Box::pin(async {})
    }
    fn abandon(self: Box<Self>) -> BookFuture<'static, ()> {
        Reservation::abandon(*self);
        Box::pin(async {})
    }
}

/// An upstream list in flight, as the book that began it needs it back.
#[derive(Debug)]
pub enum Ticket {
    Local(ListTicket),
    /// The shared book's change counter when the list started (`None`: it could not be read).
    Shared {
        generation: Option<i64>,
    },
}

/// The in-process [`SlotBook`] as a [`Book`].
#[derive(Debug, Clone)]
pub struct LocalBook(pub Arc<SlotBook>);

impl Book for LocalBook {
    fn reserve_many<'a>(&'a self, plugin: &'a str, cap: usize, n: usize) -> BookFuture<'a, Result<Vec<Slot>, CallError>> {
        let reserved = self.0.reserve_many(plugin, cap, n).map(|r| r.into_iter().map(Slot::new).collect());
        Box::pin(async move { reserved })
    }
    fn adopt(&self, id: String, sandbox: LiveSandbox) -> BookFuture<'_, ()> {
        if self.0.get(&id).is_none() {
            self.0.adopt(id, sandbox);
        }
        Box::pin(async {})
    }
    fn release<'a>(&'a self, id: &'a str) -> BookFuture<'a, bool> {
        let released = self.0.release(id);
        Box::pin(async move { released })
    }
    fn get<'a>(&'a self, id: &'a str) -> BookFuture<'a, Option<LiveSandbox>> {
        let known = self.0.get(id);
        Box::pin(async move { known })
    }
    fn known(&self) -> BookFuture<'_, HashMap<String, LiveSandbox>> {
        let all = self.0.lock().live.iter().map(|(id, (s, _))| (id.clone(), s.clone())).collect();
        Box::pin(async move { all })
    }
    fn begin_list(&self) -> BookFuture<'_, Ticket> {
        let ticket = Ticket::Local(self.0.begin_list());
        Box::pin(async move { ticket })
    }
    fn reconcile(
        &self,
        upstream: Vec<(String, LiveSandbox)>,
        ticket: Ticket,
    ) -> BookFuture<'_, Result<Vec<(String, LiveSandbox)>, CallError>> {
        let result = match ticket {
            Ticket::Local(t) => Ok(self.0.reconcile(upstream, t)),
            Ticket::Shared { .. } => {
                Err(CallError::new(Code::PluginTrapped, "the in-process slot book was handed another book's list ticket.".to_string()))
            }
        };
        Box::pin(async move { result })
    }
    fn in_flight(&self) -> BookFuture<'_, Result<usize, CallError>> {
        let n = self.0.in_flight();
        Box::pin(async move { Ok(n) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_committed_while_a_list_ran_survives_the_reconcile() {
        let book = SlotBook::new();
        let list = book.begin_list();
        // The list is in flight upstream; meanwhile a create commits.
        book.reserve("p", 5).unwrap().commit("new".into(), sbx());
        book.reconcile([("old".to_string(), sbx())], list);
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
        LiveSandbox { image: "base".into(), started_at: None, name: None }
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
        book.reconcile([("x".to_string(), sbx()), ("y".to_string(), sbx())], book.begin_list());
        // x and y may be the pending create's own sandbox: counted once, not twice.
        assert_eq!(book.in_flight(), 2);
        assert!(!book.release("a"));
        assert!(book.release("x"));
        drop(pending);
        assert_eq!(book.in_flight(), 1);
    }

    /// Review item 5: a list that started before a stop must not bring the stopped
    /// sandbox back (a phantom slot that refused every create at the cap).
    #[test]
    fn a_stale_list_does_not_resurrect_a_stopped_sandbox() {
        let book = SlotBook::new();
        book.reserve("p", 1).unwrap().commit("sbx4".into(), sbx());
        let list = book.begin_list();
        // Stopped while the list was upstream, whose snapshot still had it.
        assert!(book.release("sbx4"));
        book.reconcile([("sbx4".to_string(), sbx())], list);
        assert_eq!(book.in_flight(), 0);
        assert!(book.reserve("p", 1).is_ok());
        // A list that started after the stop is believed: it is really there.
        book.reconcile([("sbx4".to_string(), sbx())], book.begin_list());
        assert_eq!(book.in_flight(), 1);
        assert!(book.lock().released.is_empty(), "tombstones are pruned once no list can need them");
    }

    /// Review item 6: a create still in flight, whose sandbox a list already saw, is
    /// one sandbox, not two (S400 at half the cap before).
    #[test]
    fn a_create_in_flight_seen_by_a_list_is_counted_once() {
        let book = SlotBook::new();
        let a = book.reserve("p", 2).unwrap();
        book.reconcile([("sbx5".to_string(), sbx())], book.begin_list());
        assert_eq!(book.in_flight(), 1);
        let b = book.reserve("p", 2).expect("one of two slots is free");
        assert_eq!(book.in_flight(), 2);
        a.commit("sbx5".into(), sbx());
        assert_eq!(book.in_flight(), 2);
        drop(b);
        assert_eq!(book.in_flight(), 1);
        // Had the listed sandbox been someone else's, a failed create leaves it counted.
        let c = book.reserve("p", 3).unwrap();
        book.reconcile([("sbx5".to_string(), sbx()), ("other".to_string(), sbx())], book.begin_list());
        drop(c);
        assert_eq!(book.in_flight(), 2);
    }

    /// Review item 4: an abandoned create keeps its slot until a list accounts for it.
    #[test]
    fn an_abandoned_create_keeps_its_slot_until_a_later_list() {
        let book = SlotBook::new();
        let older_list = book.begin_list();
        book.reserve("p", 1).unwrap().abandon();
        assert_eq!(book.in_flight(), 1);
        assert!(book.reserve("p", 1).is_err(), "the orphan may be running upstream");
        // A list that started before the abandonment proves nothing about it.
        book.reconcile([], older_list);
        assert_eq!(book.in_flight(), 1);
        book.reconcile([("orphan".to_string(), sbx())], book.begin_list());
        assert_eq!(book.in_flight(), 1, "the orphan is now counted as itself");
        assert!(book.release("orphan"));
        assert_eq!(book.in_flight(), 0);
    }

    #[test]
    fn adopted_sandboxes_count_against_the_cap() {
        let book = SlotBook::new();
        book.adopt("extra".into(), sbx());
        assert_eq!(book.reserve("p", 1).unwrap_err().code, Code::CapReached);
    }
}
