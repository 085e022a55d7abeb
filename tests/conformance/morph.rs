//! Morph Cloud's mock upstream (one loopback port, routes under `/api`) and the
//! Morph-specific cases: snapshot-first create, waiting for `ready`, branch order and
//! count, HTTP services, the exec shell script (argv, env, cwd, deadline), exec output
//! streamed from `exec/sse` (and the blocking fallback), get/ttl/pause/resume, and files
//! moved as base64 through exec.

use crate::cases::fresh;
use provider_sims::morph::MorphSim;
use provider_sims::{Fault, Recorded, Sim};
use sandbox_host::{Code, Leaf};
use sandbox_tests::exec_result;
use sandbox_tests::upstream::{Upstream, SECRET};
use serde_json::{json, Value};
use std::time::Duration;

pub struct MorphUpstream(pub MorphSim);

impl Upstream for MorphUpstream {
    const PROVIDER: &'static str = "morph";
    const IMAGE: &'static str = "snapshot_base";
    const KEY_ENV: &'static str = "MORPH_API_KEY";

    async fn start() -> Self {
        MorphUpstream(MorphSim::start(0, SECRET).await.unwrap())
    }

    fn sims(&self) -> Vec<&Sim> {
        vec![&self.0.api]
    }

    fn policy(&self) -> String {
        self.0.policy_toml()
    }

    fn assert_authenticated(req: &Recorded) {
        sandbox_tests::upstream::assert_bearer(req)
    }

    fn needs_credential(_req: &Recorded) -> bool {
        // Everything, exec included, goes through the one API host.
        true
    }

    fn route(leaf: Leaf, id: &str) -> (&'static str, String) {
        match leaf {
            Leaf::Create => ("POST", "/api/instance".into()),
            Leaf::Exec => ("POST", format!("/api/instance/{id}/exec/sse")),
            Leaf::Stop => ("DELETE", format!("/api/instance/{id}")),
            Leaf::List => ("GET", "/api/instance".into()),
            Leaf::Snapshot => ("POST", format!("/api/instance/{id}/snapshot")),
            Leaf::Branch => ("POST", format!("/api/instance/{id}/branch")),
            Leaf::ExposePort => ("POST", format!("/api/instance/{id}/http")),
            // Morph has no file API: files move as base64 through the blocking exec.
            Leaf::FsRead | Leaf::FsWrite => ("POST", format!("/api/instance/{id}/exec")),
            Leaf::Get => ("GET", format!("/api/instance/{id}")),
            Leaf::SetTimeout => ("POST", format!("/api/instance/{id}/ttl")),
            Leaf::Pause => ("POST", format!("/api/instance/{id}/pause")),
            Leaf::Resume => ("POST", format!("/api/instance/{id}/resume")),
        }
    }

    fn live(&self) -> usize {
        self.0.live_count()
    }

    /// In the instance's home directory, which exists: Morph's fs::write creates missing
    /// directories only when asked (`parents`), as the WIT says.
    fn writable_path() -> &'static str {
        "conformance-data.bin"
    }

    async fn create_out_of_band(&self) -> String {
        self.0.create_out_of_band(Self::IMAGE)
    }
}

const P: &str = "morph";

async fn create(h: &sandbox_tests::TestHost) -> String {
    h.ok(P, Leaf::Create, json!({"image": MorphUpstream::IMAGE})).await["sandbox_id"].as_str().unwrap().to_string()
}

fn sent(up: &MorphUpstream, method: &str, path: &str) -> Vec<Recorded> {
    up.0.api.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
}

fn sent_prefix(up: &MorphUpstream, method: &str, prefix: &str) -> Vec<Recorded> {
    up.0.api.requests().into_iter().filter(|r| r.method == method && r.path.starts_with(prefix)).collect()
}

#[tokio::test]
async fn an_empty_image_is_s422_before_any_upstream_call() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let msg = h.err(P, Leaf::Create, json!({"image": ""}), Code::BadInput).await;
    assert!(msg.contains("snapshot-first"), "{msg}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    assert_eq!(h.host.registry.book(P).in_flight(), 0);
}

