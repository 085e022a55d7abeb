//! The live set of plugins: name → `Arc<LoadedPlugin>`, swapped atomically. A call
//! holds its own `Arc`, so replacing a plugin lets in-flight calls finish on the old
//! version while new calls get the new one. Slot books are keyed by name and outlive
//! any one version, so concurrency accounting survives a swap.

use super::LoadedPlugin;
use crate::policy::concurrency::SlotBook;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Default)]
pub struct Registry {
    plugins: RwLock<BTreeMap<String, Arc<LoadedPlugin>>>,
    books: Mutex<HashMap<String, Arc<SlotBook>>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<LoadedPlugin>> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Installs `plugin`, returning the version it replaced. With unchanged limits the
    /// new version takes over the old one's admission (calls in flight, rate tokens).
    pub fn insert(&self, mut plugin: LoadedPlugin) -> Option<Arc<LoadedPlugin>> {
        let name = plugin.name.to_string();
        let mut plugins = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = plugins.get(&name) {
            let (a, b) = (&old.policy.limits, &plugin.policy.limits);
            if (a.max_calls_in_flight, a.rate_per_sec, a.burst) == (b.max_calls_in_flight, b.rate_per_sec, b.burst) {
                plugin.admission = old.admission.clone();
            }
        }
        plugins.insert(name, Arc::new(plugin))
    }

    pub fn remove(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    /// The slot book of provider `name` (created on first use).
    pub fn book(&self, name: &str) -> Arc<SlotBook> {
        self.books.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_default().clone()
    }
}
