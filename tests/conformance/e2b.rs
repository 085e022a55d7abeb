//! E2B's mock upstream (control plane + envd on separate loopback ports) and the
//! E2B-specific cases: the envd stream, routing headers, access token, pagination; the
//! world 0.2 leaves in [`leaves`], streamed exec output and stdin in [`exec`].

mod exec;
mod leaves;

use crate::cases::fresh;
use provider_sims::e2b::E2bSim;
use provider_sims::{Fault, Recorded, Sim};
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::{Upstream, SECRET};
use sandbox_tests::TestHost;
use serde_json::json;

pub struct E2bUpstream(pub E2bSim);

impl Upstream for E2bUpstream {
    const PROVIDER: &'static str = "e2b";
    const IMAGE: &'static str = "base";
    const KEY_ENV: &'static str = "E2B_API_KEY";

    async fn start() -> Self {
        E2bUpstream(E2bSim::start(0, SECRET).await.unwrap())
    }

    fn sims(&self) -> Vec<&Sim> {
        vec![&self.0.api, &self.0.envd]
    }

    fn policy(&self) -> String {
        self.0.policy_toml()
    }

    fn assert_authenticated(req: &Recorded) {
        assert_eq!(req.header("x-api-key"), Some(SECRET), "{} must carry the injected X-API-Key", req.route());
    }

    fn needs_credential(req: &Recorded) -> bool {
        // envd requests are routed by these headers; only the control plane gets the key.
        req.header("e2b-sandbox-id").is_none()
    }

    fn route(leaf: Leaf, id: &str) -> (&'static str, String) {
        match leaf {
            Leaf::Create => ("POST", "/v2/sandboxes".into()),
            Leaf::Stop => ("DELETE", format!("/sandboxes/{id}")),
            Leaf::List => ("GET", "/v2/sandboxes".into()),
            Leaf::Snapshot | Leaf::Pause => ("POST", format!("/sandboxes/{id}/pause")),
            Leaf::Resume => ("POST", format!("/sandboxes/{id}/connect")),
            Leaf::SetTimeout => ("POST", format!("/sandboxes/{id}/timeout")),
            Leaf::Branch => ("POST", format!("/sandboxes/{id}/fork")),
            // get is the lookup itself; exec, fs and expose_port first look the sandbox up.
            Leaf::Get | Leaf::Exec | Leaf::FsRead | Leaf::FsWrite | Leaf::ExposePort => ("GET", format!("/sandboxes/{id}")),
        }
    }

    fn live(&self) -> usize {
        self.0.live_count()
    }

    async fn create_out_of_band(&self) -> String {
        self.0.create_out_of_band("base")
    }
}

/// [`E2bUpstream`] driving the e2b plugin as released for world 0.1.0, built from its
/// frozen source (`tests/fixtures/compat-e2b-v0-1-0`, on the 0.1.0 kit) by
/// `scripts/build-fixtures.sh`.
pub struct E2bV01Upstream(pub E2bUpstream);

impl Upstream for E2bV01Upstream {
    const PROVIDER: &'static str = "e2b";
    const IMAGE: &'static str = "base";
    const KEY_ENV: &'static str = "E2B_API_KEY";

    async fn start() -> Self {
        E2bV01Upstream(E2bUpstream::start().await)
    }
    fn wasm() -> std::path::PathBuf {
        let wasm = sandbox_tests::root().join("tests/fixtures/compat-e2b-v0-1-0.wasm");
        assert!(wasm.exists(), "{} is missing: run `bash scripts/build-fixtures.sh`", wasm.display());
        wasm
    }
    fn sims(&self) -> Vec<&Sim> {
        self.0.sims()
    }
    fn policy(&self) -> String {
        self.0.policy()
    }
    fn assert_authenticated(req: &Recorded) {
        E2bUpstream::assert_authenticated(req)
    }
    fn needs_credential(req: &Recorded) -> bool {
        E2bUpstream::needs_credential(req)
    }
    /// As released for 0.1.0, the plugin created through the deprecated `POST /sandboxes`.
    fn route(leaf: Leaf, id: &str) -> (&'static str, String) {
        match leaf {
            Leaf::Create => ("POST", "/sandboxes".into()),
            _ => E2bUpstream::route(leaf, id),
        }
    }
    fn live(&self) -> usize {
        self.0.live()
    }
    async fn create_out_of_band(&self) -> String {
        self.0.create_out_of_band().await
    }
}

