//! The slot book kept in iii state, shared by every host serving one engine (`serve
//! --shared-state`, the default under `serve`): the per-provider cap holds across hosts,
//! and a standby that takes over (`bridge/iii/ownership.rs`) counts what the dead host
//! created.
//!
//! The engine's `state::update` applies a list of ops to one value atomically (the `kv`
//! adapter holds its write lock across read, apply and write; the `redis` adapter runs
//! one Lua script), and answers the value before and after. There is no compare-and-set,
//! no TTL, and a counter can go negative. So:
//!
//! - **one counter value per provider** (scope [`SCOPE`], key = provider):
//!   `{live, generation, "pending:<worker>": n, …}`. A reserve increments this worker's
//!   `pending:` field by `n`; the answer's new value is the whole object, so the total
//!   taken (`live` + every `pending:`, negatives read as 0) is read in the same atomic
//!   step. Over the cap → decrement it back and S400: the total can pass the cap only
//!   for the instant between an over-reserve and its compensation, and never for a
//!   reserve that is admitted. A commit moves one slot from `pending:` to `live`; a
//!   failed create gives it back; every change of `live` by a call bumps `generation`.
//! - **one record per sandbox** (scope `sandbox-host::sandboxes::<provider>`, key = id):
//!   what the deployment created or learnt. A stop increments the record's `stops`
//!   field: only the stop whose answer shows it absent before releases the slot, so two
//!   stops on two hosts release it once.
//! - **a list repairs drift** (a host that died with creates pending, counts gone
//!   negative): when nothing committed or stopped while the list ran (`generation`
//!   unchanged) and no other host is repairing the same provider (a lock value taken
//!   with an increment), `live` is corrected by the difference between the count and
//!   the upstream (a relative update, so calls landing meanwhile keep theirs), records
//!   the upstream no longer has are claimed as a stop would, upstream sandboxes without
//!   one get one, and the `pending:` fields of gone workers are dropped. A worker is gone
//!   when this engine listed it before and no longer does (`engine::workers::list`), or
//!   when this engine never listed it and its heartbeat (scope [`WORKERS_SCOPE`], written
//!   every few seconds while connected, see [`heartbeat`]) is older than [`GONE_AFTER`]:
//!   hosts on other engines sharing the same Redis are listed by their own engine only.
//!   A host taken for gone that was not (its link dropped for a moment) puts its own
//!   field back as its creates settle. While calls are busy a list only
//!   raises a count that is short, never lowers one.
//!
//! Fail closed: a reserve whose state call fails (engine away, timeout) is refused with
//! S502 and nothing goes upstream; a release or commit that cannot be written leaves the
//! slot counted (the next list repairs it). The book never admits past the cap because
//! it could not count.

use super::concurrency::{cap_reached, Book, BookFuture, Held, LiveSandbox, Slot, Ticket};
use crate::contract::codes::{CallError, Code};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The state scope of every provider's counter (and its repair lock).
pub const SCOPE: &str = "sandbox-host::slots";
const LIVE: &str = "live";
const GENERATION: &str = "generation";
const PENDING: &str = "pending:";
const STOPS: &str = "stops";
/// Tries to give a slot back when the engine did not answer, one second apart.
const GIVE_BACK_TRIES: usize = 5;
/// Where each host using the shared books says it is alive (key: its worker name).
pub const WORKERS_SCOPE: &str = "sandbox-host::workers";
/// A host whose heartbeat is older than this, and that this engine does not list, is gone.
pub const GONE_AFTER: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Records that this host is alive (call it every few seconds while connected).
pub async fn heartbeat(state: &dyn EngineState) -> Result<(), StateError> {
    let payload =
        json!({"scope": WORKERS_SCOPE, "key": state.worker_name(), "value": {"worker": state.worker_name(), "seen_ms": now_ms()}});
    state.trigger("state::set", payload).await.map(drop)
}

/// The scope of provider `provider`'s sandbox records.
pub fn records_scope(provider: &str) -> String {
    format!("sandbox-host::sandboxes::{provider}")
}

/// Why the engine's state could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("this host is not connected to its iii engine")]
    NotConnected,
    #[error("the engine did not answer {0} in time")]
    Timeout(String),
    #[error("the engine refused {function}: {code}: {message}")]
    Refused { function: String, code: String, message: String },
    #[error("{0}")]
    Unexpected(String),
}

