//! The case list every provider must pass, generic over its mock [`Upstream`].
//! Each case states one line of the contract (docs/contract.md) and checks both what the
//! caller got and what the upstream received (method, path, credential, nothing extra).

use provider_sims::Fault;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::{Upstream, SECRET};
use sandbox_tests::{is_rfc3339, PluginSetup, TestHost};
use serde_json::{json, Value};

/// `upstream.policy()` with `overrides` (TOML) merged over it, tables merged key by key.
pub fn policy_with<U: Upstream>(up: &U, overrides: &str) -> String {
    let mut base: toml::Table = up.policy().parse().expect("mock policy is TOML");
    let extra: toml::Table = overrides.parse().expect("override is TOML");
    merge(&mut base, extra);
    toml::to_string(&base).unwrap()
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// A started mock and a host serving its provider with `overrides` merged into the policy.
pub async fn fresh<U: Upstream>(overrides: &str) -> (U, TestHost) {
    let up = U::start().await;
    let policy = policy_with(&up, overrides);
    let setup = PluginSetup { name: U::PROVIDER.into(), wasm: U::wasm(), policy: Some(policy) };
    let h = TestHost::start(vec![setup], &[(U::KEY_ENV, SECRET)]).await;
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    (up, h)
}

async fn create<U: Upstream>(h: &TestHost) -> String {
    let v = h.ok(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE})).await;
    v["sandbox_id"].as_str().expect("sandbox_id").to_string()
}

async fn in_flight<U: Upstream>(h: &TestHost) -> Value {
    h.ok(U::PROVIDER, Leaf::List, json!({})).await["in_flight"].clone()
}

fn offers<U: Upstream>(h: &TestHost, leaf: Leaf) -> bool {
    h.host.registry.get(U::PROVIDER).unwrap().leaves().contains(&leaf)
}

pub async fn create_returns_the_contract_shape<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let v = h.ok(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE, "_caller_worker_id": "w-1"})).await;
    let plugin = h.host.registry.get(U::PROVIDER).unwrap();
    let caps: Vec<&str> = plugin.capabilities().iter().map(|c| c.as_str()).collect();
    assert_eq!(v["capabilities"], json!(caps));
    assert_eq!(v["image"], U::IMAGE);
    assert!(!v["sandbox_id"].as_str().unwrap().is_empty());
    assert!(is_rfc3339(v["started_at"].as_str().unwrap()), "{v}");
    assert_eq!(v["state"], "running", "{v}");
    let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let optional = ["ends_at", "name", "ignored"];
    assert!(
        fields.iter().all(|f| ["sandbox_id", "image", "capabilities", "started_at", "state"].contains(f) || optional.contains(f)),
        "only the contract's fields: {v}"
    );
    assert!(v["ends_at"].is_null() || is_rfc3339(v["ends_at"].as_str().unwrap()), "{v}");
    assert_eq!(up.live(), 1);
    let (method, path) = U::route(Leaf::Create, "");
    let sent: Vec<_> = up.api().requests().into_iter().filter(|r| r.method == method && r.path.starts_with(&path)).collect();
    assert_eq!(sent.len(), 1, "one create request upstream");
    U::assert_authenticated(&sent[0]);
}

pub async fn image_allowlist_rejects_before_any_upstream_call<U: Upstream>() {
    let (up, h) = fresh::<U>(&format!("image_allowlist = [\"{}\"]", U::IMAGE)).await;
    let msg = h.err(U::PROVIDER, Leaf::Create, json!({"image": "not-allowed-image"}), Code::ImageNotAllowed).await;
    assert!(msg.contains("not-allowed-image"), "{msg}");
    assert!(up.requests().is_empty(), "nothing may reach the upstream: {:?}", up.requests());
    create::<U>(&h).await;
}