#[tokio::test]
async fn a_0_1_0_plugin_loads_beside_0_2_0_plugins_and_lacks_only_the_new_leaves() {
    let (old, new) = (E2bUpstream::start().await, E2bUpstream::start().await);
    let setups = vec![
        sandbox_tests::PluginSetup { name: "e2b".into(), wasm: E2bV01Upstream::wasm(), policy: Some(old.policy()) },
        sandbox_tests::PluginSetup { name: "morph".into(), wasm: sandbox_tests::plugin_wasm("morph"), policy: None },
    ];
    let h = sandbox_tests::TestHost::start(setups, &[("E2B_API_KEY", SECRET)]).await;
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    let e2b = h.host.registry.get("e2b").unwrap();
    let morph = h.host.registry.get("morph").unwrap();
    assert_eq!((e2b.pre.world(), morph.pre.world()), ("iii:sandbox/provider-plugin@0.1.0", "iii:sandbox/provider-plugin@0.2.0"));
    assert!(!e2b.leaves().contains(&Leaf::Get), "0.1.0 has no get");
    let id = h.ok("e2b", Leaf::Create, json!({"image": "base"})).await["sandbox_id"].as_str().unwrap().to_string();
    let e = h.err("e2b", Leaf::Get, json!({"sandbox_id": id}), Code::Unsupported).await;
    assert!(e.contains("does not support `get`"), "{e}");
    // Its exec answer has the 0.2.0 fields all the same: the host adds them.
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["old"]})).await;
    assert_eq!((out["stdout"].as_str(), out["success"].as_bool(), out["truncated"].as_bool()), (Some("old\n"), Some(true), Some(false)));
    drop(new);
}

#[tokio::test]
async fn create_sends_the_documented_body_and_a_secure_sandbox_gets_its_token_on_envd() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let created = h.ok("e2b", Leaf::Create, json!({"image":"base","idle_timeout_secs":120,"env":{"A":"1"},"metadata":{"team":"x"}})).await;
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    let reqs = up.0.api.requests();
    let create = reqs.iter().find(|r| r.route() == "POST /v2/sandboxes").unwrap();
    assert_eq!(
        create.json(),
        json!({"templateID":"base","timeout":120,"autoPause":false,"envVars":{"A":"1"},"metadata":sandbox_tests::with_host_tag(json!({"team":"x"}))})
    );
    h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd":"true"})).await;
    let start = up.0.envd.requests().into_iter().find(|r| r.path == "/process.Process/Start").unwrap();
    assert_eq!(start.header("x-access-token"), Some(format!("tok-{id}").as_str()));
    assert_eq!(start.header("e2b-sandbox-port"), Some("49983"));
    assert_eq!(start.header("content-type"), Some("application/connect+json"));
    assert_eq!(start.header("connect-timeout-ms"), Some("60000"));
}

#[tokio::test]
async fn a_missing_command_exits_127_instead_of_failing_the_call() {
    let (_up, h) = fresh::<E2bUpstream>("").await;
    let id = h.ok("e2b", Leaf::Create, json!({"image":"base"})).await["sandbox_id"].as_str().unwrap().to_string();
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd":"no-such-command-xyz"})).await;
    assert_eq!(out["exit_code"], 127);
    assert!(out["stderr"].as_str().unwrap().contains("no-such-command-xyz"));
}

#[tokio::test]
async fn list_follows_x_next_token_pages() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    *up.0.state.page_size.lock().unwrap() = Some(2);
    for _ in 0..5 {
        up.0.create_out_of_band("base");
    }
    let listed = h.ok("e2b", Leaf::List, json!({})).await;
    assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 5);
    assert_eq!(listed["in_flight"], 5);
    let pages: Vec<_> = up.0.api.requests().into_iter().filter(|r| r.path == "/v2/sandboxes").collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[1].query_param("nextToken").as_deref(), Some("page-2"));
}

/// A host (with `policy`) whose E2B upstream holds 40 sandboxes, one per list page.
async fn forty_sandboxes_one_per_page(policy: &str) -> (E2bUpstream, TestHost) {
    let (up, h) = fresh::<E2bUpstream>(policy).await;
    *up.0.state.page_size.lock().unwrap() = Some(1);
    for _ in 0..40 {
        up.0.create_out_of_band("base");
    }
    (up, h)
}

fn pages_requested(up: &E2bUpstream) -> usize {
    up.0.api.requests().into_iter().filter(|r| r.path == "/v2/sandboxes").count()
}