#[tokio::test]
async fn create_sends_the_documented_query_and_body_and_waits_for_ready() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    up.0.set_boot_delay(Duration::from_millis(600));
    let v = h.ok(P, Leaf::Create, json!({"image": "snapshot_base", "idle_timeout_secs": 120, "metadata": {"team": "x"}})).await;
    let id = v["sandbox_id"].as_str().unwrap();
    assert!(id.starts_with("morphvm_"), "{v}");
    assert_eq!(v["image"], "snapshot_base");
    assert_eq!(v["capabilities"], json!(["snapshot", "branch", "expose_port", "fs", "get", "set_timeout", "pause"]));

    let start = &sent(&up, "POST", "/api/instance")[0];
    assert_eq!(start.query_param("snapshot_id").as_deref(), Some("snapshot_base"));
    let metadata = sandbox_tests::with_host_tag(json!({"team": "x"}));
    assert_eq!(start.json(), json!({"metadata": metadata, "ttl_seconds": 120, "ttl_action": "stop"}));
    // The answer said `pending`: the plugin polled until `ready` before returning.
    let polls = sent(&up, "GET", &format!("/api/instance/{id}"));
    assert!(!polls.is_empty());
    let detail: Value = upstream_view(&up, id);
    assert_eq!(detail["status"], "ready");
    // started_at is the upstream `created` (epoch seconds) as RFC 3339 UTC.
    let created = detail["created"].as_i64().unwrap();
    let expected = chrono::DateTime::from_timestamp(created, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(v["started_at"], expected);
}

/// The simulator's view of one instance (as `GET /api/instance/{id}` would answer).
fn upstream_view(up: &MorphUpstream, id: &str) -> Value {
    let instances = up.0.state.instances.lock().unwrap();
    let i = instances.get(id).expect("instance exists upstream");
    json!({"status": i.status(), "created": i.created})
}

#[tokio::test]
async fn an_unknown_snapshot_is_a_caller_error_and_a_failed_boot_is_cleaned_up() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let msg = h.err(P, Leaf::Create, json!({"image": "snapshot_nope"}), Code::BadInput).await;
    assert!(msg.contains("snapshot_nope"), "{msg}");
    assert_eq!(h.host.registry.book(P).in_flight(), 0);

    // The instance boots into `error`: S502, and the plugin deletes it so it cannot leak.
    up.0.set_boot_delay(Duration::from_secs(5));
    up.0.api.inject(Fault::new("GET", "/api/instance/", 200, r#"{"id":"morphvm_x","created":1,"status":"error"}"#));
    let msg = h.err(P, Leaf::Create, json!({"image": "snapshot_base"}), Code::Unavailable).await;
    assert!(msg.contains("failed to boot"), "{msg}");
    assert_eq!(up.live(), 0);
    assert_eq!(sent(&up, "DELETE", "/api/instance/morphvm_x").len(), 0, "the id deleted is the one created, not the one polled");
    assert_eq!(up.requests().iter().filter(|r| r.method == "DELETE").count(), 1);
}

#[tokio::test]
async fn create_env_is_applied_to_every_exec() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let v = h.ok(P, Leaf::Create, json!({"image": "snapshot_base", "env": {"GREETING": "hi 'there'", "B": "2"}})).await;
    let id = v["sandbox_id"].as_str().unwrap();
    let out = h
        .ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "printf '%s|%s' \"$GREETING\" \"$B\""], "env": {"B": "3"}}))
        .await;
    assert_eq!(out["stdout"], "hi 'there'|3", "exec env overrides create env: {out}");
    // Names that are not shell identifiers are refused before an instance exists.
    up.clear();
    h.err(P, Leaf::Create, json!({"image": "snapshot_base", "env": {"NOT-VALID": "x"}}), Code::BadInput).await;
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn exec_sends_one_quoted_script_and_argv_survives_unchanged() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let tricky = ["two  words", "it's", "\"double\"", "$HOME", "`id`", "*", "a;b", "x\ny", "", "-n", "A=B"];
    let mut args = vec!["%s\\0".to_string()];
    args.extend(tricky.iter().map(|s| s.to_string()));
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "printf", "args": args})).await;
    let got: Vec<&str> = out["stdout"].as_str().unwrap().split('\0').collect();
    let mut want: Vec<&str> = tricky.to_vec();
    want.push("");
    assert_eq!(got, want, "{out}");

    let exec = sent(&up, "POST", &format!("/api/instance/{id}/exec/sse")).pop().unwrap();
    assert_eq!(exec.header("accept"), Some("text/event-stream"), "as the SDKs ask for the stream");
    let command = exec.json()["command"].as_array().unwrap().clone();
    assert_eq!(command.len(), 1, "one shell line, quoted by the plugin: {command:?}");
    // The host's default deadline (limits.default_exec_timeout_ms, 60 s), not the plugin's own.
    assert!(command[0].as_str().unwrap().contains("timeout -s KILL 60 'printf'"), "{command:?}");
    assert_eq!(exec.json().as_object().unwrap().len(), 1, "Morph's exec body has only `command`");
}