pub async fn create_failures_roll_back_the_slot<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 1").await;
    let (method, path) = U::route(Leaf::Create, "");
    let cases = [
        (500, r#"{"code":500,"message":"boom","detail":"boom"}"#, Code::Unavailable),
        (503, "upstream overloaded", Code::Unavailable),
        (401, r#"{"code":401,"message":"Invalid API key","detail":"Invalid API key"}"#, Code::AuthInvalid),
        (403, r#"{"message":"forbidden"}"#, Code::AuthInvalid),
        (402, r#"{"message":"quota exceeded","detail":"quota exceeded"}"#, Code::QuotaExhausted),
        (429, r#"{"message":"slow down","detail":"slow down"}"#, Code::RateLimited),
        (200, "this is not json", Code::Unavailable),
    ];
    for (status, body, code) in cases {
        up.api().inject(Fault::new(method, &path, status, body).header("retry-after", "2"));
        let msg = h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), code).await;
        if code == Code::RateLimited {
            assert!(msg.contains("retry after 2000 ms"), "{msg}");
        }
        assert_eq!(in_flight::<U>(&h).await, 0, "slot released after {status}");
    }
    // The single slot is free: a real create still works.
    create::<U>(&h).await;
    assert_eq!(in_flight::<U>(&h).await, 1);
}

pub async fn cap_reached_is_s400_without_upstream_call<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 2").await;
    create::<U>(&h).await;
    create::<U>(&h).await;
    up.clear();
    let msg = h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::CapReached).await;
    assert!(msg.contains("cap of 2"), "{msg}");
    assert!(up.requests().is_empty());
    let listed = h.ok(U::PROVIDER, Leaf::List, json!({})).await;
    assert_eq!((listed["in_flight"].clone(), listed["cap"].clone(), listed["remaining"].clone()), (json!(2), json!(2), json!(0)));
}

pub async fn the_cap_counts_sandboxes_that_were_running_before_the_host_started<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 2").await;
    up.create_out_of_band().await;
    up.create_out_of_band().await;
    // What `serve` does at start (and `call` before a create): learn what already runs.
    assert!(h.host.reconcile_all(std::time::Duration::from_secs(15)).await.is_empty());
    let msg = h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::CapReached).await;
    assert!(msg.contains("cap of 2"), "{msg}");
    assert_eq!(up.live(), 2, "nothing was created upstream");
}

pub async fn stop_404_and_409_are_success_and_release_once<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 2").await;
    for status in [404u16, 409] {
        let a = create::<U>(&h).await;
        let b = create::<U>(&h).await;
        let (method, path) = U::route(Leaf::Stop, &a);
        up.api().inject(Fault::new(method, &path, status, r#"{"message":"gone or busy","detail":"gone or busy"}"#));
        assert_eq!(h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a})).await, json!({"sandbox_id": a, "stopped": true}));
        // A second stop of the same id: still success, and b's slot is not released by it.
        assert_eq!(h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a})).await, json!({"sandbox_id": a, "stopped": true}));
        let listed = h.ok(U::PROVIDER, Leaf::List, json!({})).await;
        // The upstream still has `a` when we injected the answer, so reconcile counts it;
        // stop it for real and check the book never goes negative.
        let _ = listed;
        h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a})).await;
        h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": b})).await;
        h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": b})).await;
        assert_eq!(in_flight::<U>(&h).await, 0, "after {status}");
        assert_eq!(up.live(), 0);
    }
    // The book alone (no reconcile): create, stop twice → exactly one release.
    let a = create::<U>(&h).await;
    let book = h.host.registry.book(U::PROVIDER);
    assert_eq!(book.in_flight(), 1);
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a})).await;
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a})).await;
    assert_eq!(book.in_flight(), 0);
}

pub async fn stop_5xx_is_s502_and_keeps_the_slot<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let a = create::<U>(&h).await;
    let (method, path) = U::route(Leaf::Stop, &a);
    up.api().inject(Fault::new(method, &path, 500, r#"{"message":"internal","detail":"internal"}"#));
    h.err(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a}), Code::Unavailable).await;
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 1);
    assert_eq!(up.live(), 1);
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": a})).await;
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 0);
}

pub async fn list_reconciles_with_upstream<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 5").await;
    let mine = create::<U>(&h).await;
    let theirs = up.create_out_of_band().await;
    let listed = h.ok(U::PROVIDER, Leaf::List, json!({})).await;
    assert_eq!(listed["reconciled"], true);
    assert_eq!((listed["in_flight"].clone(), listed["remaining"].clone()), (json!(2), json!(3)));
    let rows = listed["sandboxes"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["sandbox_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&mine.as_str()) && ids.contains(&theirs.as_str()), "{listed}");
    for r in rows {
        assert!(is_rfc3339(r["started_at"].as_str().unwrap()), "{r}");
        assert_eq!(r["state"], "running", "{r}");
        assert!(r["age_secs"].is_u64() && r.get("name").is_some(), "{r}");
        assert!(r["metadata"].is_object() && (r["ends_at"].is_null() || is_rfc3339(r["ends_at"].as_str().unwrap())), "{r}");
        assert_eq!(r.as_object().unwrap().len(), 8, "{r}");
    }
    // The out-of-band sandbox now holds a slot, and stopping it releases it once.
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": theirs})).await;
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 1);
}

