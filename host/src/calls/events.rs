//! Lifecycle events: every create, pause, resume and stop the host performs, and every
//! sandbox a list finds gone upstream ("reaped"), as one typed value on a broadcast
//! channel. Front ends subscribe (the iii bridge publishes them on `sandbox.lifecycle`)
//! instead of polling `list`. Nobody listening costs nothing; a slow listener only
//! misses events (it is told how many), it never slows a call.

use chrono::SecondsFormat;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events kept for a listener that falls behind.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Paused,
    Resumed,
    Stopped,
    /// Known to the host, absent from the upstream's list.
    Reaped,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Stopped => "stopped",
            EventKind::Reaped => "reaped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub event: EventKind,
    pub provider: String,
    pub sandbox_id: String,
    pub image: String,
    /// RFC 3339, when the host saw it happen.
    pub at: String,
    /// Which host saw it (`hostname:pid`).
    pub host: String,
}

impl LifecycleEvent {
    /// The `data` of the published message.
    pub fn to_json(&self) -> Value {
        json!({
            "event": self.event.as_str(),
            "provider": self.provider,
            "sandbox_id": self.sandbox_id,
            "image": self.image,
            "at": self.at,
            "host": self.host,
        })
    }
}

/// The host's event channel.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<LifecycleEvent>,
    host: String,
}

impl Default for Events {
    fn default() -> Self {
        Events::new(default_host_name())
    }
}

impl Events {
    pub fn new(host: String) -> Self {
        Events { tx: broadcast::channel(BACKLOG).0, host }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.tx.subscribe()
    }

    pub fn emit(&self, event: EventKind, provider: &str, sandbox_id: &str, image: &str) {
        let at = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let e = LifecycleEvent {
            event,
            provider: provider.to_string(),
            sandbox_id: sandbox_id.to_string(),
            image: image.to_string(),
            at,
            host: self.host.clone(),
        };
        // No receiver is fine: nobody is listening.
        let _ = self.tx.send(e);
    }
}

/// `hostname:pid`, as iii-sdk names a worker by default.
pub fn default_host_name() -> String {
    format!("{}:{}", machine_name(), std::process::id())
}

/// This machine's host name (`localhost` when it has none): stable across restarts.
pub fn machine_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
        let name = if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() };
        if name.is_empty() {
            "localhost".to_string()
        } else {
            name
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_gets_each_event_with_provider_host_and_time() {
        let events = Events::new("h:1".into());
        let mut rx = events.subscribe();
        events.emit(EventKind::Created, "e2b", "sbx1", "base");
        events.emit(EventKind::Reaped, "e2b", "sbx1", "base");
        let first = rx.try_recv().unwrap();
        assert_eq!((first.event, first.provider.as_str(), first.host.as_str()), (EventKind::Created, "e2b", "h:1"));
        assert!(crate::calls::answer::rfc3339(&first.at).is_some());
        assert_eq!(rx.try_recv().unwrap().to_json()["event"], "reaped");
    }

    #[test]
    fn emitting_with_nobody_listening_is_fine() {
        Events::default().emit(EventKind::Stopped, "p", "s", "");
    }
}
