//! Other workers on the same engine, written with the SDK as their authors would, such
//! as one that owns bare `sandbox::*` ids (as the engine's `iii-sandbox` daemon does).
//! Shared by the mock-engine and real-engine suites.

use sandbox_host::bridge::iii::iii_sdk::runtime::WorkerMetadata;
use sandbox_host::bridge::iii::iii_sdk::{self, Error, IIIClient, InitOptions, RegisterFunction, WorkerIdentityMode};
use serde_json::{json, Value};
use std::time::Duration;

/// A worker named `name` (exactly: III_WORKER_NAME does not rename it).
pub fn worker(url: &str, name: &str) -> IIIClient {
    let metadata = WorkerMetadata { name: name.to_string(), ..Default::default() };
    let options = InitOptions { metadata: Some(metadata), identity: WorkerIdentityMode::Explicit, ..Default::default() };
    iii_sdk::register_worker(url, options)
}

/// A worker named `name` that serves each of `ids`, answering `{"served_by": name, "id": id}`.
pub async fn owning(url: &str, name: &str, ids: &[&str]) -> IIIClient {
    let client = worker(url, name);
    for id in ids {
        let answer = json!({"served_by": name, "id": id});
        client.register_function(
            *id,
            RegisterFunction::new_async(move |_: Value| {
                let answer = answer.clone();
                async move { Ok::<Value, Error>(answer) }
            }),
        );
    }
    client.wait_until_registered(Duration::from_secs(30)).await.expect("the other worker registers");
    client
}
