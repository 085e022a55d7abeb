//! The bridge's contract cases, for any engine: the mock (`tests/bridge`) and the real
//! iii engine (`tests/engine`, which includes this file). Each takes an [`Invoker`] that
//! reaches the host's functions through that engine, and the E2B simulator behind it.
//! The host serves `e2b` and `cpu-spin` (a fixture with no optional leaf), router on.

use provider_sims::e2b::E2bSim;
use provider_sims::Fault;
use serde_json::{json, Value};

/// The plugin without optional leaves, for the cases about absent ones.
pub const LEAFLESS: &str = "cpu-spin";

/// A refused invocation, as the engine delivered it.
#[derive(Debug)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

#[allow(async_fn_in_trait)]
pub trait Invoker {
    async fn invoke(&self, function_id: &str, data: Value) -> Result<Value, Refusal>;
}

impl Invoker for sandbox_tests::mock_engine::MockEngine {
    async fn invoke(&self, function_id: &str, data: Value) -> Result<Value, Refusal> {
        sandbox_tests::mock_engine::MockEngine::invoke(self, function_id, data)
            .await
            .map_err(|e| Refusal { code: e.code, message: e.message })
    }
}

/// The host's plugins for these cases: e2b over `sim`, and the leafless fixture.
pub fn plugins(sim: &E2bSim) -> Vec<sandbox_tests::PluginSetup> {
    let policy = format!("image_allowlist = [\"base\"]\n{}", sim.policy_toml());
    let leafless = sandbox_tests::root().join(format!("tests/fixtures/{LEAFLESS}.wasm"));
    assert!(leafless.exists(), "{} is missing: run `bash scripts/build-fixtures.sh`", leafless.display());
    vec![sandbox_tests::PluginSetup::new("e2b", policy), sandbox_tests::PluginSetup { name: LEAFLESS.into(), wasm: leafless, policy: None }]
}

pub async fn provider_functions_answer_with_the_contract_shapes(engine: &impl Invoker, sim: &E2bSim) {
    let created = engine.invoke("sandbox::provider::e2b::create", json!({"image": "base"})).await.unwrap();
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    let capabilities: Vec<&str> = created["capabilities"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for c in ["snapshot", "expose_port", "fs", "get", "pause"] {
        assert!(capabilities.contains(&c), "e2b offers {c}: {capabilities:?}");
    }
    let out = engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": id, "cmd": "echo", "args": ["via iii"]})).await.unwrap();
    let want = json!({"stdout": "via iii\n", "stderr": "", "exit_code": 0, "timed_out": false, "success": true, "truncated": false});
    assert_eq!(sandbox_tests::exec_result(&out), want);
    let got = engine.invoke("sandbox::provider::e2b::get", json!({"sandbox_id": id})).await.unwrap();
    assert_eq!(got["state"], "running", "{got}");
    let listed = engine.invoke("sandbox::provider::e2b::list", json!({})).await.unwrap();
    assert_eq!((listed["in_flight"].clone(), listed["reconciled"].clone()), (json!(1), json!(true)));
    let stopped = engine.invoke("sandbox::provider::e2b::stop", json!({"sandbox_id": id})).await.unwrap();
    assert_eq!(stopped, json!({"sandbox_id": id, "stopped": true}));
    assert_eq!(sim.live_count(), 0);
}

pub async fn errors_reach_callers_as_s_codes(engine: &impl Invoker) {
    let e = engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": "s1", "cmd": "ls", "args": ["-l", 5]})).await.unwrap_err();
    assert_eq!(e.code, "S422");
    assert!(e.message.starts_with("[S422] exec: field `args` must be an array of strings, but element 1 is an integer"), "{}", e.message);
    let e = engine.invoke("sandbox::provider::e2b::create", json!({"image": "ubuntu"})).await.unwrap_err();
    assert_eq!(e.code, "S100");
    let e = engine.invoke("sandbox::provider::e2b::exec", json!({"sandbox_id": "gone", "cmd": "ls"})).await.unwrap_err();
    assert_eq!(e.code, "S410");
    // An optional leaf a plugin lacks was never registered: the engine's own answer.
    let e = engine.invoke(&format!("sandbox::provider::{LEAFLESS}::branch"), json!({"sandbox_id": "s1"})).await.unwrap_err();
    assert_eq!(e.code, "function_not_found", "{}", e.message);
}

pub async fn the_router_dispatches_in_process_and_passes_codes_through(engine: &impl Invoker, sim: &E2bSim) {
    let created = engine.invoke("sandbox::create", json!({"provider": "e2b", "image": "base"})).await.unwrap();
    assert_eq!(created["image"], "base");
    let e = engine.invoke("sandbox::create", json!({"provider": "nope", "image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S600");
    assert_eq!(e.message, format!("[S600] no provider named \"nope\" is loaded; loaded providers: {LEAFLESS}, e2b."));
    let e = engine.invoke("sandbox::create", json!({"image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S600", "no provider and no default: {}", e.message);
    let e = engine.invoke("sandbox::branch", json!({"provider": LEAFLESS, "sandbox_id": "s1"})).await.unwrap_err();
    assert_eq!(e.code, "S404", "a leaf the provider lacks is S404, not S600: {}", e.message);
    // The plugin's own code passes through unchanged, never wrapped in S502.
    let e = engine.invoke("sandbox::create", json!({"provider": "e2b", "image": "ubuntu"})).await.unwrap_err();
    assert_eq!(e.code, "S100");
    sim.api.inject(Fault::new("POST", "/v2/sandboxes", 429, r#"{"code":429,"message":"slow down"}"#));
    let e = engine.invoke("sandbox::create", json!({"provider": "e2b", "image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S500");
    let e = engine.invoke("sandbox::create", json!({"provider": 7, "image": "base"})).await.unwrap_err();
    assert_eq!(e.code, "S422");
    let stopped = engine.invoke("sandbox::stop", json!({"provider": "e2b", "sandbox_id": created["sandbox_id"]})).await.unwrap();
    assert_eq!(stopped, json!({"sandbox_id": created["sandbox_id"], "stopped": true}));
}