/// The engine's functions, as the shared book calls them (the bridge's iii client, or
/// [`MemoryState`] in tests).
pub trait EngineState: Send + Sync {
    /// Invokes `function` (`state::*`, `engine::workers::list`) with `payload`.
    fn trigger<'a>(&'a self, function: &'a str, payload: Value) -> BookFuture<'a, Result<Value, StateError>>;
    /// This host's worker name, unique on the engine.
    fn worker_name(&self) -> &str;
}

/// One provider's counter, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counter {
    live: i64,
    generation: i64,
    pending: BTreeMap<String, i64>,
}

impl Counter {
    fn of(v: &Value) -> Counter {
        let mut c = Counter::default();
        for (k, n) in v.as_object().into_iter().flatten() {
            let n = n.as_i64().unwrap_or(0);
            match k.as_str() {
                LIVE => c.live = n,
                GENERATION => c.generation = n,
                _ => {
                    if let Some(worker) = k.strip_prefix(PENDING) {
                        c.pending.insert(worker.to_string(), n);
                    }
                }
            }
        }
        c
    }

    fn pending_total(&self) -> i64 {
        self.pending.values().map(|n| (*n).max(0)).sum()
    }

    /// Slots taken; a count gone negative is read as none, never as room.
    fn taken(&self) -> usize {
        (self.live.max(0) + self.pending_total()) as usize
    }
}

fn inc(path: &str, by: i64) -> Value {
    json!({"type": "increment", "path": path, "by": by})
}

fn set(path: &str, value: Value) -> Value {
    json!({"type": "set", "path": path, "value": value})
}

fn record(id: &str, s: &LiveSandbox, by: &str) -> Value {
    json!({"sandbox_id": id, "image": s.image, "started_at": s.started_at, "name": s.name, "recorded_by": by})
}

fn live_of(v: &Value) -> Option<(String, LiveSandbox)> {
    if v.get(STOPS).and_then(Value::as_i64).unwrap_or(0) > 0 {
        return None;
    }
    let id = v.get("sandbox_id")?.as_str()?.to_string();
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some((id, LiveSandbox { image: text("image").unwrap_or_default(), started_at: text("started_at"), name: text("name") }))
}

/// How a claim on a record (a stop, or a list that found it gone) came out.
enum Claim {
    /// This claim was the first: the record existed and nobody had stopped it.
    First,
    /// Someone stopped it before, or it was never recorded.
    NotFirst,
}

struct Inner {
    state: Arc<dyn EngineState>,
    provider: String,
    /// Workers this host has seen connected to its own engine: one of them no longer
    /// listed there is gone at once, whatever its heartbeat says.
    seen_here: Mutex<HashSet<String>>,
}

/// One provider's slot book in iii state.
#[derive(Clone)]
pub struct SharedBook {
    inner: Arc<Inner>,
}

impl SharedBook {
    pub fn new(state: Arc<dyn EngineState>, provider: &str) -> SharedBook {
        SharedBook { inner: Arc::new(Inner { state, provider: provider.to_string(), seen_here: Mutex::default() }) }
    }
}

impl Inner {
    fn me(&self) -> &str {
        self.state.worker_name()
    }

    fn pending_field(&self) -> String {
        format!("{PENDING}{}", self.me())
    }

    /// The caller-facing error when the state cannot be used for `what`.
    fn refusal(&self, e: &StateError, what: &str) -> CallError {
        CallError::new(
            Code::Unavailable,
            format!(
                "provider `{}`: the slot book shared through iii state could not be used ({e}); {what}. Retry once this host is \
                 connected to its engine again.",
                self.provider
            ),
        )
    }

