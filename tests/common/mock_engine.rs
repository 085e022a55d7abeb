//! A mock iii engine: enough of the engine's WebSocket protocol to drive the real
//! `iii-sdk` worker inside the host. Frames follow the engine's JSON shapes
//! (`type`-tagged, lower case): it sends `workerregistered` when a worker connects,
//! records `registerfunction` / `unregisterfunction` / `registertrigger` / `reattach`,
//! answers `ping` with `pong`, invokes functions with `invokefunction` (a UUID
//! `invocation_id`, `data`, and the engine-injected `_caller_worker_id` on object
//! payloads), and matches `invocationresult` frames back. Like the engine, it forgets a
//! worker's functions when its connection closes, and answers the worker's own calls of
//! `engine::functions::list` (`{prefix?}` → `{functions: [{function_id, namespace,
//! worker_name}]}`; any other engine call is "function not found"). A test can make it
//! lose chosen registrations, as an engine that missed a frame would.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// An invocation's error, as the engine relays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeError {
    pub code: String,
    pub message: String,
}

#[derive(Default)]
struct State {
    functions: Mutex<BTreeMap<String, Value>>,
    triggers: Mutex<Vec<Value>>,
    frames: Mutex<Vec<Value>>,
    outbound: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    connections: AtomicU32,
    /// Ids whose next `registerfunction` is recorded as a frame but not applied.
    lose_next: Mutex<BTreeSet<String>>,
}