#[tokio::test]
async fn exec_exit_codes_missing_command_and_missing_cwd() {
    let (_up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "no-such-command-xyz"})).await;
    assert_eq!((out["exit_code"].clone(), out["timed_out"].clone()), (json!(127), json!(false)), "{out}");
    // A command killed before the deadline keeps its own status (not a timeout).
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "kill -9 $$"], "timeout_ms": 20000})).await;
    assert_eq!((out["exit_code"].clone(), out["timed_out"].clone()), (json!(137), json!(false)), "{out}");
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true", "cwd": "/no/such/dir"}), Code::BadInput).await;
    assert!(msg.contains("/no/such/dir"), "{msg}");
}

#[tokio::test]
async fn exec_timeout_kills_the_command_and_reports_timed_out() {
    let (_up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let started = std::time::Instant::now();
    let out =
        h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "echo started; sleep 30"], "timeout_ms": 700})).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!((out["exit_code"].clone(), out["timed_out"].clone()), (json!(-1), json!(true)), "{out}");
}

#[tokio::test]
async fn branch_returns_siblings_in_upstream_order_with_count_default_2() {
    let (up, h) = fresh::<MorphUpstream>("max_concurrent_sandboxes = 20").await;
    let id = create(&h).await;
    h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "echo parent > marker.txt"]})).await;

    let three = h.ok(P, Leaf::Branch, json!({"sandbox_id": id, "count": 3})).await;
    let ids: Vec<String> = three["sandbox_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ids, up.0.last_branch().unwrap(), "upstream order");
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/branch"))[0].query_param("count").as_deref(), Some("3"));

    let two = h.ok(P, Leaf::Branch, json!({"sandbox_id": id})).await;
    assert_eq!(two["sandbox_ids"].as_array().unwrap().len(), 2);
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/branch"))[1].query_param("count").as_deref(), Some("2"));
    assert_eq!(up.live(), 1 + 3 + 2);

    // A sibling is a copy of the parent's disk.
    let cat = h.ok(P, Leaf::Exec, json!({"sandbox_id": ids[2], "cmd": "cat", "args": ["marker.txt"]})).await;
    assert_eq!(cat["stdout"], "parent\n");

    up.clear();
    h.err(P, Leaf::Branch, json!({"sandbox_id": id, "count": 0}), Code::BadInput).await;
    h.err(P, Leaf::Branch, json!({"sandbox_id": "morphvm_missing", "count": 1}), Code::NotFound).await;
    assert_eq!(up.requests().len(), 1, "count 0 never reaches the upstream");
}

#[tokio::test]
async fn snapshot_waits_for_ready_and_boots_again() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let snap = h.ok(P, Leaf::Snapshot, json!({"sandbox_id": id})).await;
    let sid = snap["snapshot_id"].as_str().unwrap();
    assert!(sid.starts_with("snapshot_"), "{snap}");
    assert!(!sent(&up, "GET", &format!("/api/snapshot/{sid}")).is_empty(), "the pending snapshot was polled");
    let again = h.ok(P, Leaf::Create, json!({"image": sid})).await;
    assert_eq!(again["image"], sid);
    h.err(P, Leaf::Snapshot, json!({"sandbox_id": "morphvm_missing"}), Code::NotFound).await;
}

#[tokio::test]
async fn expose_port_returns_the_service_url_and_repeats_idempotently() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let url = h.ok(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 8080})).await;
    let expected = format!("https://port-8080-{}.http.cloud.morph.so", id.replace('_', "-"));
    assert_eq!(url, json!({"url": expected, "headers": {}}));
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/http"))[0].json(), json!({"name": "port-8080", "port": 8080}));
    // The service exists now (upstream 409): the same URL, read from the instance.
    assert_eq!(h.ok(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 8080})).await, json!({"url": expected, "headers": {}}));
    h.err(P, Leaf::ExposePort, json!({"sandbox_id": "morphvm_missing", "port": 80}), Code::NotFound).await;
}