    /// `state::update` → (old value, new value); op errors are failures.
    async fn update(&self, scope: &str, key: &str, ops: Vec<Value>) -> Result<(Option<Value>, Value), StateError> {
        let answer = self.state.trigger("state::update", json!({"scope": scope, "key": key, "ops": ops})).await?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            return Err(StateError::Unexpected(format!("state::update on {scope}/{key} reported {}", Value::Array(errors.clone()))));
        }
        let old = answer.get("old_value").filter(|v| !v.is_null()).cloned();
        Ok((old, answer.get("new_value").cloned().unwrap_or(Value::Null)))
    }

    async fn counter(&self) -> Result<Counter, StateError> {
        let v = self.state.trigger("state::get", json!({"scope": SCOPE, "key": self.provider})).await?;
        Ok(Counter::of(&v))
    }

    async fn change_counter(&self, ops: Vec<Value>) -> Result<Counter, StateError> {
        self.update(SCOPE, &self.provider, ops).await.map(|(_, new)| Counter::of(&new))
    }

    /// Takes `n` of this host's pending slots out, with `also` in the same update. Had a
    /// list dropped this host's `pending:` field meanwhile (it took the host for gone),
    /// the field is put back to where it was rather than left below zero, where it
    /// would hide the host's next reservation.
    async fn unpend(&self, n: i64, also: Vec<Value>) -> Result<Counter, StateError> {
        let field = self.pending_field();
        let mut ops = vec![inc(&field, -n)];
        ops.extend(also);
        let (old, new) = self.update(SCOPE, &self.provider, ops).await?;
        let had = old.as_ref().and_then(|v| v.get(&field)).and_then(Value::as_i64).unwrap_or(0);
        if had < n {
            return self.change_counter(vec![inc(&field, n - had.max(0))]).await;
        }
        Ok(Counter::of(&new))
    }

    /// Gives `n` pending slots back, retrying in the background while the engine is away.
    fn give_back(self: &Arc<Self>, n: usize) {
        let inner = self.clone();
        let work = async move {
            for attempt in 1..=GIVE_BACK_TRIES {
                match inner.unpend(n as i64, Vec::new()).await {
                    Ok(_) => return,
                    Err(e) if attempt == GIVE_BACK_TRIES => tracing::error!(
                        plugin = %inner.provider,
                        "could not give {n} slot(s) back to the shared slot book ({e}); they stay counted until a list repairs the count"
                    ),
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(work)),
            Err(_) => tracing::error!(plugin = %self.provider, "no runtime to give {n} slot(s) back to the shared slot book"),
        }
    }

    async fn claim(&self, id: &str) -> Result<Claim, StateError> {
        let scope = records_scope(&self.provider);
        let (old, _) = self.update(&scope, id, vec![inc(STOPS, 1)]).await?;
        let first = old.as_ref().is_some_and(|v| v.get(STOPS).and_then(Value::as_i64).unwrap_or(0) == 0);
        // Gone now either way (a never-recorded id just made itself a record: removed too).
        if let Err(e) = self.state.trigger("state::delete", json!({"scope": scope, "key": id})).await {
            tracing::debug!(plugin = %self.provider, sandbox = id, "could not delete the record of a stopped sandbox: {e}");
        }
        Ok(if first { Claim::First } else { Claim::NotFirst })
    }

    async fn records(&self) -> Result<HashMap<String, LiveSandbox>, StateError> {
        let v = self.state.trigger("state::list", json!({"scope": records_scope(&self.provider)})).await?;
        Ok(v.as_array().into_iter().flatten().filter_map(live_of).collect())
    }

    /// The workers that may still hold slots: those this engine has connected and those
    /// whose heartbeat is recent (`None`: neither could be read, so nobody counts as gone).
    async fn alive_workers(&self) -> Option<HashSet<String>> {
        let connected = self.state.trigger("engine::workers::list", json!({})).await.ok();
        let beating = self.state.trigger("state::list", json!({"scope": WORKERS_SCOPE})).await.ok()?;
        let here: Option<HashSet<String>> = connected
            .as_ref()
            .and_then(|v| v.get("workers")?.as_array())
            .map(|workers| workers.iter().filter_map(|w| w.get("name").and_then(Value::as_str).map(str::to_string)).collect());
        let mut seen = self.seen_here.lock().unwrap_or_else(|p| p.into_inner());
        let left_here: HashSet<String> = match &here {
            Some(here) => {
                seen.extend(here.iter().cloned());
                seen.difference(here).cloned().collect()
            }
            None => HashSet::new(),
        };
        let mut alive = here.unwrap_or_default();
        let fresh = now_ms() - GONE_AFTER.as_millis() as i64;
        for beat in beating.as_array().into_iter().flatten() {
            let worker = beat.get("worker").and_then(Value::as_str).unwrap_or_default();
            if beat.get("seen_ms").and_then(Value::as_i64).is_some_and(|t| t >= fresh) && !left_here.contains(worker) {
                alive.insert(worker.to_string());
            }
        }
        Some(alive)
    }

    /// Takes the provider's repair lock (an increment only one taker sees reach 1).
    async fn lock(&self, alive: Option<&HashSet<String>>) -> Option<RepairLock<'_>> {
        let key = format!("{}::repairing", self.provider);
        let (_, new) = self.update(SCOPE, &key, vec![inc("held", 1)]).await.ok()?;
        if new.get("held").and_then(Value::as_i64) == Some(1) {
            let _ = self.update(SCOPE, &key, vec![set("holder", json!(self.me()))]).await;
            return Some(RepairLock { inner: self, key });
        }
        let _ = self.update(SCOPE, &key, vec![inc("held", -1)]).await;
        // A holder that died would keep it for ever: free it for the next list.
        let holder = new.get("holder").and_then(Value::as_str);
        if let (Some(alive), Some(holder)) = (alive, holder) {
            if !alive.contains(holder) {
                tracing::warn!(plugin = %self.provider, "freeing the shared slot book's repair lock held by gone worker {holder:?}");
                let _ = self.update(SCOPE, &key, vec![set("held", json!(0)), set("holder", Value::Null)]).await;
            }
        }
        None
    }

    /// The repair of a quiet list (see the module doc); returns the reaped sandboxes.
    async fn repair(
        &self,
        counter: &Counter,
        records: HashMap<String, LiveSandbox>,
        listed: &HashMap<String, LiveSandbox>,
        alive: Option<&HashSet<String>>,
    ) -> Vec<(String, LiveSandbox)> {
        let mut drift = counter.live - listed.len() as i64;
        let mut reaped = Vec::new();
        for (id, known) in records.iter().filter(|(id, _)| !listed.contains_key(*id)) {
            match self.claim(id).await {
                // Counted in `drift`: the correction below releases it.
                Ok(Claim::First) => reaped.push((id.clone(), known.clone())),
                // A stop released it since the count was read (or the claim could not be
                // made, and one may have): do not release it twice.
                Ok(Claim::NotFirst) | Err(_) => drift -= 1,
            }
        }
        let scope = records_scope(&self.provider);
        for (id, s) in listed.iter().filter(|(id, _)| !records.contains_key(*id)) {
            let payload = json!({"scope": scope, "key": id, "value": record(id, s, "list")});
            if let Err(e) = self.state.trigger("state::set", payload).await {
                tracing::debug!(plugin = %self.provider, sandbox = %id, "could not record a listed sandbox: {e}");
            }
        }
        let mut ops = Vec::new();
        if drift != 0 {
            ops.push(inc(LIVE, -drift));
        }
        let gone: Vec<&String> =
            counter.pending.keys().filter(|w| w.as_str() != self.me() && alive.is_some_and(|a| !a.contains(*w))).collect();
        for w in &gone {
            ops.push(json!({"type": "remove", "path": format!("{PENDING}{w}")}));
        }
        if ops.is_empty() {
            return reaped;
        }
        ops.push(inc(GENERATION, 1));
        match self.change_counter(ops).await {
            Ok(now) => {
                if drift != 0 || !gone.is_empty() {
                    tracing::info!(
                        plugin = %self.provider,
                        drift,
                        gone_workers = ?gone,
                        taken = now.taken(),
                        "repaired the shared slot count from the upstream list"
                    );
                }
            }
            Err(e) => tracing::warn!(plugin = %self.provider, "could not repair the shared slot count ({e}); the next list tries again"),
        }
        reaped
    }
}

