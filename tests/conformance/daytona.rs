//! Daytona's mock upstream (API under `/api` and the toolbox proxy under `/toolbox`, one
//! loopback port, both behind the bearer key) and the Daytona-specific cases: minutes
//! rounding, sizing, the session script, the toolbox-URL fallbacks, the three list shapes,
//! snapshots that boot, preview URLs and their token, uploads. Lifecycle leaves are in
//! [`lifecycle`], exec through sessions in [`exec`].

mod exec;
mod lifecycle;

use crate::cases::fresh;
use base64::Engine as _;
use provider_sims::daytona::{DaytonaSim, ListShape, DEFAULT_SNAPSHOT};
use provider_sims::{Fault, Recorded, Sim};
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::{Upstream, SECRET};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub struct DaytonaUpstream(pub DaytonaSim);

impl Upstream for DaytonaUpstream {
    const PROVIDER: &'static str = "daytona";
    const IMAGE: &'static str = "daytona-small";
    const KEY_ENV: &'static str = "DAYTONA_API_KEY";

    async fn start() -> Self {
        DaytonaUpstream(DaytonaSim::start(0, SECRET).await.unwrap())
    }

    fn sims(&self) -> Vec<&Sim> {
        vec![&self.0.sim]
    }

    fn policy(&self) -> String {
        self.0.policy_toml()
    }

    fn assert_authenticated(req: &Recorded) {
        sandbox_tests::upstream::assert_bearer(req)
    }

    fn needs_credential(_req: &Recorded) -> bool {
        // The API and the toolbox proxy both take the bearer key.
        true
    }

    fn route(leaf: Leaf, id: &str) -> (&'static str, String) {
        match leaf {
            Leaf::Create => ("POST", "/api/sandbox".into()),
            Leaf::Stop => ("DELETE", format!("/api/sandbox/{id}")),
            Leaf::List => ("GET", "/api/sandbox".into()),
            Leaf::Snapshot => ("POST", format!("/api/sandbox/{id}/snapshot")),
            Leaf::ExposePort => ("GET", format!("/api/sandbox/{id}/ports/")),
            Leaf::SetTimeout => ("POST", format!("/api/sandbox/{id}/autostop/")),
            Leaf::Branch => ("POST", format!("/api/sandbox/{id}/fork")),
            // exec and fs first look the sandbox up.
            _ => ("GET", format!("/api/sandbox/{id}")),
        }
    }

    fn live(&self) -> usize {
        self.0.live_count()
    }

    async fn create_out_of_band(&self) -> String {
        self.0.create_out_of_band(Self::IMAGE)
    }
}

const P: &str = "daytona";

async fn create(h: &sandbox_tests::TestHost) -> String {
    h.ok(P, Leaf::Create, json!({"image": DaytonaUpstream::IMAGE})).await["sandbox_id"].as_str().unwrap().to_string()
}

fn sent(up: &DaytonaUpstream, method: &str, path: &str) -> Vec<Recorded> {
    up.0.sim.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
}

/// Requests whose path starts with `prefix`.
fn sent_under(up: &DaytonaUpstream, method: &str, prefix: &str) -> Vec<Recorded> {
    up.0.sim.requests().into_iter().filter(|r| r.method == method && r.path.starts_with(prefix)).collect()
}

/// The script inside a session command `(eval "$(echo B64 | base64 -d)") < /dev/null`.
fn decoded_script(command: &str) -> String {
    let b64 = command.strip_prefix("(eval \"$(echo ").and_then(|s| s.strip_suffix(" | base64 -d)\") < /dev/null")).expect(command);
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

/// The session exec requests sent for sandbox `id`.
fn session_execs(up: &DaytonaUpstream, id: &str) -> Vec<Recorded> {
    sent_under(up, "POST", &format!("/toolbox/{id}/process/session/")).into_iter().filter(|r| r.path.ends_with("/exec")).collect()
}

#[tokio::test]
async fn create_sends_minutes_rounded_up_and_the_documented_body() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    for (secs, minutes) in [(59u64, 1u64), (61, 2), (1, 1), (120, 2)] {
        up.0.sim.clear_requests();
        h.ok(P, Leaf::Create, json!({"image": "daytona-small", "idle_timeout_secs": secs})).await;
        let body = sent(&up, "POST", "/api/sandbox")[0].json();
        assert_eq!(body["autoStopInterval"], minutes, "{secs} s → {body}");
    }
    up.0.sim.clear_requests();
    let v = h.ok(P, Leaf::Create, json!({"image": "daytona-small", "env": {"A": "1"}, "metadata": {"team": "x"}})).await;
    let body = sent(&up, "POST", "/api/sandbox")[0].json();
    // The host's default idle timeout (300 s) is 5 minutes.
    let labels = sandbox_tests::with_host_tag(json!({"team": "x"}));
    assert_eq!(
        body,
        json!({"snapshot": "daytona-small", "autoStopInterval": 5, "autoDeleteInterval": 0, "env": {"A": "1"}, "labels": labels})
    );
    let id = v["sandbox_id"].as_str().unwrap();
    assert_eq!(up.0.state.sandboxes.lock().unwrap()[id].labels["team"], "x");
    // The sandbox env reaches commands.
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "printenv", "args": ["A"]})).await;
    assert_eq!(out["stdout"], "1\n");
}