pub async fn list_falls_back_when_upstream_fails<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 3").await;
    create::<U>(&h).await;
    let (method, path) = U::route(Leaf::List, "");
    up.api().inject(Fault::new(method, &path, 503, r#"{"message":"down","detail":"down"}"#));
    let listed = h.ok(U::PROVIDER, Leaf::List, json!({})).await;
    assert_eq!(listed["reconciled"], false);
    assert_eq!((listed["in_flight"].clone(), listed["cap"].clone(), listed["remaining"].clone()), (json!(1), json!(3), json!(2)));
    assert!(listed["reconcile_error"].as_str().unwrap().starts_with("[S502]"), "{listed}");
}

pub async fn exec_passes_args_env_cwd_and_reports_exit_codes<U: Upstream>() {
    let (_up, h) = fresh::<U>("").await;
    let id = create::<U>(&h).await;
    let out = h
        .ok(
            U::PROVIDER,
            Leaf::Exec,
            json!({
                "sandbox_id": id, "cmd": "sh",
                "args": ["-c", "printf '%s|%s|' \"$1\" \"$GREETING\"; pwd; echo oops >&2; exit 3", "sh", "two  words 'quoted' $HOME"],
                "env": {"GREETING": "hi there"}, "cwd": U::existing_dir(),
            }),
        )
        .await;
    assert_eq!(
        out["stdout"].as_str().unwrap().split('\n').next().unwrap(),
        format!("two  words 'quoted' $HOME|hi there|{}", U::existing_dir()),
        "{out}"
    );
    assert!(format!("{}{}", out["stdout"], out["stderr"]).contains("oops"), "{out}");
    assert_eq!(out["exit_code"], 3);
    assert_eq!(out["timed_out"], false);
    let ok = h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["hello"]})).await;
    assert_eq!((ok["stdout"].clone(), ok["exit_code"].clone()), (json!("hello\n"), json!(0)));
}

pub async fn exec_timeout_reports_timed_out<U: Upstream>() {
    let (_up, h) = fresh::<U>("").await;
    let id = create::<U>(&h).await;
    let started = std::time::Instant::now();
    let out = h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "cmd": "sleep", "args": ["30"], "timeout_ms": 1000})).await;
    assert_eq!(out["timed_out"], true, "{out}");
    assert_ne!(out["exit_code"], 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the deadline was honoured");
}

pub async fn exec_on_a_missing_sandbox_is_s410<U: Upstream>() {
    let (_up, h) = fresh::<U>("").await;
    h.err(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": "missing-sandbox-1", "cmd": "true"}), Code::NotFound).await;
}

pub async fn fs_round_trips_bytes_or_is_absent<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let id = create::<U>(&h).await;
    if !offers::<U>(&h, Leaf::FsWrite) {
        up.clear();
        h.err(U::PROVIDER, Leaf::FsWrite, json!({"sandbox_id": id, "path": "a", "bytes_base64": ""}), Code::Unsupported).await;
        h.err(U::PROVIDER, Leaf::FsRead, json!({"sandbox_id": id, "path": "a"}), Code::Unsupported).await;
        assert!(up.requests().is_empty());
        return;
    }
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..=255u8).chain(b"\r\n--boundary--\r\n".iter().copied()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let path = U::writable_path();
    assert_eq!(
        h.ok(U::PROVIDER, Leaf::FsWrite, json!({"sandbox_id": id, "path": path, "bytes_base64": b64, "mode": 0o640})).await,
        json!({"bytes_written": bytes.len(), "path": path})
    );
    let read = h.ok(U::PROVIDER, Leaf::FsRead, json!({"sandbox_id": id, "path": path})).await;
    assert_eq!(read, json!({"bytes_base64": b64, "size": bytes.len()}), "binary bytes carry no text `body`");
    let mode = h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "cmd": "stat", "args": ["-c", "%a", path]})).await;
    assert_eq!(mode["stdout"], "640\n", "{mode}");
    h.err(U::PROVIDER, Leaf::FsRead, json!({"sandbox_id": id, "path": "does/not/exist.txt"}), Code::NotFound).await;
}