/// The provider's repair lock, held by this host until `release`.
struct RepairLock<'a> {
    inner: &'a Inner,
    key: String,
}

impl RepairLock<'_> {
    async fn release(self) {
        let _ = self.inner.update(SCOPE, &self.key, vec![inc("held", -1), set("holder", Value::Null)]).await;
    }
}

/// A slot reserved in the shared book.
struct SharedSlot {
    inner: Option<Arc<Inner>>,
}

impl Held for SharedSlot {
    fn commit(mut self: Box<Self>, id: String, sandbox: LiveSandbox) -> BookFuture<'static, ()> {
        let inner = self.inner.take();
        Box::pin(async move {
            let Some(inner) = inner else { return };
            if let Err(e) = inner.unpend(1, vec![inc(LIVE, 1), inc(GENERATION, 1)]).await {
                tracing::warn!(plugin = %inner.provider, sandbox = %id, "the shared slot book did not take the new sandbox ({e}); its slot stays counted as pending until a list");
            }
            let payload = json!({"scope": records_scope(&inner.provider), "key": id, "value": record(&id, &sandbox, inner.me())});
            if let Err(e) = inner.state.trigger("state::set", payload).await {
                tracing::warn!(plugin = %inner.provider, sandbox = %id, "could not record the new sandbox in iii state ({e}); a list records it");
            }
        })
    }

    fn abandon(mut self: Box<Self>) -> BookFuture<'static, ()> {
        let inner = self.inner.take();
        Box::pin(async move {
            let Some(inner) = inner else { return };
            // Counted as live until a list says what the upstream really runs.
            if let Err(e) = inner.unpend(1, vec![inc(LIVE, 1), inc(GENERATION, 1)]).await {
                tracing::warn!(plugin = %inner.provider, "could not mark an abandoned create in the shared slot book ({e}); it stays counted as pending");
            }
        })
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.give_back(1);
        }
    }
}

