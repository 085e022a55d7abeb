//! The bridge's contract cases (`tests/bridge/contract_cases.rs`) on the real engine:
//! registration, invocation, S-codes as the engine's error codes, an absent leaf as the
//! engine's own "function not found", and the router's dispatch.

use crate::contract_cases::{self, Invoker, Refusal};
use crate::real_engine::RealEngine;
use crate::{caller, until_listed, WAIT};
use provider_sims::e2b::E2bSim;
use sandbox_host::bridge::iii::{provider_function_id, router_function_id, Bridge, BridgeOptions};
use sandbox_host::Leaf;
use sandbox_tests::upstream::SECRET;
use sandbox_tests::TestHost;
use serde_json::Value;
use std::sync::Arc;

/// Calls through the engine with the frame-level caller (not the SDK under test).
struct Through<'a>(&'a RealEngine);

impl Invoker for Through<'_> {
    async fn invoke(&self, function_id: &str, data: Value) -> Result<Value, Refusal> {
        caller::call(self.0, function_id, data).await.map_err(|e| Refusal {
            code: e["code"].as_str().unwrap_or_default().to_string(),
            message: e["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

async fn served(engine: &RealEngine) -> (E2bSim, TestHost, Arc<Bridge>) {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let host = TestHost::start_with(contract_cases::plugins(&sim), &[("E2B_API_KEY", SECRET)], |c| c.router = true).await;
    assert!(host.diagnostics.is_empty(), "{:?}", host.diagnostics);
    let bridge = Bridge::connect(host.host.clone(), &BridgeOptions { url: engine.url(), otel: Some(false) });
    bridge.wait_registered(WAIT).await.expect("the worker registers with the engine");
    let mut ids: Vec<String> = Leaf::ALL.iter().map(|l| router_function_id(*l)).collect();
    for name in ["e2b", contract_cases::LEAFLESS] {
        ids.extend(host.host.registry.get(name).unwrap().leaves().into_iter().map(|l| provider_function_id(name, l)));
    }
    until_listed(engine, &ids).await;
    (sim, host, bridge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_contract_cases_pass_on_the_real_engine() {
    let Some(engine) = RealEngine::start().await else { return };
    let (sim, _host, bridge) = served(&engine).await;
    let through = Through(&engine);
    contract_cases::provider_functions_answer_with_the_contract_shapes(&through, &sim).await;
    contract_cases::errors_reach_callers_as_s_codes(&through).await;
    contract_cases::the_router_dispatches_in_process_and_passes_codes_through(&through, &sim).await;
    bridge.shutdown().await;
}