pub async fn every_bad_input_is_s422_with_nothing_sent<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let bad = [
        (Leaf::Create, json!({})),
        (Leaf::Create, json!({"image": 7})),
        (Leaf::Create, json!({"image": U::IMAGE, "env": {"A": 1}})),
        (Leaf::Create, json!({"image": U::IMAGE, "metadata": ["x"]})),
        (Leaf::Create, json!({"image": U::IMAGE, "idle_timeout_secs": "60"})),
        (Leaf::Create, json!({"image": U::IMAGE, "idle_timeout_secs": 0})),
        (Leaf::Create, json!("base")),
        (Leaf::Exec, json!({"sandbox_id": "s1"})),
        (Leaf::Exec, json!({"sandbox_id": "s1", "cmd": "ls", "args": ["-l", 5]})),
        (Leaf::Exec, json!({"sandbox_id": "s1", "cmd": "ls", "args": "-l"})),
        (Leaf::Exec, json!({"sandbox_id": "s1", "cmd": "ls", "timeout_ms": -5})),
        (Leaf::Exec, json!({"sandbox_id": "s1", "cmd": "ls", "cwd": 3})),
        (Leaf::Exec, json!({"sandbox_id": 12, "cmd": "ls"})),
        (Leaf::Stop, json!({})),
        (Leaf::Stop, json!({"sandbox_id": "../../admin"})),
        (Leaf::Snapshot, json!({"sandbox_id": ""})),
        (Leaf::Branch, json!({"sandbox_id": "s1", "count": 0})),
        (Leaf::Branch, json!({"sandbox_id": "s1", "count": 1.5})),
        (Leaf::ExposePort, json!({"sandbox_id": "s1", "port": 0})),
        (Leaf::ExposePort, json!({"sandbox_id": "s1", "port": 65536})),
        (Leaf::ExposePort, json!({"sandbox_id": "s1"})),
        (Leaf::FsRead, json!({"sandbox_id": "s1"})),
        (Leaf::FsWrite, json!({"sandbox_id": "s1", "path": "/a", "bytes_base64": "not base64!"})),
        (Leaf::FsWrite, json!({"sandbox_id": "s1", "path": "/a", "bytes_base64": "", "mode": 4294967296u64})),
        (Leaf::FsWrite, json!({"sandbox_id": "s1", "path": "/a", "bytes_base64": "", "mode": -1})),
    ];
    for (leaf, payload) in bad {
        if !offers::<U>(&h, leaf) {
            continue; // an absent leaf answers S404 first (covered below)
        }
        h.err(U::PROVIDER, leaf, payload, Code::BadInput).await;
    }
    assert!(
        up.requests().is_empty(),
        "bad input must never reach the upstream: {:?}",
        up.requests().iter().map(|r| r.route()).collect::<Vec<_>>()
    );
}

pub async fn unsupported_leaves_are_s404_without_upstream_call<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let plugin = h.host.registry.get(U::PROVIDER).unwrap();
    for leaf in Leaf::ALL {
        if plugin.leaves().contains(&leaf) {
            continue;
        }
        let msg =
            h.err(U::PROVIDER, leaf, json!({"sandbox_id": "s1", "port": 80, "path": "/a", "bytes_base64": ""}), Code::Unsupported).await;
        assert!(msg.contains(leaf.as_str()), "{msg}");
    }
    assert!(up.requests().is_empty());
    // The floor is always there.
    for leaf in [Leaf::Create, Leaf::Exec, Leaf::Stop, Leaf::List] {
        assert!(plugin.leaves().contains(&leaf));
    }
}

pub async fn egress_outside_the_allowlist_is_s703<U: Upstream>() {
    let (up, h) = fresh::<U>("allowed_hosts = [\"api.example.invalid\"]").await;
    let msg = h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::EgressDenied).await;
    let authority = up.api().authority();
    assert!(msg.contains(&authority), "S703 names the destination: {msg}");
    assert!(msg.contains(&format!("add \"{authority}\" to allowed_hosts in plugins/{}.toml", U::PROVIDER)), "{msg}");
    assert!(up.requests().is_empty(), "a denied request never leaves the host");
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 0, "the reservation was rolled back");
}

pub async fn the_credential_reaches_only_the_control_plane<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let id = create::<U>(&h).await;
    h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "cmd": "printenv"})).await;
    h.ok(U::PROVIDER, Leaf::List, json!({})).await;
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": id})).await;
    let reqs = up.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        if U::needs_credential(r) {
            U::assert_authenticated(r);
        }
        let mut visible = format!("{} {} {:?} {}", r.method, r.path, r.query, String::from_utf8_lossy(&r.body));
        for (k, v) in &r.headers {
            let is_auth = k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("authorization");
            if !(is_auth && U::needs_credential(r)) {
                visible.push_str(&format!(" {k}: {v}"));
            }
        }
        assert!(!visible.contains(SECRET), "the key leaked into {}: {visible}", r.route());
    }
    // Nothing the guest can read holds it: its config is non-secret, its env is empty.
    let plugin = h.host.registry.get(U::PROVIDER).unwrap();
    assert!(plugin.config.values().all(|v| !v.contains(SECRET)));
}