impl Book for SharedBook {
    fn reserve_many<'a>(&'a self, plugin: &'a str, cap: usize, n: usize) -> BookFuture<'a, Result<Vec<Slot>, CallError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let now = inner
                .change_counter(vec![inc(&inner.pending_field(), n as i64)])
                .await
                .map_err(|e| inner.refusal(&e, "no sandbox was created and nothing was sent upstream"))?;
            if now.taken() > cap {
                if inner.unpend(n as i64, Vec::new()).await.is_err() {
                    inner.give_back(n);
                }
                return Err(cap_reached(plugin, cap, now.taken().saturating_sub(n), n));
            }
            Ok((0..n).map(|_| Slot::new(SharedSlot { inner: Some(inner.clone()) })).collect())
        })
    }

    fn adopt(&self, id: String, sandbox: LiveSandbox) -> BookFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let merge = json!({"type": "merge", "value": record(&id, &sandbox, inner.me())});
            match inner.update(&records_scope(&inner.provider), &id, vec![merge]).await {
                Ok((None, _)) => {
                    if let Err(e) = inner.change_counter(vec![inc(LIVE, 1), inc(GENERATION, 1)]).await {
                        tracing::warn!(plugin = %inner.provider, sandbox = %id, "could not count a sandbox learnt upstream ({e}); a list counts it");
                    }
                }
                Ok((Some(_), _)) => {}
                Err(e) => {
                    tracing::warn!(plugin = %inner.provider, sandbox = %id, "could not record a sandbox learnt upstream ({e}); a list counts it")
                }
            }
        })
    }

    fn release<'a>(&'a self, id: &'a str) -> BookFuture<'a, bool> {
        Box::pin(async move {
            let inner = &self.inner;
            match inner.claim(id).await {
                Ok(Claim::First) => {
                    if let Err(e) = inner.change_counter(vec![inc(LIVE, -1), inc(GENERATION, 1)]).await {
                        tracing::warn!(plugin = %inner.provider, sandbox = id, "the stopped sandbox's slot could not be released in iii state ({e}); a list repairs the count");
                    }
                    true
                }
                Ok(Claim::NotFirst) => false,
                Err(e) => {
                    tracing::warn!(plugin = %inner.provider, sandbox = id, "could not release the stopped sandbox's slot in iii state ({e}); it stays counted until a list");
                    false
                }
            }
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BookFuture<'a, Option<LiveSandbox>> {
        Box::pin(async move {
            let v = self.inner.state.trigger("state::get", json!({"scope": records_scope(&self.inner.provider), "key": id})).await.ok()?;
            live_of(&v).map(|(_, s)| s)
        })
    }

    fn known(&self) -> BookFuture<'_, HashMap<String, LiveSandbox>> {
        Box::pin(async move { self.inner.records().await.unwrap_or_default() })
    }

    fn begin_list(&self) -> BookFuture<'_, Ticket> {
        Box::pin(async move { Ticket::Shared { generation: self.inner.counter().await.ok().map(|c| c.generation) } })
    }

    fn reconcile(
        &self,
        upstream: Vec<(String, LiveSandbox)>,
        ticket: Ticket,
    ) -> BookFuture<'_, Result<Vec<(String, LiveSandbox)>, CallError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let Ticket::Shared { generation: started } = ticket else {
                return Err(CallError::new(Code::PluginTrapped, "the shared slot book was handed another book's list ticket.".to_string()));
            };
            let what = "the list's sandboxes are not counted";
            let records = inner.records().await.map_err(|e| inner.refusal(&e, what))?;
            let counter = inner.counter().await.map_err(|e| inner.refusal(&e, what))?;
            let listed: HashMap<String, LiveSandbox> = upstream.into_iter().collect();
            let alive = inner.alive_workers().await;
            if started == Some(counter.generation) {
                if let Some(lock) = inner.lock(alive.as_ref()).await {
                    // Another host may have repaired between the read and the lock.
                    let still = inner.counter().await.is_ok_and(|c| c.generation == counter.generation);
                    let reaped = if still { Some(inner.repair(&counter, records, &listed, alive.as_ref()).await) } else { None };
                    lock.release().await;
                    if let Some(reaped) = reaped {
                        return Ok(reaped);
                    }
                }
            }
            // Calls changed the book while the list ran: only a short count is raised.
            let short = listed.len() as i64 - counter.live.max(0) - counter.pending_total();
            if short > 0 {
                if let Err(e) = inner.change_counter(vec![inc(LIVE, short)]).await {
                    tracing::warn!(plugin = %inner.provider, "could not raise the shared slot count to the upstream's ({e})");
                }
            }
            Ok(Vec::new())
        })
    }

    fn in_flight(&self) -> BookFuture<'_, Result<usize, CallError>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.counter().await.map(|c| c.taken()).map_err(|e| inner.refusal(&e, "the count is unknown"))
        })
    }
}