#[tokio::test]
async fn unusable_upstream_answers_are_s502_not_a_crash() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    up.0.api.inject(Fault::new("POST", &format!("/api/instance/{id}/exec/sse"), 200, "<html>bad gateway</html>"));
    h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::Unavailable).await;
    up.0.api.inject(Fault::new("GET", "/api/instance", 200, r#"{"object":"list","data":"nope"}"#));
    let listed = h.ok(P, Leaf::List, json!({})).await;
    assert_eq!(listed["reconciled"], false, "{listed}");
    up.0.api.inject(Fault::new("POST", &format!("/api/instance/{id}/branch"), 200, r#"{"snapshot":{},"instances":[]}"#));
    h.err(P, Leaf::Branch, json!({"sandbox_id": id, "count": 2}), Code::Unavailable).await;
    up.0.api.inject(Fault::new("POST", &format!("/api/instance/{id}/http"), 200, r#"{"id":"x","networking":{"http_services":[]}}"#));
    h.err(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 3000}), Code::Unavailable).await;
    // FastAPI validation errors (a list in `detail`) are caller errors with the detail kept.
    up.0.api.inject(Fault::new(
        "POST",
        &format!("/api/instance/{id}/exec/sse"),
        422,
        r#"{"detail":[{"loc":["body","command"],"msg":"Field required"}]}"#,
    ));
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::BadInput).await;
    assert!(msg.contains("Field required"), "{msg}");
    up.0.api.inject(Fault::new("GET", "/api/instance", 429, r#"{"detail":"Too many requests"}"#).header("retry-after", "3"));
    assert!(h.ok(P, Leaf::List, json!({})).await["reconcile_error"].as_str().unwrap().contains("3000 ms"));
}

/// Spec table M3: Morph starts branch children without a TTL ("the instance will not
/// expire") and leaves the branch's snapshot behind; children get the parent's TTL and
/// the snapshot, which the contract never hands out, is deleted.
#[tokio::test]
async fn branch_children_get_the_parents_ttl_and_its_snapshot_is_deleted() {
    let (up, h) = fresh::<MorphUpstream>("max_concurrent_sandboxes = 5").await;
    let v = h.ok(P, Leaf::Create, json!({"image": MorphUpstream::IMAGE, "idle_timeout_secs": 600})).await;
    let id = v["sandbox_id"].as_str().unwrap().to_string();
    let kids = h.ok(P, Leaf::Branch, json!({"sandbox_id": id, "count": 2})).await;
    for kid in kids["sandbox_ids"].as_array().unwrap() {
        let instances = up.0.state.instances.lock().unwrap();
        let child = &instances[kid.as_str().unwrap()];
        assert_eq!((child.ttl_seconds, child.ttl_action.as_str()), (Some(600), "stop"), "{kid} has the parent's TTL");
    }
    assert_eq!(sent_prefix(&up, "DELETE", "/api/snapshot/").len(), 1, "the branch's snapshot is deleted");
    assert!(up.0.state.snapshots.lock().unwrap().is_empty(), "no snapshot left behind");
}

#[tokio::test]
async fn branch_siblings_take_slots_and_a_branch_over_the_cap_is_s400_before_any_call() {
    let (up, h) = fresh::<MorphUpstream>("max_concurrent_sandboxes = 3").await;
    let parent = create(&h).await;
    up.clear();
    let msg = h.err("morph", Leaf::Branch, json!({"sandbox_id": parent, "count": 3}), Code::CapReached).await;
    assert!(msg.contains("(3 requested)"), "{msg}");
    assert!(up.requests().is_empty(), "nothing was sent upstream");
    let ids = h.ok("morph", Leaf::Branch, json!({"sandbox_id": parent, "count": 2})).await["sandbox_ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 2);
    assert_eq!(h.host.registry.book("morph").in_flight(), 3, "the siblings hold slots");
    h.err("morph", Leaf::Create, json!({"image": MorphUpstream::IMAGE}), Code::CapReached).await;
    // Stopping a sibling frees its slot.
    h.ok("morph", Leaf::Stop, json!({"sandbox_id": ids[0]})).await;
    assert_eq!(h.host.registry.book("morph").in_flight(), 2);
}

/// Review item 13: a sandbox reaped while it booted (the readiness poll's 404) is the
/// upstream's failure, not the caller's input: S502, worth a retry, not S422.
#[tokio::test]
async fn a_sandbox_gone_while_it_boots_is_s502_not_a_caller_error() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    up.0.set_boot_delay(Duration::from_secs(30));
    up.0.api.inject(Fault::new("GET", "/api/instance/", 404, r#"{"detail":"Instance not found"}"#));
    let msg = h.err("morph", Leaf::Create, json!({"image": "snapshot_base"}), Code::Unavailable).await;
    assert!(msg.contains("disappeared upstream") && msg.contains("Retry"), "{msg}");
    // The plugin's own unknown-snapshot answer stays the caller's error.
    h.err("morph", Leaf::Create, json!({"image": "snapshot_nope"}), Code::BadInput).await;
}

/// Epoch seconds of an RFC 3339 time.
fn epoch(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap_or_else(|| panic!("not a time: {rfc3339}"))).unwrap().timestamp()
}

/// The simulator's TTL expiry for `id` (`InstanceTTL.ttl_expire_at`).
fn expire_at(up: &MorphUpstream, id: &str) -> Option<i64> {
    up.0.state.instances.lock().unwrap()[id].ttl_expire_at
}

#[tokio::test]
async fn get_reports_state_times_and_metadata_from_the_instance() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let v = h.ok(P, Leaf::Create, json!({"image": "snapshot_base", "idle_timeout_secs": 120, "metadata": {"team": "x"}})).await;
    let id = v["sandbox_id"].as_str().unwrap();
    up.clear();
    let got = h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await;
    assert_eq!((got["state"].as_str(), got["image"].as_str()), (Some("running"), Some("snapshot_base")), "{got}");
    assert_eq!(got["metadata"], sandbox_tests::with_host_tag(json!({"team": "x"})), "{got}");
    let view = upstream_view(&up, id);
    assert_eq!(epoch(&got["started_at"]), view["created"].as_i64().unwrap(), "started_at is `created`: {got}");
    assert_eq!(Some(epoch(&got["ends_at"])), expire_at(&up, id), "ends_at is `ttl.ttl_expire_at`: {got}");
    assert_eq!(epoch(&got["ends_at"]) - epoch(&got["started_at"]), 120, "create's idle_timeout_secs is the TTL");
    assert_eq!(up.requests().iter().map(|r| r.route()).collect::<Vec<_>>(), [format!("GET /api/instance/{id}")]);
    let msg = h.err(P, Leaf::Get, json!({"sandbox_id": "morphvm_missing"}), Code::NotFound).await;
    assert!(msg.contains("morphvm_missing"), "{msg}");
}

#[tokio::test]
async fn set_timeout_sends_the_sdk_body_and_moves_ends_at() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    up.clear();
    let e = h.err(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 86_401}), Code::BadInput).await;
    assert!(e.contains("86400"), "the default limits.max_timeout_secs: {e}");
    assert!(up.requests().is_empty(), "nothing is sent for an out-of-bounds lifetime");

    let before = chrono::Utc::now().timestamp();
    let set = h.ok(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 7200})).await;
    assert_eq!(set["timeout_secs"], 7200, "{set}");
    let ttl = sent(&up, "POST", &format!("/api/instance/{id}/ttl"));
    assert_eq!(ttl.len(), 1);
    assert_eq!(ttl[0].json(), json!({"ttl_seconds": 7200, "ttl_action": "stop"}), "UpdateTTLRequest as the SDKs send it");
    let ends = epoch(&h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await["ends_at"]);
    assert_eq!(Some(ends), expire_at(&up, &id));
    assert!((before + 7200..=chrono::Utc::now().timestamp() + 7200).contains(&ends), "7200 s from now, not from boot: {ends}");
    h.err(P, Leaf::SetTimeout, json!({"sandbox_id": "morphvm_missing", "timeout_secs": 60}), Code::NotFound).await;
}