/// A list follows every page, beyond the per-call budget of 32 requests: a team with
/// more than 32 pages of sandboxes must still be listed, or the cap could never be
/// reconciled. The list has its own budget, which the operator may set.
#[tokio::test]
async fn a_list_longer_than_the_per_call_budget_is_followed_to_its_last_page() {
    let (up, h) = forty_sandboxes_one_per_page("").await;
    let listed = h.ok("e2b", Leaf::List, json!({})).await;
    assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 40);
    assert_eq!(listed["in_flight"], 40);
    assert_eq!(pages_requested(&up), 40, "one request per page, more than max_upstream_requests_per_call");

    let (up, h) = forty_sandboxes_one_per_page("[limits]\nmax_upstream_requests_per_list = 10").await;
    let e = h.host.call("e2b", Leaf::List, &json!({})).await.unwrap_err();
    assert_eq!(e.code, Code::UpstreamBudget, "{e}");
    assert!(e.message().contains("more than 10 upstream requests in one list"), "{e}");
    assert!(e.message().contains("limits.max_upstream_requests_per_list in plugins/e2b.toml"), "{e}");
    assert_eq!(pages_requested(&up), 10, "the refused request never reached the upstream");
}

#[tokio::test]
/// Issue 16: `snapshot` is E2B's real snapshot (a template new sandboxes start from),
/// not a pause; the sandbox keeps running.
async fn snapshot_is_a_template_that_new_sandboxes_start_from() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = h.ok("e2b", Leaf::Create, json!({"image":"base"})).await["sandbox_id"].as_str().unwrap().to_string();
    h.ok("e2b", Leaf::FsWrite, json!({"sandbox_id": id, "path": "kept.txt", "content": "state"})).await;
    let snap = h.ok("e2b", Leaf::Snapshot, json!({"sandbox_id": id})).await["snapshot_id"].as_str().unwrap().to_string();
    assert_ne!(snap, id, "a snapshot is a template, not the sandbox");
    let sent = up.0.api.requests().into_iter().find(|r| r.path == format!("/sandboxes/{id}/snapshots")).expect("the snapshot route");
    assert_eq!((sent.method.as_str(), sent.json()), ("POST", json!({})));
    // The sandbox still runs.
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "cat", "args": ["kept.txt"]})).await;
    assert_eq!(out["stdout"], "state");
    // A new sandbox starts from it, with its files.
    let copy = h.ok("e2b", Leaf::Create, json!({"image": snap})).await["sandbox_id"].as_str().unwrap().to_string();
    let out = h.ok("e2b", Leaf::Exec, json!({"sandbox_id": copy, "cmd": "cat", "args": ["kept.txt"]})).await;
    assert_eq!(out["stdout"], "state");
    h.err("e2b", Leaf::Snapshot, json!({"sandbox_id": "missing-sbx"}), Code::NotFound).await;
}

#[tokio::test]
async fn an_unknown_template_is_a_caller_error() {
    let (_up, h) = fresh::<E2bUpstream>("").await;
    let msg = h.err("e2b", Leaf::Create, json!({"image":"no-such-template"}), Code::BadInput).await;
    assert!(msg.contains("template 'no-such-template' not found"), "{msg}");
    assert_eq!(h.ok("e2b", Leaf::List, json!({})).await["in_flight"], 0);
}