/// An in-process stand-in for the engine's `state::*` functions (and
/// `engine::workers::list`), with their shapes and the atomic ops the shared book uses:
/// for unit tests and the mock engine of the integration tests.
#[derive(Default)]
pub struct MemoryState {
    values: Mutex<BTreeMap<(String, String), Value>>,
    /// What `engine::workers::list` names; `None`: it is "function not found".
    workers: Mutex<Option<Vec<String>>>,
    /// Set: every call fails as with the engine away.
    down: std::sync::atomic::AtomicBool,
    name: String,
}

impl MemoryState {
    pub fn new(worker: &str) -> MemoryState {
        MemoryState { name: worker.to_string(), ..Default::default() }
    }

    /// The same values seen by another worker (a second host on one engine).
    pub fn as_worker(self: &Arc<Self>, worker: &str) -> Arc<dyn EngineState> {
        Arc::new(Named { state: self.clone(), name: worker.to_string() })
    }

    pub fn set_workers(&self, names: Option<Vec<String>>) {
        *self.workers.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answers one call as the engine would: the result, or (code, message).
    pub fn answer(&self, function: &str, payload: &Value) -> Result<Value, (String, String)> {
        let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let key = (text("scope"), text("key"));
        match function {
            "state::get" => Ok(values.get(&key).cloned().unwrap_or(Value::Null)),
            "state::set" => {
                let new = payload.get("value").cloned().unwrap_or(Value::Null);
                let old = values.insert(key, new.clone());
                Ok(json!({"old_value": old, "new_value": new}))
            }
            "state::delete" => Ok(values.remove(&key).unwrap_or(Value::Null)),
            "state::list" => Ok(Value::Array(values.iter().filter(|((s, _), _)| *s == key.0).map(|(_, v)| v.clone()).collect())),
            "state::update" => {
                let old = values.get(&key).cloned();
                let mut map = match &old {
                    Some(Value::Object(m)) => m.clone(),
                    _ => Map::new(),
                };
                let ops = payload.get("ops").and_then(Value::as_array).cloned().unwrap_or_default();
                for op in &ops {
                    apply(&mut map, op).map_err(|m| ("UPDATE_ERROR".to_string(), m))?;
                }
                let new = Value::Object(map);
                values.insert(key, new.clone());
                Ok(json!({"old_value": old, "new_value": new}))
            }
            "engine::workers::list" => match &*self.workers.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(names) => Ok(json!({"workers": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()})),
                None => Err(("function_not_found".into(), format!("Function {function} not found in namespace default."))),
            },
            _ => Err(("function_not_found".into(), format!("Function {function} not found in namespace default."))),
        }
    }
}