#[tokio::test]
async fn pause_and_resume_are_idempotent_keep_the_slot_and_gate_exec() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let paused = json!({"sandbox_id": id, "state": "paused"});
    assert_eq!(h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await, paused);
    up.clear();
    assert_eq!(h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await, paused, "already paused is success");
    let routes: Vec<String> = up.requests().iter().map(|r| r.route()).collect();
    assert_eq!(routes, [format!("POST /api/instance/{id}/pause"), format!("GET /api/instance/{id}")], "refused (409), then checked");

    assert_eq!(h.ok(P, Leaf::Get, json!({"sandbox_id": id})).await["state"], "paused");
    let listed = h.ok(P, Leaf::List, json!({})).await;
    assert_eq!((listed["reconciled"].as_bool(), listed["in_flight"].as_u64()), (Some(true), Some(1)), "the slot stays: {listed}");
    assert_eq!(listed["sandboxes"][0]["state"], "paused", "{listed}");
    assert_eq!(up.live(), 0, "nothing runs upstream");
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::BadInput).await;
    assert!(msg.contains("paused") && msg.contains("resume"), "Morph's 409, explained: {msg}");

    // Resume waits for `ready` (the instance boots again) and then takes the new lifetime.
    up.0.set_boot_delay(Duration::from_millis(400));
    up.clear();
    let running = json!({"sandbox_id": id, "state": "running"});
    assert_eq!(h.ok(P, Leaf::Resume, json!({"sandbox_id": id, "timeout_secs": 900})).await, running);
    assert!(!sent(&up, "GET", &format!("/api/instance/{id}")).is_empty(), "polled until ready");
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/ttl"))[0].json(), json!({"ttl_seconds": 900, "ttl_action": "stop"}));
    assert_eq!(h.ok(P, Leaf::Resume, json!({"sandbox_id": id})).await, running, "already running is success");
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["back"]})).await;
    assert_eq!(out["stdout"], "back\n", "{out}");
    assert_eq!(h.host.registry.book(P).in_flight(), 1);
    h.err(P, Leaf::Pause, json!({"sandbox_id": "morphvm_missing"}), Code::NotFound).await;
    h.err(P, Leaf::Resume, json!({"sandbox_id": "morphvm_missing"}), Code::NotFound).await;
}

