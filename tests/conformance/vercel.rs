//! Vercel Sandbox's mock upstream (one loopback port, the v1 API under `/api`) driving
//! the Python plugin (`plugins/vercel/`, componentize-py), and the Vercel-specific cases:
//! the create body, commands run detached then waited on and their logs read, the kill
//! at the deadline, files as a gzip tarball, extend-timeout as a difference, list pages,
//! snapshots that stop the sandbox, routes as exposed ports, and the policy's `[config]`.

use crate::cases::fresh;
use base64::Engine as _;
use provider_sims::vercel::VercelSim;
use provider_sims::{Fault, Recorded, Sim};
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::{Upstream, SECRET};
use sandbox_tests::{PluginSetup, TestHost};
use serde_json::{json, Value};

pub struct VercelUpstream(pub VercelSim);

impl Upstream for VercelUpstream {
    const PROVIDER: &'static str = "vercel";
    const IMAGE: &'static str = "node24";
    const KEY_ENV: &'static str = "VERCEL_TOKEN";

    async fn start() -> Self {
        VercelUpstream(VercelSim::start(0, SECRET).await.unwrap())
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
        // Commands and files go through the one API host too.
        true
    }

    fn route(leaf: Leaf, id: &str) -> (&'static str, String) {
        let sb = format!("/api/v1/sandboxes/{id}");
        match leaf {
            Leaf::Create => ("POST", "/api/v1/sandboxes".into()),
            Leaf::List => ("GET", "/api/v1/sandboxes".into()),
            Leaf::Stop => ("POST", format!("{sb}/stop")),
            Leaf::Exec => ("POST", format!("{sb}/cmd")),
            Leaf::FsRead => ("POST", format!("{sb}/fs/read")),
            Leaf::FsWrite => ("POST", format!("{sb}/fs/write")),
            Leaf::SetTimeout => ("POST", format!("{sb}/extend-timeout")),
            Leaf::Snapshot => ("POST", format!("{sb}/snapshot")),
            // get is the lookup itself; expose_port reads the routes from it. Vercel's v1
            // API has no pause, resume or fork (the plugin does not offer them).
            Leaf::Get | Leaf::ExposePort | Leaf::Pause | Leaf::Resume | Leaf::Branch => ("GET", sb),
        }
    }

    fn live(&self) -> usize {
        self.0.live_count()
    }

    async fn create_out_of_band(&self) -> String {
        self.0.create_out_of_band(Self::IMAGE)
    }
}

const P: &str = "vercel";

async fn create(h: &TestHost, req: Value) -> String {
    h.ok(P, Leaf::Create, req).await["sandbox_id"].as_str().expect("sandbox_id").to_string()
}

fn sent(up: &VercelUpstream, method: &str, path: &str) -> Vec<Recorded> {
    up.0.api.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
}

/// Every request carries the team the policy names, as the SDK adds `teamId` to each.
fn assert_team(reqs: &[Recorded]) {
    for r in reqs {
        assert_eq!(r.query_param("teamId").as_deref(), Some("team_sim"), "{}", r.route());
    }
}

#[tokio::test]
async fn create_sends_vercels_body_with_the_timeout_in_milliseconds() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let req = json!({"image": "python3.13", "idle_timeout_secs": 120, "env": {"A": "1"}, "cpus": 3, "network": false});
    let v = h.ok(P, Leaf::Create, req).await;
    let id = v["sandbox_id"].as_str().unwrap();
    assert!(id.starts_with("sbx_"), "{v}");
    assert_eq!((v["image"].clone(), v["state"].clone()), (json!("python3.13"), json!("running")), "{v}");
    let created = sent(&up, "POST", "/api/v1/sandboxes");
    assert_team(&created);
    let body = created[0].json();
    assert_eq!(
        body,
        json!({
            "timeout": 120_000, "runtime": "python3.13", "resources": {"vcpus": 3},
            "networkPolicy": {"mode": "deny-all"}, "env": {"A": "1"}, "ports": [3000], "projectId": "prj_sim",
        })
    );
    // Memory is asked for in vCPUs (2048 MB each), rounded up.
    create(&h, json!({"image": "node24", "memory_mb": 5000})).await;
    assert_eq!(sent(&up, "POST", "/api/v1/sandboxes")[1].json()["resources"], json!({"vcpus": 3}));
    // Vercel checks runtimes itself: an unknown one is its 400, the caller's S422.
    let msg = h.err(P, Leaf::Create, json!({"image": "cobol85"}), Code::BadInput).await;
    assert!(msg.contains("Invalid runtime"), "{msg}");
    assert_eq!(h.host.registry.book(P).in_flight(), 2);
}