/// One op of `state::update` on a flat object (the engine's `update_ops.rs` semantics
/// for the ops used here: a missing counter starts at `by`).
fn apply(map: &mut Map<String, Value>, op: &Value) -> Result<(), String> {
    let path = op.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
    let by = op.get("by").and_then(Value::as_i64).unwrap_or(0);
    match op.get("type").and_then(Value::as_str) {
        Some(kind @ ("increment" | "decrement")) => {
            let by = if kind == "increment" { by } else { -by };
            let now = map.get(&path).map(|v| v.as_i64().ok_or(format!("Expected number at path '{path}'"))).transpose()?.unwrap_or(0);
            map.insert(path, json!(now + by));
        }
        Some("set") => {
            map.insert(path, op.get("value").cloned().unwrap_or(Value::Null));
        }
        Some("remove") => {
            map.remove(&path);
        }
        Some("merge") => {
            for (k, v) in op.get("value").and_then(Value::as_object).into_iter().flatten() {
                map.insert(k.clone(), v.clone());
            }
        }
        other => return Err(format!("unsupported op {other:?}")),
    }
    Ok(())
}

struct Named {
    state: Arc<MemoryState>,
    name: String,
}

impl EngineState for Named {
    fn trigger<'a>(&'a self, function: &'a str, payload: Value) -> BookFuture<'a, Result<Value, StateError>> {
        self.state.trigger(function, payload)
    }
    fn worker_name(&self) -> &str {
        &self.name
    }
}

