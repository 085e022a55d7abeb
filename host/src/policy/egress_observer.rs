//! An observer of what a plugin sends upstream: the method and URL of every request its
//! egress policy let out (allowlist matched, fan-out admitted), whichever way it left —
//! `wasi:http` or the whole-body `upstream` import, which take the same hook.
//!
//! Off by default and then free: one atomic load per request. `sandbox-host conformance`
//! switches it on for the plugin it checks, to print per check the upstream calls it made;
//! nothing else does. It sees no headers and no bodies, so no credential reaches it.
//! It can be set once per loaded plugin (a reloaded plugin starts without one).

use std::sync::{Arc, OnceLock};

/// What the observer is given for each request sent.
pub type Observe = Arc<dyn Fn(&http::Method, &http::Uri) + Send + Sync>;

#[derive(Default)]
pub struct EgressObserver(OnceLock<Observe>);

impl EgressObserver {
    /// Switches the observer on; false when one was set already (it stays).
    pub fn set(&self, observe: Observe) -> bool {
        self.0.set(observe).is_ok()
    }

    pub fn is_on(&self) -> bool {
        self.0.get().is_some()
    }

    /// Called by the egress hook for each request it sends.
    #[inline]
    pub fn observe(&self, method: &http::Method, uri: &http::Uri) {
        if let Some(f) = self.0.get() {
            f(method, uri)
        }
    }
}

impl std::fmt::Debug for EgressObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() { "EgressObserver(on)" } else { "EgressObserver(off)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn off_sees_nothing_and_on_sees_each_request_once_set() {
        let observer = EgressObserver::default();
        let uri: http::Uri = "http://127.0.0.1:9/v2/sandboxes?state=running".parse().unwrap();
        observer.observe(&http::Method::GET, &uri);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        assert!(observer.set(Arc::new(move |m, u| sink.lock().unwrap().push(format!("{m} {}", u.path())))));
        assert!(!observer.set(Arc::new(|_, _| {})), "the first observer stays");
        observer.observe(&http::Method::POST, &uri);
        assert_eq!(*seen.lock().unwrap(), vec!["POST /v2/sandboxes".to_string()]);
    }
}
