//! Which function ids this host serves, and the iii-sdk handles that serve them.
//!
//! iii-sdk 0.25 keeps its own map of registered functions and replays it on every
//! reconnect; only then does it flush the frames queued while it was disconnected,
//! dropping the queued *register* frames the replay already covered but keeping every
//! *unregister* frame (`src/iii.rs:3243-3285`, `drain_pre_connect_duplicates` at
//! `:3551-3573`). An unregister queued while disconnected therefore reaches the engine
//! after the replay, and removes an id that was registered again in the meantime.
//!
//! So an id removed while the link is down is not unregistered at once: it waits here as
//! *retiring* (still in the SDK's map, so the replay re-sends it), is simply kept if it
//! is served again before the engine returns, and is unregistered once connected
//! otherwise. What can still slip through (an unregister sent just as the link drops) is
//! caught by the check after each reconnect (`reattach.rs`), which re-registers through
//! [`Registrations::re_register`].

use iii_sdk::runtime::{FunctionRef, IIIConnectionState};
use iii_sdk::{IIIClient, RegisterFunction};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Makes one function's registration. The SDK consumes a `RegisterFunction`, and a
/// repair registers the same function again, so the recipe is kept, not the value.
pub(super) type Recipe = Arc<dyn Fn() -> RegisterFunction + Send + Sync>;

struct Served {
    /// A provider name, "" for the router, `http:<function>` for an HTTP adapter.
    owner: String,
    recipe: Recipe,
    handle: FunctionRef,
}

#[derive(Default)]
pub(super) struct Registrations {
    served: BTreeMap<String, Served>,
    /// Removed while disconnected; unregistered by [`Registrations::send_deferred`].
    retiring: BTreeMap<String, FunctionRef>,
}

pub(super) fn is_connected(client: &IIIClient) -> bool {
    client.get_connection_state() == IIIConnectionState::Connected
}

impl Registrations {
    /// Serves `id` (a no-op when it is served already). An id still retiring is kept as
    /// it is: the SDK holds it, and registering it again would panic in the SDK
    /// ("function id already registered", `src/iii.rs:2402-2405`).
    pub fn serve(&mut self, client: &IIIClient, id: &str, owner: &str, recipe: Recipe) {
        if self.served.contains_key(id) {
            return;
        }
        let handle = match self.retiring.remove(id) {
            Some(handle) => handle,
            None => client.register_function(id, recipe()),
        };
        self.served.insert(id.to_string(), Served { owner: owner.to_string(), recipe, handle });
    }

    /// Stops serving `id`: unregistered now when connected, after the reconnect otherwise.
    pub fn retire(&mut self, client: &IIIClient, id: &str) {
        let Some(served) = self.served.remove(id) else { return };
        if is_connected(client) {
            served.handle.unregister();
        } else {
            self.retiring.insert(id.to_string(), served.handle);
        }
    }

    /// Sends the unregisters deferred while disconnected; returns the ids.
    pub fn send_deferred(&mut self) -> Vec<String> {
        let retiring = std::mem::take(&mut self.retiring);
        for handle in retiring.values() {
            handle.unregister();
        }
        retiring.into_keys().collect()
    }

    /// Registers `id` afresh, for an engine that lost it. The SDK's map still holds it,
    /// so its handle unregisters first (dropping it from the map, queueing an
    /// unregister frame the register frame then follows in order). False when `id` is
    /// not served.
    pub fn re_register(&mut self, client: &IIIClient, id: &str) -> bool {
        let Some(served) = self.served.get_mut(id) else { return false };
        served.handle.unregister();
        served.handle = client.register_function(id, (served.recipe)());
        true
    }

    pub fn is_served(&self, id: &str) -> bool {
        self.served.contains_key(id)
    }

    /// Every id served, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.served.keys().cloned().collect()
    }

    /// The ids served for `owner`, sorted.
    pub fn ids_of(&self, owner: &str) -> Vec<String> {
        self.served.iter().filter(|(_, s)| s.owner == owner).map(|(id, _)| id.clone()).collect()
    }

    /// Empties the book, returning every handle the SDK still holds (shutdown).
    pub fn take_all(&mut self) -> Vec<FunctionRef> {
        let served = std::mem::take(&mut self.served).into_values().map(|s| s.handle);
        served.chain(std::mem::take(&mut self.retiring).into_values()).collect()
    }
}
