//! A caller of the engine that speaks its WebSocket frames itself, so what the test sees
//! of the engine does not pass through the SDK under test: one connection, one
//! `invokefunction`, the matching `invocationresult`. A call left unanswered fails with
//! the engine's log, which shows whether the worker serving the id was still connected.

use super::RealEngine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls `function_id` with `data` on `engine`: the result, or the error body.
pub async fn call(engine: &RealEngine, function_id: &str, data: Value) -> Result<Value, Value> {
    let url = engine.url();
    tokio::time::timeout(CALL_TIMEOUT, call_unbounded(&url, function_id, data))
        .await
        .unwrap_or_else(|_| panic!("{function_id} got no answer from {url} within {CALL_TIMEOUT:?}; the engine's log:\n{}", engine.log()))
}

async fn call_unbounded(url: &str, function_id: &str, data: Value) -> Result<Value, Value> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let invocation_id = uuid::Uuid::new_v4().to_string();
    let frame = json!({"type": "invokefunction", "invocation_id": invocation_id, "function_id": function_id, "data": data});
    ws.send(Message::Text(frame.to_string().into())).await.expect("send the invocation");
    while let Some(frame) = ws.next().await {
        let text = match frame.expect("read from the engine") {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        if v["type"] == "invocationresult" && v["invocation_id"] == invocation_id.as_str() {
            let _ = ws.close(None).await;
            return match v.get("error") {
                Some(e) if !e.is_null() => Err(e.clone()),
                _ => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
        }
    }
    panic!("the engine closed the connection before answering {function_id}")
}

/// The function ids the engine lists under `prefix`.
pub async fn listed(engine: &RealEngine, prefix: &str) -> Vec<String> {
    let answer = call(engine, "engine::functions::list", json!({"prefix": prefix})).await.expect("engine::functions::list answers");
    let functions = answer["functions"].as_array().cloned().unwrap_or_default();
    functions.iter().filter_map(|f| f["function_id"].as_str().map(str::to_string)).collect()
}

/// The owner (`worker_name`) of every function the engine lists under `prefix`.
pub async fn owners(engine: &RealEngine, prefix: &str) -> std::collections::BTreeMap<String, String> {
    let answer = call(engine, "engine::functions::list", json!({"prefix": prefix})).await.expect("engine::functions::list answers");
    let functions = answer["functions"].as_array().cloned().unwrap_or_default();
    functions
        .iter()
        .filter_map(|f| Some((f["function_id"].as_str()?.to_string(), f["worker_name"].as_str().unwrap_or_default().to_string())))
        .collect()
}