#[tokio::test]
async fn an_empty_image_means_the_default_snapshot_and_an_unknown_one_is_a_caller_error() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let v = h.ok(P, Leaf::Create, json!({"image": ""})).await;
    assert_eq!(v["image"], DEFAULT_SNAPSHOT);
    assert!(sent(&up, "POST", "/api/sandbox")[0].json().get("snapshot").is_none());
    let msg = h.err(P, Leaf::Create, json!({"image": "no-such-snapshot"}), Code::BadInput).await;
    assert!(msg.contains("Snapshot no-such-snapshot not found"), "{msg}");
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 1);
}

#[tokio::test]
async fn create_waits_for_started_and_a_failed_start_is_cleaned_up() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    up.0.state.start_polls.store(2, Ordering::Relaxed);
    let id = create(&h).await;
    assert_eq!(up.0.state_of(&id).as_deref(), Some("started"));
    assert_eq!(sent(&up, "GET", &format!("/api/sandbox/{id}")).len(), 2, "polled until started");

    // A sandbox that lands in `error` is deleted and the create fails (slot released).
    up.0.state.start_polls.store(1, Ordering::Relaxed);
    let broken = json!({"id": "b1", "snapshot": "daytona-small", "state": "error", "errorReason": "no capacity",
                        "createdAt": "2024-10-01T12:00:00.000Z"});
    up.0.sim.inject(Fault::new("GET", "/api/sandbox/", 200, &broken.to_string()));
    let before = up.live();
    let msg = h.err(P, Leaf::Create, json!({"image": "daytona-small"}), Code::Unavailable).await;
    assert!(msg.contains("no capacity") && msg.contains("deleted"), "{msg}");
    assert_eq!(up.live(), before, "the failed sandbox was deleted");
    assert_eq!(h.host.registry.book(P).in_flight(), 1);
}

/// Daytona's 409 on delete is "state change in progress": nothing was destroyed (the
/// spec, and the SDK, do not treat it as success). The plugin waits out the transition
/// and deletes again; a sandbox that stays busy is S502 with its slot kept.
#[tokio::test]
async fn stop_409_state_change_in_progress_is_retried_not_success() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let conflict = r#"{"statusCode":409,"message":"Sandbox state change in progress","error":"Conflict"}"#;
    let delete = format!("/api/sandbox/{id}");
    up.0.sim.inject(Fault::new("DELETE", &delete, 409, conflict));
    assert_eq!(h.ok(P, Leaf::Stop, json!({"sandbox_id": id})).await, json!({"sandbox_id": id, "stopped": true}));
    assert_eq!(up.0.state_of(&id).as_deref(), Some("destroyed"), "the retried delete destroyed it");
    assert_eq!(sent(&up, "DELETE", &delete).len(), 2);
    assert_eq!(h.host.registry.book(P).in_flight(), 0);
    // A stop after that is a 404: gone, still success.
    h.ok(P, Leaf::Stop, json!({"sandbox_id": id})).await;
    h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::NotFound).await;

    // Busy for longer than the plugin waits: not stopped, and the caller is told so.
    let busy = create(&h).await;
    let delete = format!("/api/sandbox/{busy}");
    for _ in 0..4 {
        up.0.sim.inject(Fault::new("DELETE", &delete, 409, conflict));
    }
    let msg = h.err(P, Leaf::Stop, json!({"sandbox_id": busy}), Code::Unavailable).await;
    assert!(msg.contains("409") && msg.contains("not deleted"), "{msg}");
    assert_eq!(up.0.state_of(&busy).as_deref(), Some("started"));
    assert_eq!(h.host.registry.book(P).in_flight(), 1, "its slot is kept: it still runs");
    h.ok(P, Leaf::Stop, json!({"sandbox_id": busy})).await;
    assert_eq!(h.host.registry.book(P).in_flight(), 0);
}