#[tokio::test]
async fn exec_runs_detached_waits_for_the_exit_and_reads_the_logs() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let id = create(&h, json!({"image": "node24"})).await;
    let script = "printf out; printf err >&2; printf \"$X:$(pwd)\"; exit 4";
    let req = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", script], "env": {"X": "y"}, "cwd": "/vercel/sandbox"});
    let out = h.ok(P, Leaf::Exec, req).await;
    assert_eq!(out["exit_code"], 4, "{out}");
    assert_eq!(out["stderr"], "err", "{out}");
    let stdout = out["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("outy:") && stdout.ends_with("/vercel/sandbox"), "{out}");
    let base = format!("/api/v1/sandboxes/{id}/cmd");
    let started = sent(&up, "POST", &base);
    assert_eq!(started[0].json(), json!({"command": "sh", "args": ["-c", script], "env": {"X": "y"}, "cwd": "/vercel/sandbox"}));
    let cmd_id = up.0.api.requests().into_iter().find_map(|r| r.path.strip_prefix(&format!("{base}/")).map(str::to_string)).unwrap();
    let cmd_id = cmd_id.trim_end_matches("/logs").to_string();
    let waited = sent(&up, "GET", &format!("{base}/{cmd_id}"));
    assert_eq!(waited[0].query_param("wait").as_deref(), Some("true"));
    assert_eq!(sent(&up, "GET", &format!("{base}/{cmd_id}/logs")).len(), 1);
    assert_team(&up.0.api.requests());
}

#[tokio::test]
async fn exec_past_its_deadline_is_killed_and_keeps_what_it_printed() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let id = create(&h, json!({"image": "node24"})).await;
    let req = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "echo started; sleep 30"], "timeout_ms": 1000});
    let out = h.ok(P, Leaf::Exec, req).await;
    assert_eq!((out["timed_out"].clone(), out["stdout"].clone()), (json!(true), json!("started\n")), "{out}");
    // The kill route as Vercel documents it, without `/cmd/`, with SIGKILL.
    let kills: Vec<Recorded> = up.0.api.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/kill")).collect();
    assert_eq!(kills.len(), 1);
    assert!(kills[0].path.starts_with(&format!("/api/v1/sandboxes/{id}/cmd_")), "{}", kills[0].path);
    assert_eq!(kills[0].json(), json!({"signal": 9}));
    // The sandbox is still usable after the kill.
    let again = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["ok"]})).await;
    assert_eq!(again["stdout"], "ok\n");
}

#[tokio::test]
async fn files_are_written_as_a_gzip_tarball_and_relative_paths_are_under_the_sandbox_cwd() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let id = create(&h, json!({"image": "node24"})).await;
    let bytes = b"\x00\x01binary\xff".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "data/x.bin", "bytes_base64": b64, "mode": 0o600})).await;
    let write = &sent(&up, "POST", &format!("/api/v1/sandboxes/{id}/fs/write"))[0];
    assert_eq!((write.header("content-type"), write.header("x-cwd")), (Some("application/gzip"), Some("/")));
    assert!(write.body.starts_with(&[0x1f, 0x8b]), "a gzip stream");
    let local = up.0.root_of(&id).unwrap().join("vercel/sandbox/data/x.bin");
    assert_eq!(std::fs::read(&local).unwrap(), bytes, "extracted under /vercel/sandbox");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&local).unwrap().permissions().mode() & 0o777, 0o600);
    // Read back by its absolute path, as the sandbox sees it.
    let read = h.ok(P, Leaf::FsRead, json!({"sandbox_id": id, "path": "/vercel/sandbox/data/x.bin"})).await;
    assert_eq!(read["bytes_base64"], b64, "{read}");
    let exec = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "cat", "args": ["data/x.bin"]})).await;
    assert_eq!(exec["exit_code"], 0, "the command's default cwd is the same directory: {exec}");
}

