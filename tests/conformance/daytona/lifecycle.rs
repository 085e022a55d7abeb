//! Daytona's lifecycle leaves: `get` (state, labels, the TTL as `ends_at`), `set_timeout`
//! (auto-stop interval and TTL in whole minutes), `pause`/`resume` (Daytona's pause on
//! VM classes, stop with the paused label elsewhere; each transition waited out) and
//! `branch` (forks of VM sandboxes).

use super::{create, sent, sent_under, DaytonaUpstream, P};
use crate::cases::fresh;
use provider_sims::daytona::DaytonaSim;
use provider_sims::Fault;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::Upstream;
use serde_json::json;
use std::sync::atomic::Ordering;

const PAUSED_LABEL: &str = "iii.dev/paused";

fn labels(up: &DaytonaUpstream, id: &str) -> std::collections::BTreeMap<String, String> {
    up.0.with(id, |s| s.labels.clone()).unwrap()
}

#[tokio::test]
async fn get_reports_state_labels_and_the_ttl_and_an_unknown_id_is_s410() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = h.ok(P, Leaf::Create, json!({"image": "daytona-small", "metadata": {"team": "x"}})).await["sandbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await;
    assert_eq!((got["state"].as_str(), got["image"].as_str()), (Some("running"), Some("daytona-small")), "{got}");
    assert_eq!(got["metadata"], sandbox_tests::with_host_tag(json!({"team": "x"})), "labels are the metadata: {got}");
    assert!(got["ends_at"].is_null(), "no TTL yet, and an idle interval gives no end time: {got}");
    assert_eq!(sent(&up, "GET", &format!("/api/sandbox/{id}")).len(), 1);
    // A sandbox Daytona stopped is reported paused: resume brings it back.
    up.0.set_state(&id, "stopped");
    assert_eq!(h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await["state"], "paused");
    let msg = h.err(P, Leaf::Get, json!({"sandbox_id": "no-such-sandbox"}), Code::NotFound).await;
    assert!(msg.contains("not found"), "{msg}");
    h.ok(P, Leaf::Stop, json!({"sandbox_id": id})).await;
    h.err(P, Leaf::Get, json!({"sandbox_id": id}), Code::NotFound).await;
}

#[tokio::test]
async fn set_timeout_sets_the_auto_stop_interval_and_the_ttl_in_whole_minutes() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let before = chrono::Utc::now();
    let set = h.ok(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 601})).await;
    assert_eq!(set["timeout_secs"], 601, "{set}");
    // 601 s is 11 minutes rounded up: the sandbox lives at least as long as asked.
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/autostop/11")).len(), 1);
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/ttl/11")).len(), 1);
    assert_eq!(up.0.with(&id, |s| s.auto_stop_interval), Some(11));
    let got = h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await;
    let ends = chrono::DateTime::parse_from_rfc3339(got["ends_at"].as_str().expect("the TTL is the end")).unwrap();
    let minutes = (ends.with_timezone(&chrono::Utc) - before).num_seconds();
    assert!((655..=665).contains(&minutes), "ends about 11 min from now: {got}");

    // Over limits.max_timeout_secs (default 86 400): S422 and nothing sent.
    up.0.sim.clear_requests();
    let e = h.err(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 86_401}), Code::BadInput).await;
    assert!(e.contains("limits.max_timeout_secs"), "{e}");
    assert!(up.0.sim.requests().is_empty());
    h.ok(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 86_400})).await;
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/ttl/1440")).len(), 1);
    h.err(P, Leaf::SetTimeout, json!({"sandbox_id": "no-such-sandbox", "timeout_secs": 60}), Code::NotFound).await;
}

#[tokio::test]
async fn a_server_without_the_ttl_route_still_gets_the_auto_stop_interval() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    up.0.state.no_ttl_route.store(true, Ordering::Relaxed);
    h.ok(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 120})).await;
    assert_eq!(up.0.with(&id, |s| (s.auto_stop_interval, s.auto_destroy_at)), Some((2, None)));
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/ttl/2")).len(), 1, "tried, answered Express's 404");
    // A real failure of the TTL call is not swallowed.
    up.0.state.no_ttl_route.store(false, Ordering::Relaxed);
    up.0.sim.inject(Fault::new("POST", &format!("/api/sandbox/{id}/ttl/"), 500, r#"{"statusCode":500,"message":"boom"}"#));
    h.err(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 120}), Code::Unavailable).await;
}