#[tokio::test]
async fn envd_failures_map_to_contract_codes() {
    let (up, h) = fresh::<E2bUpstream>("").await;
    let id = h.ok("e2b", Leaf::Create, json!({"image":"base"})).await["sandbox_id"].as_str().unwrap().to_string();
    h.err("e2b", Leaf::FsRead, json!({"sandbox_id": id, "path":"missing.txt"}), Code::NotFound).await;
    up.0.envd.inject(Fault::new("POST", "/process.Process/Start", 502, r#"{"message":"The sandbox was not found"}"#));
    h.err("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd":"true"}), Code::Unavailable).await;
    up.0.envd.inject(Fault::new("GET", "/files", 401, r#"{"code":401,"message":"invalid token"}"#));
    h.err("e2b", Leaf::FsRead, json!({"sandbox_id": id, "path":"x"}), Code::AuthInvalid).await;
}

#[tokio::test]
async fn expose_port_builds_the_port_host_on_the_sandbox_domain() {
    let (_up, h) = fresh::<E2bUpstream>("[config]\ndomain = \"example.test\"").await;
    let id = h.ok("e2b", Leaf::Create, json!({"image":"base"})).await["sandbox_id"].as_str().unwrap().to_string();
    let url = h.ok("e2b", Leaf::ExposePort, json!({"sandbox_id": id, "port": 3000})).await;
    assert_eq!(url, json!({"url": format!("https://3000-{id}.example.test"), "headers": {}}));
}

#[tokio::test]
async fn an_upstream_body_over_the_cap_is_cut_off_and_reported_as_unavailable() {
    let (up, h) = fresh::<E2bUpstream>("[limits]\nmax_upstream_body_mib = 1").await;
    let id = h.ok("e2b", Leaf::Create, json!({"image":"base"})).await["sandbox_id"].as_str().unwrap().to_string();
    let huge = format!("{{\"padding\":\"{}\"}}", "x".repeat(3 << 20));
    up.0.api.inject(Fault::new("GET", &format!("/sandboxes/{id}"), 200, &huge));
    // Not an exec: an exec's own stream is bounded by the output budget instead.
    let e = h.err("e2b", Leaf::Get, json!({"sandbox_id": id}), Code::Unavailable).await;
    assert!(e.contains("exceeds the host's limit of 1048576 bytes"), "the host cut it off: {e}");
    // The next call is unaffected.
    h.ok("e2b", Leaf::Get, json!({"sandbox_id": id})).await;
}

#[tokio::test]
async fn the_request_rate_limit_refuses_at_once_with_a_retry_hint() {
    let (up, h) = fresh::<E2bUpstream>("[limits]\nrate_per_sec = 0.5\nburst = 1").await;
    h.ok("e2b", Leaf::List, json!({})).await;
    up.clear();
    let started = std::time::Instant::now();
    let e = h.host.call("e2b", Leaf::List, &json!({})).await.unwrap_err();
    assert_eq!(e.code, Code::RateLimited);
    assert!(e.retry_after_ms.unwrap() > 1000, "{e}");
    assert!(e.message().contains("limits.rate_per_sec"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_millis(500), "rejection is immediate");
    assert!(up.requests().is_empty(), "a refused call never reaches the upstream");
}

#[tokio::test]
async fn calls_beyond_max_calls_in_flight_are_refused_at_once() {
    let (up, h) = fresh::<E2bUpstream>("[limits]\nmax_calls_in_flight = 1").await;
    up.0.api.inject(Fault::new("GET", "/v2/sandboxes", 200, "[]").delay(std::time::Duration::from_millis(800)));
    let host = h.host.clone();
    let slow = tokio::spawn(async move { host.call("e2b", Leaf::List, &json!({})).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let e = h.host.call("e2b", Leaf::List, &json!({})).await.unwrap_err();
    assert_eq!((e.code, e.retry_after_ms), (Code::RateLimited, Some(100)));
    assert!(slow.await.unwrap().is_ok());
    h.ok("e2b", Leaf::List, json!({})).await;
}

#[tokio::test]
async fn an_allowed_name_that_resolves_to_a_private_address_is_s703_unless_permitted() {
    let up = E2bUpstream::start().await;
    let (api, envd) = (up.0.api.addr.port(), up.0.envd.addr.port());
    let by_name = format!(
        "api_base = \"http://localhost:{api}\"\n\
         allowed_hosts = [\"localhost:{api}\", \"localhost:{envd}\"]\n\
         [credentials]\napi-key = \"E2B_API_KEY\"\n[config]\nenvd-url = \"http://localhost:{envd}\"\n"
    );
    let start = |policy: String| async move {
        sandbox_tests::TestHost::start(
            vec![sandbox_tests::PluginSetup::new("e2b", policy)],
            &[("E2B_API_KEY", sandbox_tests::upstream::SECRET)],
        )
        .await
    };
    let h = start(by_name.clone()).await;
    let msg = h.err("e2b", Leaf::Create, json!({"image":"base"}), Code::EgressDenied).await;
    assert!(msg.contains("resolves only to private or local addresses") && msg.contains("allow_private_networks = true"), "{msg}");
    assert!(up.0.api.requests().is_empty(), "nothing was sent");
    let h = start(format!("allow_private_networks = true\n{by_name}")).await;
    h.ok("e2b", Leaf::Create, json!({"image":"base"})).await;
}

#[tokio::test]
async fn an_exec_timeout_beyond_the_policy_limit_is_a_caller_error() {
    let (up, h) = fresh::<E2bUpstream>("[limits]\nmax_exec_timeout_ms = 1000").await;
    let id = h.ok("e2b", Leaf::Create, json!({"image":"base"})).await["sandbox_id"].as_str().unwrap().to_string();
    up.clear();
    let msg = h.err("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "sleep", "args": ["1"], "timeout_ms": 5000}), Code::BadInput).await;
    assert!(msg.contains("limits.max_exec_timeout_ms"), "{msg}");
    assert!(up.requests().is_empty());
    h.ok("e2b", Leaf::Exec, json!({"sandbox_id": id, "cmd": "true", "timeout_ms": 1000})).await;
}