#[tokio::test]
async fn a_pause_answered_while_saving_is_waited_on_until_paused() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let saving = json!({"id": id, "created": 1, "status": "saving"}).to_string();
    up.0.api.inject(Fault::after_work("POST", &format!("/api/instance/{id}/pause"), 200, &saving));
    up.clear();
    assert_eq!(h.ok(P, Leaf::Pause, json!({"sandbox_id": id})).await["state"], "paused");
    assert!(!sent(&up, "GET", &format!("/api/instance/{id}")).is_empty(), "the plugin read the state until it said paused");
}

#[tokio::test]
async fn files_round_trip_binary_bytes_with_mode_and_parents_through_exec() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let bytes: Vec<u8> = (0..=255u8).collect();
    up.clear();
    let path = "deep/er/all-bytes.bin";
    let w = json!({"sandbox_id": id, "path": path, "bytes_base64": b64(&bytes), "mode": 0o600, "parents": true});
    assert_eq!(h.ok(P, Leaf::FsWrite, w).await, json!({"bytes_written": 256, "path": path}));
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/exec")).len(), 1, "a small file is one exec");
    let root = up.0.root_of(&id).unwrap();
    assert_eq!(std::fs::read(root.join(path)).unwrap(), bytes, "the bytes on the instance's disk");
    let read = h.ok(P, Leaf::FsRead, json!({"sandbox_id": id, "path": path})).await;
    assert_eq!(read, json!({"bytes_base64": b64(&bytes), "size": 256}));
    let mode = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "stat", "args": ["-c", "%a", path]})).await;
    assert_eq!(mode["stdout"], "600\n");

    // Over one exec's worth: several pieces, each one shell argument under Linux's 128 KiB.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    up.clear();
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "big.bin", "bytes_base64": b64(&big)})).await;
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/exec")).len(), 4, "200 000 bytes in 64 KiB pieces");
    assert_eq!(h.ok(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "big.bin"})).await["bytes_base64"], b64(&big));

    let msg = h.err(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "no/dir/x", "bytes_base64": "AA=="}), Code::NotFound).await;
    assert!(msg.contains("parents"), "{msg}");
    assert!(!root.join("no").exists());
    h.err(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "missing.txt"}), Code::NotFound).await;
    h.err(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "deep"}), Code::BadInput).await;
}