#[tokio::test]
async fn sizing_and_network_off_reach_the_create_body() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let caps = h.ok(P, Leaf::Create, json!({"image": "daytona-small"})).await["capabilities"].clone();
    for cap in ["sizing", "network_off", "get", "set_timeout", "pause", "branch", "exec_stdin"] {
        assert!(caps.as_array().unwrap().iter().any(|c| c == cap), "{cap} in {caps}");
    }
    up.0.sim.clear_requests();
    let v = h.ok(P, Leaf::Create, json!({"image": "daytona-small", "cpus": 2, "memory_mb": 1536, "network": false})).await;
    assert!(v.get("ignored").is_none(), "nothing was dropped: {v}");
    let body = sent(&up, "POST", "/api/sandbox")[0].json();
    // 1536 MB is 2 GiB rounded up (Daytona's memory is whole GiB).
    assert_eq!((body["cpu"].clone(), body["memory"].clone(), body["networkBlockAll"].clone()), (json!(2), json!(2), json!(true)), "{body}");
    let id = v["sandbox_id"].as_str().unwrap();
    assert_eq!(up.0.with(id, |s| (s.cpu, s.memory, s.network_block_all)), Some((2, 2, true)));
    // Without them the body carries none of the three: Daytona's defaults apply.
    up.0.sim.clear_requests();
    h.ok(P, Leaf::Create, json!({"image": "daytona-small", "network": true})).await;
    let body = sent(&up, "POST", "/api/sandbox")[0].json();
    assert!(body.get("cpu").is_none() && body.get("memory").is_none() && body.get("networkBlockAll").is_none(), "{body}");
}

#[tokio::test]
async fn fs_write_uses_upload_v2_and_the_mode_goes_through_the_permissions_route() {
    use std::os::unix::fs::PermissionsExt;
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let bytes: Vec<u8> = (0..=255u8).rev().chain(*b"\r\n------iii-sandbox-boundary-7f3a9c--\r\n").collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let w = h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "bin/tool.sh", "bytes_base64": b64, "mode": 0o755})).await;
    assert_eq!(w, json!({"bytes_written": bytes.len(), "path": "bin/tool.sh"}));
    let on_disk = up.0.root_of(&id).unwrap().join("bin/tool.sh");
    assert_eq!(std::fs::read(&on_disk).unwrap(), bytes);
    assert_eq!(std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o7777, 0o755);
    let upload = sent(&up, "POST", &format!("/toolbox/{id}/files/upload-v2")).pop().expect("the current upload route");
    assert_eq!(upload.query_param("path").as_deref(), Some("bin/tool.sh"));
    assert!(upload.header("content-type").unwrap().starts_with("multipart/form-data; boundary="));
    assert!(sent(&up, "POST", &format!("/toolbox/{id}/files/upload")).is_empty(), "no fallback was needed");
    let chmod = sent(&up, "POST", &format!("/toolbox/{id}/files/permissions")).pop().unwrap();
    assert_eq!((chmod.query_param("path").as_deref(), chmod.query_param("mode").as_deref()), (Some("bin/tool.sh"), Some("0755")));
    assert!(session_execs(&up, &id).is_empty(), "no command ran for the chmod");

    let read = h.ok(P, Leaf::FsRead, json!({"sandbox_id": id, "path": on_disk.to_str().unwrap()})).await;
    assert_eq!(read, json!({"bytes_base64": b64, "size": bytes.len()}), "binary bytes carry no text `body`");
    // Without a mode, no permissions call.
    up.0.sim.clear_requests();
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "plain.txt", "bytes_base64": ""})).await;
    assert!(sent(&up, "POST", &format!("/toolbox/{id}/files/permissions")).is_empty());
    h.err(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "nope.txt"}), Code::NotFound).await;
    // chmod of a file the daemon cannot find is S410, as the daemon's 404 says.
    up.0.sim.inject(Fault::new("POST", &format!("/toolbox/{id}/files/upload-v2"), 200, r#"{"name":"x","path":"x","type":"file"}"#));
    let msg = h
        .err(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "never/written", "bytes_base64": "", "mode": 0o600}), Code::NotFound)
        .await;
    assert!(msg.contains("files/permissions"), "{msg}");
}