/// Review item 4: a create whose caller got S701 at the wall-clock budget, while the
/// upstream went on to start the sandbox, is finished in overtime and undone: the
/// sandbox is stopped, and its slot stays held until then (the cap never sees two).
pub async fn a_create_abandoned_at_the_wall_is_stopped_and_holds_its_slot_until_then<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 1\n[limits]\ncall_timeout_ms = 1500").await;
    let (method, path) = U::route(Leaf::Create, "");
    // Answered 2.5 s late: after the 1.5 s wall, within the 1.5 s overtime that follows.
    up.api().inject(Fault::late_answer(method, &path, std::time::Duration::from_millis(2500)));
    let started = std::time::Instant::now();
    let msg = h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::PluginTimeout).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(2400), "answered at the wall, not after the upstream: {msg}");
    assert_eq!(up.live(), 1, "the upstream started the sandbox the caller never heard of");
    let again = h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::CapReached).await;
    assert!(again.contains("cap of 1"), "{again}");
    assert!(h.host.settling.wait(std::time::Duration::from_secs(30)).await, "the abandoned create was settled");
    assert_eq!(up.live(), 0, "the orphan was stopped upstream");
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 0, "and its slot released");
    create::<U>(&h).await;
    assert_eq!(up.live(), 1);
}

/// Review item 4, the trap half: a create that reached the upstream and then died (here
/// over its memory limit on a huge answer) leaves no answer to undo; the slot stays
/// counted and a list at once counts what the upstream really runs, the orphan included.
pub async fn a_create_that_dies_after_reaching_the_upstream_keeps_its_sandbox_counted<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 1\n[limits]\nmemory_mib = 16").await;
    let (method, path) = U::route(Leaf::Create, "");
    // Under the plugins' own 32 MiB body cap, over their 16 MiB of memory.
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(24 << 20));
    up.api().inject(Fault::after_work(method, &path, 200, &huge));
    h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::PluginMemory).await;
    assert_eq!(up.live(), 1, "the upstream started it");
    h.err(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE}), Code::CapReached).await;
    assert!(h.host.settling.wait(std::time::Duration::from_secs(30)).await);
    let book = h.host.registry.book(U::PROVIDER);
    assert_eq!(book.in_flight(), 1, "the orphan is counted as itself after the recount");
    let listed = h.ok(U::PROVIDER, Leaf::List, json!({})).await;
    let orphan = listed["sandboxes"][0]["sandbox_id"].as_str().expect("the orphan is listed").to_string();
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": orphan})).await;
    assert_eq!(book.in_flight(), 0);
    create::<U>(&h).await;
}

/// Review item 5: a list whose upstream snapshot predates a stop does not bring the
/// stopped sandbox back into the book (a phantom that refused creates at the cap).
pub async fn a_slow_list_does_not_resurrect_a_sandbox_stopped_meanwhile<U: Upstream>() {
    let (up, h) = fresh::<U>("max_concurrent_sandboxes = 1").await;
    let id = create::<U>(&h).await;
    let (method, path) = U::route(Leaf::List, "");
    // The upstream takes its snapshot at once and answers it a second later.
    up.api().inject(Fault::late_answer(method, &path, std::time::Duration::from_secs(1)));
    let list = h.call(U::PROVIDER, Leaf::List, json!({}));
    let stop = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        h.call(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": id})).await
    };
    let (listed, stopped) = tokio::join!(list, stop);
    stopped.unwrap();
    assert!(listed.unwrap()["sandboxes"].as_array().unwrap().iter().any(|s| s["sandbox_id"] == id.as_str()), "the snapshot had it");
    assert_eq!(up.live(), 0);
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 0, "the stop stands");
    create::<U>(&h).await;
}

/// A provider without `leaf` answers S404 for it with nothing sent; true when it has it.
async fn offered_or_s404<U: Upstream>(up: &U, h: &TestHost, leaf: Leaf, payload: Value) -> bool {
    if offers::<U>(h, leaf) {
        return true;
    }
    up.clear();
    h.err(U::PROVIDER, leaf, payload, Code::Unsupported).await;
    assert!(up.requests().is_empty(), "an absent {leaf} sent {:?}", up.requests());
    false
}