pub struct MockEngine {
    pub port: u16,
    state: Arc<State>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl MockEngine {
    /// Listens on 127.0.0.1:`port` (0 = any free port).
    pub async fn start(port: u16) -> MockEngine {
        Self::start_losing(port, &[]).await
    }

    /// As `start`, but the first registration of each of `ids` is lost (the frame is
    /// recorded, the function is not registered).
    pub async fn start_losing(port: u16, ids: &[String]) -> MockEngine {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind mock engine");
        let port = listener.local_addr().unwrap().port();
        let state: Arc<State> = Arc::default();
        state.lose_next.lock().unwrap().extend(ids.iter().cloned());
        let (stop, mut stopped) = oneshot::channel::<()>();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(serve(st.clone(), stream));
                    }
                }
            }
        });
        MockEngine { port, state, stop: Mutex::new(Some(stop)) }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Stops listening and drops the worker's connection (an engine crash).
    pub async fn stop(self) -> u16 {
        self.crash().await;
        self.port
    }

    /// As `stop`, through a shared reference (calls may still hold the engine).
    pub async fn crash(&self) {
        if let Some(s) = self.stop.lock().unwrap().take() {
            let _ = s.send(());
        }
        if let Some(tx) = self.state.outbound.lock().unwrap().take() {
            let _ = tx.send(Message::Close(None));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub fn function_ids(&self) -> Vec<String> {
        self.state.functions.lock().unwrap().keys().cloned().collect()
    }

    pub fn function(&self, id: &str) -> Option<Value> {
        self.state.functions.lock().unwrap().get(id).cloned()
    }

    pub fn triggers(&self) -> Vec<Value> {
        self.state.triggers.lock().unwrap().clone()
    }

    /// Every frame the worker sent, in order.
    pub fn frames(&self) -> Vec<Value> {
        self.state.frames.lock().unwrap().clone()
    }

    pub fn connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Waits until exactly `ids` are registered (order-insensitive).
    pub async fn wait_for_functions(&self, ids: &[String], timeout: Duration) {
        let mut want: Vec<String> = ids.to_vec();
        want.sort();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.function_ids() == want {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("registered functions {:?}, expected {:?}", self.function_ids(), want);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Invokes `function_id` with `data` as the engine would (adding `_caller_worker_id`).
    pub async fn invoke(&self, function_id: &str, data: Value) -> Result<Value, InvokeError> {
        self.invoke_with_timeout(function_id, data, Duration::from_secs(60)).await
    }

    pub async fn invoke_with_timeout(&self, function_id: &str, mut data: Value, timeout: Duration) -> Result<Value, InvokeError> {
        if !self.state.functions.lock().unwrap().contains_key(function_id) {
            return Err(InvokeError {
                code: "function_not_found".into(),
                message: format!("Function {function_id} not found in namespace default."),
            });
        }
        if let Value::Object(m) = &mut data {
            m.insert("_caller_worker_id".into(), json!("6f1c1d2e-0000-4000-8000-0000000000aa"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.state.pending.lock().unwrap().insert(id.clone(), tx);
        let frame = json!({"type": "invokefunction", "invocation_id": id, "function_id": function_id, "data": data});
        let out = self.state.outbound.lock().unwrap().clone().expect("no worker connected");
        out.send(Message::Text(frame.to_string().into())).expect("worker connection closed");
        let result = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| InvokeError {
                code: "timeout".into(),
                message: format!("no invocationresult for {function_id} within {timeout:?}"),
            })?
            .map_err(|_| InvokeError { code: "connection_lost".into(), message: "the worker disconnected".into() })?;
        match result.get("error") {
            Some(e) => Err(InvokeError {
                code: e["code"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            }),
            None => Ok(result.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}

impl Drop for MockEngine {
    fn drop(&mut self) {
        if let Some(s) = self.stop.lock().unwrap().take() {
            let _ = s.send(());
        }
        if let Some(tx) = self.state.outbound.lock().unwrap().take() {
            let _ = tx.send(Message::Close(None));
        }
    }
}

/// The answer to a worker's call of an engine function; `None` for a call that wants
/// none (no `invocation_id`).
fn answer_engine_call(st: &State, call: &Value) -> Option<Value> {
    let invocation_id = call.get("invocation_id").filter(|id| !id.is_null())?;
    let function_id = call["function_id"].as_str().unwrap_or_default();
    let mut answer = json!({"type": "invocationresult", "invocation_id": invocation_id, "function_id": function_id});
    if function_id == "engine::functions::list" {
        let prefix = call["data"]["prefix"].as_str().unwrap_or_default();
        let functions: Vec<Value> = st
            .functions
            .lock()
            .unwrap()
            .keys()
            .filter(|id| id.starts_with(prefix))
            .map(|id| json!({"function_id": id, "namespace": "default", "worker_name": "mock-worker"}))
            .collect();
        answer["result"] = json!({"functions": functions});
    } else {
        answer["error"] =
            json!({"code": "function_not_found", "message": format!("Function {function_id} not found in namespace default.")});
    }
    Some(answer)
}

async fn serve(st: Arc<State>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let n = st.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    *st.outbound.lock().unwrap() = Some(tx.clone());
    let registered =
        json!({"type": "workerregistered", "worker_id": format!("worker-{n}"), "reattach_token": format!("token-{n}"), "features": []});
    let _ = tx.send(Message::Text(registered.to_string().into()));
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(msg)) = source.next().await {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        st.frames.lock().unwrap().push(v.clone());
        match v["type"].as_str().unwrap_or_default() {
            "registerfunction" => {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                if !st.lose_next.lock().unwrap().remove(&id) {
                    st.functions.lock().unwrap().insert(id, v.clone());
                }
            }
            "unregisterfunction" => {
                st.functions.lock().unwrap().remove(v["id"].as_str().unwrap_or_default());
            }
            "registertrigger" => st.triggers.lock().unwrap().push(v.clone()),
            "ping" => {
                let _ = tx.send(Message::Text(json!({"type": "pong"}).to_string().into()));
            }
            "invokefunction" => {
                if let Some(answer) = answer_engine_call(&st, &v) {
                    let _ = tx.send(Message::Text(answer.to_string().into()));
                }
            }
            "invocationresult" => {
                let id = v["invocation_id"].as_str().unwrap_or_default().to_string();
                if let Some(waiter) = st.pending.lock().unwrap().remove(&id) {
                    let _ = waiter.send(v.clone());
                }
            }
            _ => {}
        }
        if writer.is_finished() {
            break;
        }
    }
    // Like the engine: a gone worker's functions are gone.
    st.functions.lock().unwrap().clear();
    st.pending.lock().unwrap().clear();
    writer.abort();
}