#[tokio::test]
async fn an_older_daemon_without_upload_v2_gets_the_old_route_with_its_folder_made_first() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    up.0.state.no_upload_v2.store(true, Ordering::Relaxed);
    let w = json!({"sandbox_id": id, "path": "deep/er/file.txt", "content": "old daemon\n", "parents": true});
    h.ok(P, Leaf::FsWrite, w).await;
    assert_eq!(std::fs::read_to_string(up.0.root_of(&id).unwrap().join("deep/er/file.txt")).unwrap(), "old daemon\n");
    let order: Vec<String> =
        sent_under(&up, "POST", &format!("/toolbox/{id}/files/")).iter().map(|r| r.path.rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(order, ["upload-v2", "folder", "upload"], "404 on upload-v2, then mkdir -p, then the old upload");
    let folder = sent(&up, "POST", &format!("/toolbox/{id}/files/folder")).pop().unwrap();
    assert_eq!((folder.query_param("path").as_deref(), folder.query_param("mode").as_deref()), (Some("deep/er"), Some("0755")));
    // Without `parents` no folder is made, and this old daemon cannot write there.
    up.0.sim.clear_requests();
    let msg = h.err(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "other/file.txt", "content": "x"}), Code::BadInput).await;
    assert!(msg.contains("files/upload"), "{msg}");
    assert!(sent(&up, "POST", &format!("/toolbox/{id}/files/folder")).is_empty());
}

#[tokio::test]
async fn expose_port_returns_the_preview_url_and_its_token_header() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    let v = h.ok(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 3000})).await;
    assert_eq!(v["url"], format!("https://3000-{id}.proxy.daytona.works"));
    let token = provider_sims::daytona::preview_token(&id);
    assert_eq!(v["headers"], json!({"x-daytona-preview-token": token}), "{v}");
    assert_eq!(sent(&up, "GET", &format!("/api/sandbox/{id}/ports/3000/preview-url")).len(), 1);
    // A public sandbox's answer with an empty token needs no header.
    up.0.sim.inject(Fault::new(
        "GET",
        &format!("/api/sandbox/{id}/ports/"),
        200,
        &json!({"sandboxId": id, "url": "https://p", "token": ""}).to_string(),
    ));
    assert_eq!(h.ok(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 80})).await["headers"], json!({}));
    h.err(P, Leaf::ExposePort, json!({"sandbox_id": "missing", "port": 3000}), Code::NotFound).await;
}

#[tokio::test]
async fn the_toolbox_falls_back_to_the_proxy_url_route_then_the_old_api_proxy() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    up.0.state.omit_toolbox_proxy_url.store(true, Ordering::Relaxed);
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["via-route"]})).await;
    assert_eq!(out["stdout"], "via-route\n");
    assert_eq!(sent(&up, "GET", &format!("/api/sandbox/{id}/toolbox-proxy-url")).len(), 1);
    assert_eq!(session_execs(&up, &id).len(), 1);

    up.0.state.no_toolbox_proxy_url_route.store(true, Ordering::Relaxed);
    let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["via-api"]})).await;
    assert_eq!(out["stdout"], "via-api\n");
    let old: Vec<Recorded> = sent_under(&up, "POST", &format!("/api/toolbox/{id}/toolbox/process/session/"))
        .into_iter()
        .filter(|r| r.path.ends_with("/exec"))
        .collect();
    assert_eq!(old.len(), 1);
    DaytonaUpstream::assert_authenticated(&old[0]);
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "old.txt", "bytes_base64": "aGk="})).await;
    assert_eq!(h.ok(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "old.txt"})).await["bytes_base64"], "aGk=");
}

