//! The world 0.2 leaves on E2B: what each sends upstream (route and body, per
//! `spec/openapi.yml`) and what the caller gets back, paused sandboxes included.

use super::E2bUpstream;
use crate::cases::fresh;
use chrono::{DateTime, Utc};
use provider_sims::Recorded;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::Upstream;
use sandbox_tests::{is_rfc3339, TestHost};
use serde_json::{json, Value};

async fn create(h: &TestHost, payload: Value) -> String {
    h.ok("e2b", Leaf::Create, payload).await["sandbox_id"].as_str().unwrap().to_string()
}

fn time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(is_rfc3339(s), "{s}");
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Seconds from now until `v` (an RFC 3339 time).
fn secs_from_now(v: &Value) -> i64 {
    (time(v) - Utc::now()).num_seconds()
}

fn sent(up: &E2bUpstream, method: &str, path: &str) -> Vec<Recorded> {
    up.0.api.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
}

#[tokio::test]
async fn get_reports_state_times_and_metadata_and_an_unknown_id_is_s410() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h, json!({"image": "base", "idle_timeout_secs": 120, "name": "w1", "metadata": {"team": "x"}})).await;
    let got = h.ok("e2b", Leaf::Get, json!({"sandbox_id": id})).await;
    assert_eq!(
        (got["sandbox_id"].as_str(), got["image"].as_str(), got["state"].as_str()),
        (Some(id.as_str()), Some("base"), Some("running"))
    );
    assert_eq!((time(&got["ends_at"]) - time(&got["started_at"])).num_seconds(), 120, "endAt is the create's lifetime: {got}");
    assert_eq!(
        got["metadata"],
        sandbox_tests::with_host_tag(json!({"team": "x", "name": "w1"})),
        "the name is kept as metadata upstream, beside the host's creation tag"
    );
    // One detail read by create (E2B's create answer has no times), one by get.
    assert_eq!(sent(&up, "GET", &format!("/sandboxes/{id}")).len(), 2);
    let e = h.err("e2b", Leaf::Get, json!({"sandbox_id": "i-no-such-sandbox"}), Code::NotFound).await;
    assert!(e.contains("doesn't exist"), "{e}");
}

#[tokio::test]
async fn set_timeout_moves_ends_at_and_beyond_the_host_limit_is_s422_with_nothing_sent() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h, json!({"image": "base", "idle_timeout_secs": 60})).await;
    let before = h.ok("e2b", Leaf::Get, json!({"sandbox_id": id})).await;
    assert!((55..=60).contains(&secs_from_now(&before["ends_at"])), "{before}");
    let set = h.ok("e2b", Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 3600})).await;
    assert_eq!(set["timeout_secs"], 3600, "{set}");
    let req = sent(&up, "POST", &format!("/sandboxes/{id}/timeout"));
    assert_eq!(req.iter().map(Recorded::json).collect::<Vec<_>>(), vec![json!({"timeout": 3600})]);
    let after = h.ok("e2b", Leaf::Get, json!({"sandbox_id": id})).await;
    assert!((3590..=3600).contains(&secs_from_now(&after["ends_at"])), "the upstream re-anchored endAt at now + 3600: {after}");
    up.clear();
    let e = h.err("e2b", Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 86_401}), Code::BadInput).await;
    assert!(e.contains("limits.max_timeout_secs"), "{e}");
    assert!(up.requests().is_empty(), "an out-of-bounds lifetime is never sent: {:?}", up.requests());
}