/// Not a sandbox on any simulator, and a valid id for the host.
const MISSING: &str = "missing-sbx-0000";

/// World 0.2 `get`: one sandbox's state and times; an id the upstream lacks is S410.
pub async fn get_reports_state_and_unknown_ids_are_s410<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let id = create::<U>(&h).await;
    if !offered_or_s404(&up, &h, Leaf::Get, json!({"sandbox_id": id})).await {
        return;
    }
    let got = h.ok(U::PROVIDER, Leaf::Get, json!({"sandbox_id": id})).await;
    assert_eq!((got["sandbox_id"].as_str(), got["state"].as_str()), (Some(id.as_str()), Some("running")), "{got}");
    assert!(is_rfc3339(got["started_at"].as_str().unwrap()), "{got}");
    assert!(got["ends_at"].is_null() || is_rfc3339(got["ends_at"].as_str().unwrap()), "{got}");
    assert!(got["metadata"].is_object(), "{got}");
    h.err(U::PROVIDER, Leaf::Get, json!({"sandbox_id": MISSING}), Code::NotFound).await;
}

/// World 0.2 `set_timeout`: within 1 s … limits.max_timeout_secs it reaches the upstream;
/// beyond it is S422 with nothing sent.
pub async fn set_timeout_is_bounded_and_reaches_the_upstream<U: Upstream>() {
    let (up, h) = fresh::<U>("[limits]\nmax_timeout_secs = 3600").await;
    let id = create::<U>(&h).await;
    if !offered_or_s404(&up, &h, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 600})).await {
        return;
    }
    up.clear();
    let e = h.err(U::PROVIDER, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 3601}), Code::BadInput).await;
    assert!(e.contains("limits.max_timeout_secs"), "{e}");
    assert!(up.requests().is_empty(), "nothing is sent for an out-of-bounds lifetime");
    let set = h.ok(U::PROVIDER, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 600})).await;
    assert_eq!(set["timeout_secs"], 600, "{set}");
    assert!(is_rfc3339(set["ends_at"].as_str().unwrap()), "{set}");
    assert!(!up.requests().is_empty(), "the new lifetime went upstream");
    h.err(U::PROVIDER, Leaf::SetTimeout, json!({"sandbox_id": MISSING, "timeout_secs": 600}), Code::NotFound).await;
}

/// World 0.2 `pause`/`resume`: both idempotent, the slot held throughout, the sandbox
/// usable again after resume.
pub async fn pause_and_resume_are_idempotent_and_keep_the_slot<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let id = create::<U>(&h).await;
    if !offered_or_s404(&up, &h, Leaf::Pause, json!({"sandbox_id": id})).await {
        return;
    }
    let paused = json!({"sandbox_id": id, "state": "paused"});
    assert_eq!(h.ok(U::PROVIDER, Leaf::Pause, json!({"sandbox_id": id})).await, paused);
    assert_eq!(h.ok(U::PROVIDER, Leaf::Pause, json!({"sandbox_id": id})).await, paused, "pausing a paused sandbox is success");
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 1, "a paused sandbox keeps its slot");
    if offers::<U>(&h, Leaf::Get) {
        assert_eq!(h.ok(U::PROVIDER, Leaf::Get, json!({"sandbox_id": id})).await["state"], "paused");
    }
    let running = json!({"sandbox_id": id, "state": "running"});
    assert_eq!(h.ok(U::PROVIDER, Leaf::Resume, json!({"sandbox_id": id})).await, running);
    assert_eq!(h.ok(U::PROVIDER, Leaf::Resume, json!({"sandbox_id": id})).await, running, "resuming a running sandbox is success");
    let out = h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["back"]})).await;
    assert_eq!(out["stdout"], "back\n", "{out}");
    assert_eq!(in_flight::<U>(&h).await, 1);
    h.err(U::PROVIDER, Leaf::Pause, json!({"sandbox_id": MISSING}), Code::NotFound).await;
    h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": id})).await;
    assert_eq!(h.host.registry.book(U::PROVIDER).in_flight(), 0);
}