#[tokio::test]
async fn pause_stops_a_container_with_the_paused_label_and_resume_starts_it() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    up.0.state.transition_polls.store(2, Ordering::Relaxed);
    let id = h.ok(P, Leaf::Create, json!({"image": "daytona-small", "metadata": {"team": "x"}})).await["sandbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "kept.txt", "content": "state"})).await;
    let paused = json!({"sandbox_id": id, "state": "paused"});
    assert_eq!(h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await, paused);
    assert_eq!(up.0.state_of(&id).as_deref(), Some("stopped"), "the plugin waited through `stopping`");
    assert_eq!(labels(&up, &id).get(PAUSED_LABEL).map(String::as_str), Some("true"));
    assert_eq!(labels(&up, &id).get("team").map(String::as_str), Some("x"), "the caller's labels are kept");
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/stop")).len(), 1);
    assert!(sent(&up, "POST", &format!("/api/sandbox/{id}/pause")).is_empty(), "containers cannot pause natively");
    // Pausing a paused sandbox is success, and sends no stop.
    assert_eq!(h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await, paused);
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/stop")).len(), 1);
    let got = h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await;
    assert_eq!(
        (got["state"].as_str(), got["metadata"].clone()),
        (Some("paused"), sandbox_tests::with_host_tag(json!({"team": "x"}))),
        "{got}"
    );
    // The slot stays counted: the list reports it, paused.
    let listed = h.ok(P, Leaf::List, json!({})).await;
    assert_eq!((listed["in_flight"].as_u64(), listed["reconciled"].as_bool()), (Some(1), Some(true)), "{listed}");
    assert_eq!(listed["sandboxes"][0]["state"], "paused", "{listed}");
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::BadInput).await;
    assert!(msg.contains("resume it"), "{msg}");

    let running = json!({"sandbox_id": id, "state": "running"});
    assert_eq!(h.ok(P, Leaf::Resume, json!({"sandbox_id": id, "timeout_secs": 900})).await, running);
    assert_eq!(up.0.state_of(&id).as_deref(), Some("started"), "the plugin waited through `starting`");
    assert!(!labels(&up, &id).contains_key(PAUSED_LABEL), "the label went with the pause");
    assert_eq!(up.0.with(&id, |s| s.auto_stop_interval), Some(15), "resume's lifetime went upstream");
    assert_eq!(h.ok(P, Leaf::Resume, json!({"sandbox_id": id})).await, running, "resuming a running sandbox is success");
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/start")).len(), 1);
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "cat", "args": ["kept.txt"]})).await;
    assert_eq!(out["stdout"], "state", "the files survived the pause: {out}");
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 1);
}

#[tokio::test]
async fn a_sandbox_auto_stopped_when_idle_frees_its_slot_until_it_is_paused_on_purpose() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    up.0.set_state(&id, "stopped");
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 0, "Daytona's idle stop frees the slot");
    // Pausing it now marks it, without a stop (it is stopped already), and it counts again.
    h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await;
    assert!(sent(&up, "POST", &format!("/api/sandbox/{id}/stop")).is_empty());
    assert!(labels(&up, &id).contains_key(PAUSED_LABEL));
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 1);
    h.err(P, Leaf::Pause, json!({"sandbox_id": "no-such-sandbox"}), Code::NotFound).await;
    h.err(P, Leaf::Resume, json!({"sandbox_id": "no-such-sandbox"}), Code::NotFound).await;
}

/// A fresh host over a simulator whose sandboxes are `linux-vm` (they pause and fork).
async fn vm_host() -> (DaytonaUpstream, sandbox_tests::TestHost) {
    let up = DaytonaUpstream(DaytonaSim::start(0, sandbox_tests::upstream::SECRET).await.unwrap());
    up.0.state.vm_sandboxes.store(true, Ordering::Relaxed);
    let policy = format!("max_concurrent_sandboxes = 5\n{}", up.0.policy_toml());
    let h = sandbox_tests::TestHost::start(
        vec![sandbox_tests::PluginSetup::new(P, policy)],
        &[("DAYTONA_API_KEY", sandbox_tests::upstream::SECRET)],
    )
    .await;
    (up, h)
}