#[tokio::test]
async fn set_timeout_extends_by_the_difference_and_cannot_shorten() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let id = create(&h, json!({"image": "node24", "idle_timeout_secs": 300})).await;
    let before = up.0.sandbox(&id).unwrap();
    let v = h.ok(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 900})).await;
    assert_eq!(v["timeout_secs"], 900, "{v}");
    let extend = &sent(&up, "POST", &format!("/api/v1/sandboxes/{id}/extend-timeout"))[0];
    let duration = extend.json()["duration"].as_u64().unwrap();
    // 900 s from now, past an end 300 s after the start: 600 s plus the time since then.
    assert!((600_000..=610_000).contains(&duration), "{duration}");
    let after = up.0.sandbox(&id).unwrap();
    assert_eq!(after["timeout"].as_u64().unwrap(), before["timeout"].as_u64().unwrap() + duration);
    up.clear();
    let msg = h.err(P, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 60}), Code::BadInput).await;
    assert!(msg.contains("can only extend"), "{msg}");
    assert!(up.requests().iter().all(|r| r.method == "GET"), "nothing was changed upstream: {:?}", up.requests());
}

#[tokio::test]
async fn list_follows_the_pages_back_with_until() {
    let (up, h) = fresh::<VercelUpstream>("max_concurrent_sandboxes = 10").await;
    *up.0.state.page_size.lock().unwrap() = Some(2);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create(&h, json!({"image": "node24"})).await);
        // Distinct createdAt milliseconds, so the pages are what a real account shows.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    up.clear();
    let listed = h.ok(P, Leaf::List, json!({})).await;
    let mut got: Vec<&str> = listed["sandboxes"].as_array().unwrap().iter().map(|r| r["sandbox_id"].as_str().unwrap()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let pages = sent(&up, "GET", "/api/v1/sandboxes");
    assert_eq!(pages.len(), 3, "5 sandboxes, 2 a page");
    assert_eq!(pages[0].query_param("until"), None);
    assert!(pages[1..].iter().all(|p| p.query_param("until").is_some()));
    assert!(pages.iter().all(|p| p.query_param("project").as_deref() == Some("prj_sim")));
    // A stopped sandbox stays in Vercel's list but is not live: it is not listed.
    h.ok(P, Leaf::Stop, json!({"sandbox_id": ids[0]})).await;
    let listed = h.ok(P, Leaf::List, json!({})).await;
    assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 4, "{listed}");
    assert_eq!(listed["in_flight"], 4);
}

#[tokio::test]
async fn a_snapshot_stops_the_sandbox_and_a_new_one_starts_from_it() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let id = create(&h, json!({"image": "node24"})).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode("kept");
    h.ok(P, Leaf::FsWrite, json!({"sandbox_id": id, "path": "state.txt", "bytes_base64": b64})).await;
    let snap = h.ok(P, Leaf::Snapshot, json!({"sandbox_id": id})).await["snapshot_id"].as_str().unwrap().to_string();
    assert!(snap.starts_with("snap_"), "{snap}");
    assert_eq!(up.0.sandbox(&id).unwrap()["status"], "stopped", "Vercel stops a sandbox it snapshots");
    // The next list releases the stopped sandbox's slot.
    assert_eq!(h.ok(P, Leaf::List, json!({})).await["in_flight"], 0);
    let from = h.ok(P, Leaf::Create, json!({"image": snap})).await;
    assert_eq!(from["image"], snap, "{from}");
    let body = sent(&up, "POST", "/api/v1/sandboxes").pop().unwrap().json();
    assert_eq!(body["source"], json!({"type": "snapshot", "snapshotId": snap}));
    assert!(body.get("runtime").is_none(), "{body}");
    let id2 = from["sandbox_id"].as_str().unwrap();
    let read = h.ok(P, Leaf::FsRead, json!({"sandbox_id": id2, "path": "state.txt"})).await;
    assert_eq!(read["bytes_base64"], b64);
    // An unknown snapshot is the caller's mistake, and holds no slot.
    let msg = h.err(P, Leaf::Create, json!({"image": "snap_nope"}), Code::BadInput).await;
    assert!(msg.contains("snapshot snap_nope"), "{msg}");
    assert_eq!(h.host.registry.book(P).in_flight(), 1);
}