#[tokio::test]
async fn files_over_the_cap_are_s422_naming_it() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    use base64::Engine as _;
    let over = vec![b'x'; (1 << 20) + 1];
    up.clear();
    let w = json!({"sandbox_id": id, "path": "big", "bytes_base64": base64::engine::general_purpose::STANDARD.encode(&over)});
    let msg = h.err(P, Leaf::FsWrite, w, Code::BadInput).await;
    assert!(msg.contains("1048576 bytes") && msg.contains("1048577"), "{msg}");
    assert!(up.requests().is_empty(), "nothing was sent");
    // A file that grew past the cap on the VM is refused by the size check, unread.
    std::fs::write(up.0.root_of(&id).unwrap().join("grown"), &over).unwrap();
    let msg = h.err(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "grown"}), Code::BadInput).await;
    assert!(msg.contains("1048576 bytes"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_reaches_a_streaming_caller_while_the_command_runs() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let host = h.host.clone();
    // The command leaves a mark when it is done: a chunk seen before the mark exists came
    // while it ran.
    let script = "i=0; while [ $i -lt 10 ]; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done; touch finished";
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", script]});
    let call = tokio::spawn(async move { host.call_streaming(P, Leaf::Exec, &payload, tx).await });
    let first = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("a chunk arrives").expect("the tap is open");
    // Order, not time: a chunk is here, and the command (so the call) has not finished.
    assert!(!up.0.root_of(&id).unwrap().join("finished").exists(), "the first chunk came after the command ended");
    assert!(!call.is_finished(), "the first chunk ({:?}) came only with the answer", String::from_utf8_lossy(&first.bytes));
    let out = call.await.unwrap().unwrap();
    assert!(up.0.root_of(&id).unwrap().join("finished").exists());
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for chunk in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
        match chunk.stream {
            sandbox_host::runtime::output::OutputStream::Stdout => stdout.extend(chunk.bytes),
            sandbox_host::runtime::output::OutputStream::Stderr => stderr.extend(chunk.bytes),
        }
    }
    let expected = |tag: &str| (0..10).map(|i| format!("{tag} {i}\n")).collect::<String>();
    let (out_text, err_text) = (expected("line"), expected("err"));
    assert_eq!(
        exec_result(&out),
        json!({"stdout": out_text, "stderr": err_text, "exit_code": 0, "timed_out": false, "success": true, "truncated": false})
    );
    assert_eq!((String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap()), (expected("line"), expected("err")));
    assert!(sent(&up, "POST", &format!("/api/instance/{id}/exec")).is_empty(), "the streaming route only");
}

#[tokio::test]
async fn exec_falls_back_to_the_blocking_route_only_where_there_is_no_stream() {
    let (up, h) = fresh::<MorphUpstream>("").await;
    let id = create(&h).await;
    let sse = format!("/api/instance/{id}/exec/sse");
    up.0.api.inject(Fault::new("POST", &sse, 404, r#"{"detail":"Not Found"}"#));
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "echo out; echo err >&2; exit 4"]})).await;
    assert_eq!((out["stdout"].as_str(), out["stderr"].as_str(), out["exit_code"].as_i64()), (Some("out\n"), Some("err\n"), Some(4)));
    assert_eq!(sent(&up, "POST", &format!("/api/instance/{id}/exec")).len(), 1, "the blocking route answered");

    // A stream that ends without an exit code is the upstream's failure, not a success.
    let cut = "data: {\"type\":\"stdout\",\"content\":\"partial\"}\n\n";
    up.0.api.inject(Fault::new("POST", &sse, 200, cut));
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::Unavailable).await;
    assert!(msg.contains("exit code"), "{msg}");
    // An exit code given as a string (the SDKs parse it with int()/parseInt) is read.
    let text_code =
        "data: {\"type\":\"stdout\",\"content\":\"hi\"}\n\ndata: {\"type\":\"exit_code\",\"content\":\"5\"}\n\ndata: [DONE]\n\n";
    up.0.api.inject(Fault::new("POST", &sse, 200, text_code));
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"})).await;
    assert_eq!((out["stdout"].as_str(), out["exit_code"].as_i64()), (Some("hi"), Some(5)), "{out}");
}