#[tokio::test]
async fn a_vm_pauses_natively_keeping_its_processes() {
    let (up, h) = vm_host().await;
    let id = create(&h).await;
    h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await;
    assert_eq!(up.0.state_of(&id).as_deref(), Some("paused"));
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/pause")).len(), 1);
    assert!(sent(&up, "POST", &format!("/api/sandbox/{id}/stop")).is_empty());
    assert!(sent_under(&up, "PUT", "/api/sandbox/").is_empty(), "a native pause needs no label");
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 1, "paused by Daytona counts too");
    h.ok(P, Leaf::Resume, json!({"sandbox_id": id})).await;
    assert_eq!(up.0.state_of(&id).as_deref(), Some("started"));
    h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"})).await;
}

#[tokio::test]
async fn branch_forks_a_vm_one_fork_at_a_time_and_each_fork_runs() {
    let (up, h) = vm_host().await;
    let id = create(&h).await;
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "origin.txt", "content": "from the source"})).await;
    let v = h.ok(P, Leaf::Branch, json!({"sandbox_id": id, "count": 2})).await;
    let ids: Vec<String> = v["sandbox_ids"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert_eq!(sent(&up, "POST", &format!("/api/sandbox/{id}/fork")).len(), 2);
    for fork in &ids {
        assert_eq!(up.0.state_of(fork).as_deref(), Some("started"), "the plugin waited for {fork} to start");
        let read = h.ok(P, Leaf::FsRead, json!({"sandbox_id": fork, "path": "origin.txt"})).await;
        assert_eq!(read["body"], "from the source");
    }
    assert_eq!(h.host.registry.book(P).in_flight(), 3, "each fork holds a slot");
}

#[tokio::test]
async fn branch_of_a_container_is_s422_and_a_failed_fork_is_undone() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let msg = h.err(P, Leaf::Branch, json!({"sandbox_id": id, "count": 1}), Code::BadInput).await;
    assert!(msg.contains("Forking is not supported"), "{msg}");
    assert_eq!((up.live(), h.host.registry.book(P).in_flight()), (1, 1));

    let (up, h) = vm_host().await;
    let id = create(&h).await;
    // The second fork fails upstream: the first is deleted, and no slot is kept for either.
    let fork = format!("/api/sandbox/{id}/fork");
    up.0.sim.inject(Fault::late_answer("POST", &fork, std::time::Duration::ZERO));
    up.0.sim.inject(Fault::new("POST", &fork, 500, r#"{"statusCode":500,"message":"runner unavailable"}"#));
    let msg = h.err(P, Leaf::Branch, json!({"sandbox_id": id, "count": 2}), Code::Unavailable).await;
    assert!(msg.contains("runner unavailable"), "{msg}");
    assert_eq!((up.live(), h.host.registry.book(P).in_flight()), (1, 1), "only the source runs");
}

/// Spec table D7: sandboxes are created to be deleted when Daytona stops them for
/// idleness (`autoDeleteInterval: 0`), so abandoned ones do not hold disk quota; pausing
/// by stop turns auto-delete off first, and resume turns it back on.
#[tokio::test]
async fn an_idle_stopped_sandbox_is_deleted_but_a_paused_one_is_kept() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let auto_delete = |up: &DaytonaUpstream| up.0.with(&id, |s| s.auto_delete_interval).unwrap();
    assert_eq!(auto_delete(&up), 0);
    h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await;
    assert_eq!((up.0.state_of(&id).as_deref(), auto_delete(&up)), (Some("stopped"), -1), "paused, kept");
    h.ok(P, Leaf::Resume, json!({"sandbox_id": id})).await;
    assert_eq!((up.0.state_of(&id).as_deref(), auto_delete(&up)), (Some("started"), 0), "ephemeral again");
    up.0.idle_stop(&id);
    assert_eq!(up.0.state_of(&id).as_deref(), Some("destroyed"), "Daytona deletes it when it stops it for idleness");
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 0);
}