#[tokio::test]
async fn expose_port_answers_the_route_published_at_create() {
    let (_up, h) = fresh::<VercelUpstream>("").await;
    let id = create(&h, json!({"image": "node24"})).await;
    let v = h.ok(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 3000})).await;
    let url = v["url"].as_str().unwrap();
    assert!(url.starts_with("https://sb-") && url.ends_with("-3000.vercel.run"), "{v}");
    assert_eq!(v["headers"], json!({}), "Vercel's sandbox URLs are public: {v}");
    let msg = h.err(P, Leaf::ExposePort, json!({"sandbox_id": id, "port": 8080}), Code::BadInput).await;
    assert!(msg.contains("[config] ports") && msg.contains("[3000]"), "{msg}");
}

#[tokio::test]
async fn a_bad_ports_setting_is_s422_before_any_upstream_call() {
    let (up, h) = fresh::<VercelUpstream>("[config]\nports = \"3000,http\"").await;
    let msg = h.err(P, Leaf::Create, json!({"image": "node24"}), Code::BadInput).await;
    assert!(msg.contains("comma-separated list of port numbers"), "{msg}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    assert_eq!(h.host.registry.book(P).in_flight(), 0);
}

#[tokio::test]
async fn vercels_error_bodies_reach_the_caller_with_their_code() {
    let (up, h) = fresh::<VercelUpstream>("").await;
    let body = r#"{"error":{"code":"sandbox_limit_reached","message":"Too many sandboxes"}}"#;
    up.0.api.inject(Fault::new("POST", "/api/v1/sandboxes", 429, body).header("retry-after", "7"));
    let msg = h.err(P, Leaf::Create, json!({"image": "node24"}), Code::RateLimited).await;
    assert!(msg.contains("Too many sandboxes (sandbox_limit_reached)") && msg.contains("retry after 7000 ms"), "{msg}");
    assert_eq!(h.host.registry.book(P).in_flight(), 0);
}

#[tokio::test]
async fn a_wrong_token_is_vercels_403_and_the_callers_auth_error() {
    let up = VercelUpstream::start().await;
    let setup = PluginSetup { name: P.into(), wasm: VercelUpstream::wasm(), policy: Some(up.policy()) };
    let h = TestHost::start(vec![setup], &[(VercelUpstream::KEY_ENV, "not-the-token")]).await;
    let msg = h.err(P, Leaf::Create, json!({"image": "node24"}), Code::AuthInvalid).await;
    assert!(msg.contains("Not authorized (forbidden)"), "{msg}");
    assert_eq!((up.live(), h.host.registry.book(P).in_flight()), (0, 0));
}

/// The Python plugin's documented memory defaults hold: CPython's image is ~14 MiB, so
/// the default 64 MiB reads a 12 MiB file whole; a limit too small for it is S702, typed
/// and contained, and the next call runs in a fresh instance.
#[tokio::test]
async fn the_default_memory_limit_fits_a_large_read_and_a_small_one_is_s702() {
    let big = vec![b'v'; 12 << 20];
    for (overrides, fits) in [("", true), ("[limits]\nmemory_mib = 24", false)] {
        let (up, h) = fresh::<VercelUpstream>(overrides).await;
        let id = create(&h, json!({"image": "node24"})).await;
        std::fs::write(up.0.root_of(&id).unwrap().join("vercel/sandbox/big.bin"), &big).unwrap();
        let read = json!({"sandbox_id": id, "path": "big.bin"});
        if fits {
            let v = h.ok(P, Leaf::FsRead, read).await;
            let got = base64::engine::general_purpose::STANDARD.decode(v["bytes_base64"].as_str().unwrap()).unwrap();
            assert_eq!(got.len(), big.len());
        } else {
            let msg = h.err(P, Leaf::FsRead, read, Code::PluginMemory).await;
            assert!(msg.contains("memory"), "{msg}");
            let out = h.ok(P, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["still here"]})).await;
            assert_eq!(out["stdout"], "still here\n");
        }
    }
}