/// Code written for the engine's own sandbox daemon (`iii-sandbox`) runs unchanged: its
/// create fields, `argv`, a whole command line in `cmd`, `workdir`, env lists, `content`
/// and octal modes for files, and stop's answer.
pub async fn a_payload_in_the_engine_daemons_shapes_runs_unchanged<U: Upstream>() {
    let (_up, h) = fresh::<U>("").await;
    let v = h.ok(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE, "name": "daemon-style", "env": ["GREETING=hi"]})).await;
    let id = v["sandbox_id"].as_str().unwrap().to_string();
    assert_eq!(v["name"], "daemon-style", "{v}");
    let listed = h.ok(U::PROVIDER, Leaf::List, json!({})).await;
    let row = listed["sandboxes"].as_array().unwrap().iter().find(|r| r["sandbox_id"] == id.as_str()).cloned().unwrap();
    assert_eq!(row["name"], "daemon-style", "{row}");
    let argv = json!({"sandbox_id": id, "argv": ["sh", "-c", "echo \"$X\" $(pwd)"], "env": ["X=from argv"], "workdir": U::existing_dir()});
    let out = h.ok(U::PROVIDER, Leaf::Exec, argv).await;
    assert_eq!(out["stdout"], format!("from argv {}\n", U::existing_dir()), "{out}");
    assert_eq!((out["success"].as_bool(), out["truncated"].as_bool()), (Some(true), Some(false)), "{out}");
    let line = h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "cmd": "printf '%s|' 'a b' c"})).await;
    assert_eq!(line["stdout"], "a b|c|", "a whole command line in `cmd` is split with shell quoting: {line}");
    let failed = h.ok(U::PROVIDER, Leaf::Exec, json!({"sandbox_id": id, "argv": ["sh", "-c", "exit 3"]})).await;
    assert_eq!((failed["exit_code"].as_i64(), failed["success"].as_bool()), (Some(3), Some(false)), "{failed}");
    if offers::<U>(&h, Leaf::FsWrite) {
        let path = U::writable_path();
        let w = h.ok(U::PROVIDER, Leaf::FsWrite, json!({"sandbox_id": id, "path": path, "content": "héllo\n", "mode": "0644"})).await;
        assert_eq!(w, json!({"bytes_written": "héllo\n".len(), "path": path}));
        let r = h.ok(U::PROVIDER, Leaf::FsRead, json!({"sandbox_id": id, "path": path})).await;
        assert_eq!((r["body"].as_str(), r["size"].as_u64()), (Some("héllo\n"), Some(7)), "{r}");
    }
    let stopped = json!({"sandbox_id": id, "stopped": true});
    assert_eq!(h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": id})).await, stopped);
    assert_eq!(h.ok(U::PROVIDER, Leaf::Stop, json!({"sandbox_id": id})).await, stopped, "unlike the daemon's, our stop is idempotent");
}