#[tokio::test]
async fn a_paused_sandbox_keeps_its_slot_and_state_and_resume_brings_it_back() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h, json!({"image": "base"})).await;
    h.ok("e2b", Leaf::FsWrite, json!({"sandbox_id": id, "path": "kept.txt", "content": "state\n"})).await;
    let paused = json!({"sandbox_id": id, "state": "paused"});
    assert_eq!(h.ok("e2b", Leaf::Pause, json!({"sandbox_id": id})).await, paused);
    // The second answers 409 upstream; the plugin sees the sandbox paused and succeeds.
    assert_eq!(h.ok("e2b", Leaf::Pause, json!({"sandbox_id": id})).await, paused);
    assert_eq!(sent(&up, "POST", &format!("/sandboxes/{id}/pause")).len(), 2);
    assert_eq!(h.ok("e2b", Leaf::Get, json!({"sandbox_id": id})).await["state"], "paused");
    let listed = h.ok("e2b", Leaf::List, json!({})).await;
    assert_eq!((listed["in_flight"].clone(), listed["reconciled"].clone()), (json!(1), json!(true)), "{listed}");
    assert_eq!(listed["sandboxes"][0]["state"], "paused", "list asks for running and paused: {listed}");
    let list_query = sent(&up, "GET", "/v2/sandboxes").pop().unwrap().query_param("state");
    assert_eq!(list_query.as_deref(), Some("running,paused"));
    let e = h.err("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::BadInput).await;
    assert!(e.contains("paused") && e.contains("resume"), "{e}");
    let e = h.err("e2b", Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 60}), Code::BadInput).await;
    assert!(e.contains("paused"), "E2B's 404 for a paused sandbox is not S410: {e}");
    let running = json!({"sandbox_id": id, "state": "running"});
    assert_eq!(h.ok("e2b", Leaf::Resume, json!({"sandbox_id": id, "timeout_secs": 600})).await, running);
    let got = h.ok("e2b", Leaf::Get, json!({"sandbox_id": id})).await;
    assert_eq!(got["state"], "running");
    assert!((590..=600).contains(&secs_from_now(&got["ends_at"])), "resumed for 600 s: {got}");
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "cat", "args": ["kept.txt"]})).await;
    assert_eq!(out["stdout"], "state\n", "the files survived the pause: {out}");
    // Resuming a running sandbox is success (connect answers 200); no timeout → the SDK's 300 s.
    assert_eq!(h.ok("e2b", Leaf::Resume, json!({"sandbox_id": id})).await, running);
    let connects: Vec<Value> = sent(&up, "POST", &format!("/sandboxes/{id}/connect")).iter().map(Recorded::json).collect();
    assert_eq!(connects, vec![json!({"timeout": 600}), json!({"timeout": 300})]);
    assert_eq!(h.ok("e2b", Leaf::List, json!({})).await["in_flight"], 1);
    h.err("e2b", Leaf::Resume, json!({"sandbox_id": "i-no-such-sandbox"}), Code::NotFound).await;
}

#[tokio::test]
async fn branch_forks_live_copies_counts_them_and_keeps_the_ones_that_started() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h, json!({"image": "base"})).await;
    h.ok("e2b", Leaf::FsWrite, json!({"sandbox_id": id, "path": "note.txt", "content": "from the parent\n"})).await;
    let ids: Vec<String> =
        serde_json::from_value(h.ok("e2b", Leaf::Branch, json!({"sandbox_id": id, "count": 2})).await["sandbox_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&id) && ids[0] != ids[1], "{ids:?}");
    let forks: Vec<Value> = sent(&up, "POST", &format!("/sandboxes/{id}/fork")).iter().map(Recorded::json).collect();
    assert_eq!(forks, vec![json!({"timeout": 300, "count": 2})]);
    for sibling in &ids {
        let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": sibling, "cmd": "cat", "args": ["note.txt"]})).await;
        assert_eq!(out["stdout"], "from the parent\n", "a fork has the parent's files: {out}");
    }
    assert_eq!(h.host.registry.book("e2b").in_flight(), 3, "siblings hold slots");
    // One of two forks fails upstream: the one that started is returned and counted.
    up.0.state.fork_errors.lock().unwrap().push_back((500, "Failed to place sandbox".into()));
    let one = h.ok("e2b", Leaf::Branch, json!({"sandbox_id": id, "count": 2})).await;
    assert_eq!(one["sandbox_ids"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(h.host.registry.book("e2b").in_flight(), 4);
    // Every fork failing is the first failure's error, and no slot is kept.
    up.0.state.fork_errors.lock().unwrap().extend([(429, "rate limited".to_string()), (429, "rate limited".to_string())]);
    h.err("e2b", Leaf::Branch, json!({"sandbox_id": id, "count": 2}), Code::RateLimited).await;
    assert_eq!(h.host.registry.book("e2b").in_flight(), 4);
    h.ok("e2b", Leaf::Pause, json!({"sandbox_id": id})).await;
    let e = h.err("e2b", Leaf::Branch, json!({"sandbox_id": id, "count": 1}), Code::BadInput).await;
    assert!(e.contains("resume"), "a paused sandbox must be resumed first: {e}");
    h.err("e2b", Leaf::Branch, json!({"sandbox_id": "i-no-such-sandbox", "count": 1}), Code::NotFound).await;
    assert_eq!(h.host.registry.book("e2b").in_flight(), 4);
}

#[tokio::test]
async fn network_false_creates_a_sandbox_without_internet_access() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = create(&h, json!({"image": "base", "network": false})).await;
    let body = sent(&up, "POST", "/v2/sandboxes")[0].json();
    assert_eq!(body["allow_internet_access"], false, "{body}");
    assert_eq!(up.0.state.sandboxes.lock().unwrap()[&id].allow_internet_access, Some(false));
    up.clear();
    create(&h, json!({"image": "base", "network": true})).await;
    let body = sent(&up, "POST", "/v2/sandboxes")[0].json();
    assert!(body.get("allow_internet_access").is_none(), "network on is E2B's default, not sent: {body}");
}