#[tokio::test]
async fn list_reads_every_shape_follows_pages_and_skips_sandboxes_that_are_not_live() {
    let (up, h) = fresh::<DaytonaUpstream>("max_concurrent_sandboxes = 20").await;
    let ids: Vec<String> = (0..5).map(|_| up.0.create_out_of_band("daytona-small")).collect();
    up.0.set_state(&ids[0], "stopped");
    *up.0.state.page_size.lock().unwrap() = Some(2);
    for (shape, pages) in [(ListShape::Cursor, 3), (ListShape::Paged, 3), (ListShape::Array, 1)] {
        *up.0.state.list_shape.lock().unwrap() = shape;
        up.0.sim.clear_requests();
        let listed = h.ok(P, Leaf::List, json!({})).await;
        let rows = listed["sandboxes"].as_array().unwrap();
        let mut got: Vec<&str> = rows.iter().map(|r| r["sandbox_id"].as_str().unwrap()).collect();
        got.sort();
        let mut want: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(got, want, "{shape:?}: the stopped sandbox is not live");
        assert_eq!(listed["in_flight"], 4, "{shape:?}");
        assert!(rows.iter().all(|r| r["image"] == "daytona-small" && sandbox_tests::is_rfc3339(r["started_at"].as_str().unwrap())));
        let reqs = sent(&up, "GET", "/api/sandbox");
        assert_eq!(reqs.len(), pages, "{shape:?}");
        match shape {
            ListShape::Cursor => assert!(reqs[1].query_param("cursor").is_some(), "{:?}", reqs[1].query),
            ListShape::Paged => assert_eq!(reqs[2].query_param("page").as_deref(), Some("3")),
            ListShape::Array => assert_eq!(reqs[0].query, None),
        }
    }
    // A body that is no Daytona list is S502, and the host falls back to its own count.
    up.0.sim.inject(Fault::new("GET", "/api/sandbox", 200, r#"{"sandboxes":[]}"#));
    let listed = h.ok(P, Leaf::List, json!({})).await;
    assert_eq!(listed["reconciled"], false);
}

#[tokio::test]
async fn snapshot_names_a_snapshot_that_boots_a_copy() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "state.txt", "bytes_base64": "c2F2ZWQ="})).await;
    let snap = h.ok(P, Leaf::Snapshot, json!({"sandbox_id": id})).await["snapshot_id"].as_str().unwrap().to_string();
    assert!(snap.starts_with("iii-") && snap.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{snap}");
    let req = sent(&up, "POST", &format!("/api/sandbox/{id}/snapshot")).pop().unwrap();
    assert_eq!(req.json(), json!({"name": snap}));
    // The plugin waited out `snapshotting`.
    assert_eq!(up.0.state_of(&id).as_deref(), Some("started"));
    let copy = h.ok(P, Leaf::Create, json!({"image": snap})).await;
    assert_eq!(copy["image"], Value::String(snap.clone()));
    let copy_id = copy["sandbox_id"].as_str().unwrap();
    assert_eq!(h.ok(P, Leaf::FsRead, json!({"sandbox_id": copy_id, "path": "state.txt"})).await["bytes_base64"], "c2F2ZWQ=");
    h.err(P, Leaf::Snapshot, json!({"sandbox_id": "missing"}), Code::NotFound).await;
}

#[tokio::test]
async fn a_stopped_sandbox_is_a_caller_error_and_a_bad_key_is_s503() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let id = create(&h).await;
    up.0.set_state(&id, "stopped");
    let msg = h.err(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "true"}), Code::BadInput).await;
    assert!(msg.contains("stopped") && msg.contains("resume it"), "{msg}");
    let (_up2, h2) = {
        let up2 = DaytonaUpstream(DaytonaSim::start(0, "some-other-key").await.unwrap());
        let policy = up2.policy();
        let h2 = sandbox_tests::TestHost::start(vec![sandbox_tests::PluginSetup::new(P, policy)], &[("DAYTONA_API_KEY", SECRET)]).await;
        (up2, h2)
    };
    let msg = h2.err(P, Leaf::Create, json!({"image": "daytona-small"}), Code::AuthInvalid).await;
    assert!(msg.contains("Unauthorized"), "{msg}");
}

/// Issue 16 row D5: Daytona's quota (400), suspended organisation (403) and unreadable
/// file (403 from the daemon) reach the caller as what they are, not S422 / S503.
#[tokio::test]
async fn quota_suspension_and_file_permission_errors_have_their_own_codes() {
    let (up, h) = fresh::<DaytonaUpstream>("").await;
    let full = r#"{"statusCode":400,"message":"Total CPU limit exceeded. Maximum allowed: 4","error":"Bad Request"}"#;
    up.0.sim.inject(Fault::new("POST", "/api/sandbox", 400, full));
    let e = h.err(P, Leaf::Create, json!({"image": DaytonaUpstream::IMAGE}), Code::QuotaExhausted).await;
    assert!(e.contains("Total CPU limit exceeded"), "{e}");
    let id = create(&h).await;
    let suspended = r#"{"statusCode":403,"message":"Organization is suspended: Payment method required","error":"Forbidden"}"#;
    up.0.sim.inject(Fault::new("GET", &format!("/api/sandbox/{id}"), 403, suspended));
    h.err(P, Leaf::Get, json!({"sandbox_id": id}), Code::QuotaExhausted).await;
    let denied = r#"{"statusCode":403,"message":"open /root/secret: permission denied","code":"FORBIDDEN"}"#;
    up.0.sim.inject(Fault::new("GET", &format!("/toolbox/{id}/files/download"), 403, denied));
    let e = h.err(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "/root/secret"}), Code::BadInput).await;
    assert!(e.contains("permission denied"), "{e}");
}