/// Output beyond limits.max_exec_output_kib is cut to exactly the budget and flagged;
/// the command itself still succeeds.
pub async fn exec_output_over_the_budget_is_cut_and_flagged<U: Upstream>() {
    let (_up, h) = fresh::<U>("[limits]\nmax_exec_output_kib = 16").await;
    let id = create::<U>(&h).await;
    let cmd = json!({"sandbox_id": id, "argv": ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo 0123456789abcdef0123456789abcdef; i=$((i+1)); done"]});
    let out = h.ok(U::PROVIDER, Leaf::Exec, cmd).await;
    assert_eq!(out["truncated"], true, "66 000 bytes is over 16 KiB");
    assert_eq!(out["stdout"].as_str().unwrap().len(), 16 * 1024);
    assert!(out["stdout"].as_str().unwrap().starts_with("0123456789abcdef"), "the start is kept");
    assert_eq!(out["success"], true, "{}", out["stderr"]);
}

/// Issue 16 (long commands): the exec's deadline, given or the host's default, governs the
/// call's upstream waits. A command quiet for longer than the first-byte and between-bytes
/// limits still finishes within its deadline; a provider's own default never decides.
pub async fn a_quiet_command_longer_than_the_byte_limits_finishes_within_its_deadline<U: Upstream>() {
    let limits = "[limits]\nfirst_byte_timeout_ms = 1000\nbetween_bytes_timeout_ms = 1000\ndefault_exec_timeout_ms = 10000";
    let (_up, h) = fresh::<U>(limits).await;
    let id = create::<U>(&h).await;
    let quiet = json!(["sh", "-c", "sleep 2; echo done"]);
    for payload in [json!({"sandbox_id": id, "argv": quiet, "timeout_ms": 10_000}), json!({"sandbox_id": id, "argv": quiet})] {
        let out = h.ok(U::PROVIDER, Leaf::Exec, payload.clone()).await;
        assert_eq!((out["stdout"].as_str(), out["success"].as_bool()), (Some("done\n"), Some(true)), "{payload}: {out}");
    }
}

/// `idle_timeout_secs` is idle everywhere: where the upstream's end is absolute (the
/// create reports an end time), use moves it — at most once per quarter of the window —
/// until a caller's own `set_timeout` fixes it; an idle upstream gets no such calls.
pub async fn an_idle_lifetime_moves_while_the_sandbox_is_used_until_a_caller_fixes_it<U: Upstream>() {
    let (up, h) = fresh::<U>("").await;
    let created = h.ok(U::PROVIDER, Leaf::Create, json!({"image": U::IMAGE, "idle_timeout_secs": 4})).await;
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    let (method, path) = U::route(Leaf::SetTimeout, &id);
    let refreshes = || up.requests().iter().filter(|r| r.method == method && r.path.starts_with(&path)).count();
    let exec = json!({"sandbox_id": id, "cmd": "true"});
    h.ok(U::PROVIDER, Leaf::Exec, exec.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(refreshes(), 0, "within the first quarter of the window nothing is refreshed");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    h.ok(U::PROVIDER, Leaf::Exec, exec.clone()).await;
    // An absolute end is one the upstream reports (create, else get); Daytona's is idle.
    let reported_end = created["ends_at"].is_string()
        || (offers::<U>(&h, Leaf::Get) && h.ok(U::PROVIDER, Leaf::Get, json!({"sandbox_id": id})).await["ends_at"].is_string());
    let absolute = reported_end && offers::<U>(&h, Leaf::SetTimeout);
    if !absolute {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(refreshes(), 0, "an upstream without an end time is idle by itself: {created}");
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while refreshes() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refreshes(), 1, "one refresh for the exec a quarter-window later");
    if offers::<U>(&h, Leaf::Get) {
        let got = h.ok(U::PROVIDER, Leaf::Get, json!({"sandbox_id": id})).await;
        let end = |v: &Value| chrono::DateTime::parse_from_rfc3339(v["ends_at"].as_str().unwrap()).unwrap();
        assert!(end(&got) > end(&created), "the upstream end moved: {created} → {got}");
    }
    h.ok(U::PROVIDER, Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 600})).await;
    let fixed = refreshes();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    h.ok(U::PROVIDER, Leaf::Exec, exec).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(refreshes(), fixed, "after the caller's set_timeout the host no longer moves the end");
}

/// Generates one `#[tokio::test]` per case for `$upstream`.
macro_rules! conformance_suite {
    ($suite:ident, $upstream:ty) => {
        mod $suite {
            use crate::cases;
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        cases::$name::<$upstream>().await
                    }
                };
            }
            case!(create_returns_the_contract_shape);
            case!(image_allowlist_rejects_before_any_upstream_call);
            case!(create_failures_roll_back_the_slot);
            case!(cap_reached_is_s400_without_upstream_call);
            case!(the_cap_counts_sandboxes_that_were_running_before_the_host_started);
            case!(stop_404_and_409_are_success_and_release_once);
            case!(stop_5xx_is_s502_and_keeps_the_slot);
            case!(list_reconciles_with_upstream);
            case!(list_falls_back_when_upstream_fails);
            case!(exec_passes_args_env_cwd_and_reports_exit_codes);
            case!(exec_timeout_reports_timed_out);
            case!(exec_on_a_missing_sandbox_is_s410);
            case!(fs_round_trips_bytes_or_is_absent);
            case!(every_bad_input_is_s422_with_nothing_sent);
            case!(unsupported_leaves_are_s404_without_upstream_call);
            case!(egress_outside_the_allowlist_is_s703);
            case!(the_credential_reaches_only_the_control_plane);
            case!(a_create_abandoned_at_the_wall_is_stopped_and_holds_its_slot_until_then);
            case!(a_create_that_dies_after_reaching_the_upstream_keeps_its_sandbox_counted);
            case!(a_slow_list_does_not_resurrect_a_sandbox_stopped_meanwhile);
            case!(get_reports_state_and_unknown_ids_are_s410);
            case!(set_timeout_is_bounded_and_reaches_the_upstream);
            case!(pause_and_resume_are_idempotent_and_keep_the_slot);
            case!(a_payload_in_the_engine_daemons_shapes_runs_unchanged);
            case!(exec_output_over_the_budget_is_cut_and_flagged);
            case!(a_quiet_command_longer_than_the_byte_limits_finishes_within_its_deadline);
            case!(an_idle_lifetime_moves_while_the_sandbox_is_used_until_a_caller_fixes_it);
        }
    };
}