impl EngineState for MemoryState {
    fn trigger<'a>(&'a self, function: &'a str, payload: Value) -> BookFuture<'a, Result<Value, StateError>> {
        let result = if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StateError::NotConnected)
        } else {
            self.answer(function, &payload).map_err(|(code, message)| StateError::Refused { function: function.to_string(), code, message })
        };
        Box::pin(async move { result })
    }
    fn worker_name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sbx() -> LiveSandbox {
        LiveSandbox { image: "base".into(), started_at: None, name: None }
    }

    fn two_hosts() -> (Arc<MemoryState>, SharedBook, SharedBook) {
        let state = Arc::new(MemoryState::new("a"));
        state.set_workers(Some(vec!["a".into(), "b".into()]));
        let a = SharedBook::new(state.as_worker("a"), "p");
        let b = SharedBook::new(state.as_worker("b"), "p");
        (state, a, b)
    }

    #[tokio::test]
    async fn two_hosts_share_one_cap_and_a_failed_create_gives_its_slot_back() {
        let (_, a, b) = two_hosts();
        let one = a.reserve("p", 2).await.unwrap();
        let two = b.reserve("p", 2).await.unwrap();
        let refused = a.reserve("p", 2).await.unwrap_err();
        assert_eq!(refused.code, Code::CapReached);
        assert!(refused.message().contains("(2 in flight)"), "{refused}");
        one.commit("s1".into(), sbx()).await;
        drop(two);
        // The give-back runs on the runtime.
        tokio::task::yield_now().await;
        assert_eq!(b.in_flight().await.unwrap(), 1);
        assert!(b.reserve_many("p", 2, 2).await.is_err(), "two do not fit beside s1");
        assert!(b.reserve("p", 2).await.is_ok());
    }

    #[tokio::test]
    async fn a_stop_on_either_host_releases_the_slot_once() {
        let (_, a, b) = two_hosts();
        a.reserve("p", 5).await.unwrap().commit("s1".into(), sbx()).await;
        assert_eq!(b.get("s1").await.map(|s| s.image), Some("base".to_string()), "the other host knows it");
        assert!(b.release("s1").await);
        assert!(!a.release("s1").await);
        assert!(!a.release("never-created").await);
        assert_eq!(a.in_flight().await.unwrap(), 0);
        assert!(a.get("never-created").await.is_none(), "an unknown id's stop leaves no record");
    }

    #[tokio::test]
    async fn the_engine_away_refuses_a_create_with_s502() {
        let (state, a, _) = two_hosts();
        state.set_down(true);
        let e = a.reserve("p", 5).await.unwrap_err();
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.message().contains("not connected") && e.message().contains("nothing was sent upstream"), "{e}");
    }

    #[tokio::test]
    async fn a_quiet_list_repairs_drift_negative_counts_and_a_gone_hosts_pending_slots() {
        let (state, a, b) = two_hosts();
        // b dies with a create pending whose sandbox the upstream did start ("orphan").
        std::mem::forget(b.reserve("p", 5).await.unwrap());
        a.reserve("p", 5).await.unwrap().commit("s1".into(), sbx()).await;
        // And the count went negative somewhere (an extra decrement).
        a.inner.change_counter(vec![inc(LIVE, -3)]).await.unwrap();
        state.set_workers(Some(vec!["a".into()]));
        let ticket = a.begin_list().await;
        let reaped = a.reconcile(vec![("s1".into(), sbx()), ("orphan".into(), sbx())], ticket).await.unwrap();
        assert!(reaped.is_empty());
        assert_eq!(a.in_flight().await.unwrap(), 2, "exactly the upstream's two");
        assert!(a.get("orphan").await.is_some(), "the orphan is recorded, so its stop releases it");
        assert!(a.release("orphan").await);
        // A sandbox gone upstream is reaped, and its later stop releases nothing more.
        let reaped = a.reconcile(vec![], a.begin_list().await).await.unwrap();
        assert_eq!(reaped.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), vec!["s1"]);
        assert!(!a.release("s1").await);
        assert_eq!(a.in_flight().await.unwrap(), 0);
    }

    /// Hosts on another engine sharing the same Redis are not listed by this engine:
    /// their heartbeat keeps their pending slots.
    #[tokio::test]
    async fn a_host_on_another_engine_keeps_its_pending_slots_while_its_heartbeat_is_fresh() {
        let (state, a, b) = two_hosts();
        heartbeat(&*b.inner.state).await.unwrap();
        let pending = b.reserve("p", 5).await.unwrap();
        state.set_workers(Some(vec!["a".into()]));
        a.reconcile(vec![], a.begin_list().await).await.unwrap();
        assert_eq!(a.in_flight().await.unwrap(), 1, "b's create in flight still holds its slot");
        pending.commit("s1".into(), sbx()).await;
        assert_eq!(a.in_flight().await.unwrap(), 1);
    }

    /// A host whose link dropped for a moment was taken for gone: its create in flight
    /// was dropped from `pending:`. When it commits, the sandbox is counted and the field
    /// is back at zero, not below it, so its next reservation counts.
    #[tokio::test]
    async fn a_host_taken_for_gone_puts_its_pending_field_back() {
        let (state, a, b) = two_hosts();
        a.inner.alive_workers().await;
        let pending = b.reserve("p", 2).await.unwrap();
        state.set_workers(Some(vec!["a".into()]));
        a.reconcile(vec![], a.begin_list().await).await.unwrap();
        assert_eq!(a.in_flight().await.unwrap(), 0, "b looked gone");
        pending.commit("s1".into(), sbx()).await;
        assert_eq!(a.inner.counter().await.unwrap().pending.get("b"), Some(&0));
        assert_eq!(a.in_flight().await.unwrap(), 1, "its sandbox is counted");
        let _next = b.reserve("p", 2).await.unwrap();
        assert!(a.reserve("p", 2).await.is_err(), "b's next create holds the second slot");
    }

    #[tokio::test]
    async fn a_busy_list_only_raises_a_short_count() {
        let (_, a, _) = two_hosts();
        a.reserve("p", 5).await.unwrap().commit("s1".into(), sbx()).await;
        let ticket = a.begin_list().await;
        // A create commits while the list is upstream; the list did not see it.
        a.reserve("p", 5).await.unwrap().commit("s2".into(), sbx()).await;
        a.reconcile(vec![("s1".into(), sbx())], ticket).await.unwrap();
        assert_eq!(a.in_flight().await.unwrap(), 2, "s2 is not lost");
        let ticket = a.begin_list().await;
        a.reserve("p", 5).await.unwrap().commit("s3".into(), sbx()).await;
        let upstream = ["s1", "s2", "s3", "x", "y"].map(|id| (id.to_string(), sbx())).to_vec();
        a.reconcile(upstream, ticket).await.unwrap();
        assert_eq!(a.in_flight().await.unwrap(), 5, "raised to what the upstream runs");
    }

    #[tokio::test]
    async fn a_repair_lock_left_by_a_gone_host_is_freed() {
        let (state, a, b) = two_hosts();
        a.reserve("p", 5).await.unwrap().commit("s1".into(), sbx()).await;
        // b took the lock and died.
        let held = b.inner.lock(None).await.unwrap();
        std::mem::forget(held);
        state.set_workers(Some(vec!["a".into()]));
        a.inner.change_counter(vec![inc(LIVE, 4)]).await.unwrap();
        let first = a.begin_list().await;
        a.reconcile(vec![("s1".into(), sbx())], first).await.unwrap();
        assert_eq!(a.in_flight().await.unwrap(), 5, "locked out: nothing is lowered");
        a.reconcile(vec![("s1".into(), sbx())], a.begin_list().await).await.unwrap();
        assert_eq!(a.in_flight().await.unwrap(), 1, "the freed lock lets the next list repair");
    }
}
