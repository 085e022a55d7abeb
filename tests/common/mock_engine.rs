//! A mock iii engine: enough of the engine's WebSocket protocol to drive the real
//! `iii-sdk` worker inside the host. Frames follow the engine's JSON shapes
//! (`type`-tagged, lower case): it sends `workerregistered` when a worker connects,
//! records `registerfunction` / `unregisterfunction` / `registertrigger` / `reattach`,
//! answers `ping` with `pong`, invokes functions with `invokefunction` (a UUID
//! `invocation_id`, `data`, and the engine-injected `_caller_worker_id` on object
//! payloads) on the connection that registered them, and matches `invocationresult`
//! frames back. Like the engine, it forgets a worker's functions when its connection
//! closes, and a test can make it lose chosen registrations, as an engine that missed a
//! frame would.
//!
//! Several workers may connect. As the engine does (`engine/src/engine/mod.rs:2153-2183`),
//! the first live registrant of an id keeps it: a second worker's `registerfunction` is
//! answered with `registrationrejected {code: "FUNCTION_NAMESPACE_CONFLICT"}` and not
//! applied, and an `unregisterfunction` from a worker that does not own the id is ignored.
//! A worker's name is the `name` of its `engine::workers::register` call.
//!
//! Engine functions a worker may call: `state::get|set|update|delete|list` (the shared
//! slot book's, answered by `sandbox_host::policy::shared_book::MemoryState`, with the
//! engine's shapes; [`MockEngine::set_state_down`] makes them fail as an unreachable state
//! adapter would), `engine::functions::list` (`{prefix?}` →
//! `{functions: [{function_id, namespace, worker_name}]}`, an unnamed owner shown by the
//! id's first segment as the engine does), `engine::workers::list`,
//! `engine::channels::create` (`{buffer_size?}` → `{writer, reader}` refs sharing one
//! key) and `publish` (`{topic, data}`, recorded); anything else is "function not found".
//! Channels are served as the engine serves them (`workers/worker/ws_handler.rs`):
//! `GET /ws/channels/{id}?key=&dir=read|write` on the same port, 404 for an unknown id or
//! a wrong key, each end taken once (a second taker is closed at once), frames relayed
//! through a bounded queue (a full one holds the writer), Close to the reader once the
//! writer closed and the queue is drained.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An invocation's error, as the engine relays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeError {
    pub code: String,
    pub message: String,
}

struct Registered {
    frame: Value,
    conn: u32,
}

struct Conn {
    tx: mpsc::UnboundedSender<Message>,
    /// From its `engine::workers::register`.
    name: Option<String>,
}

/// One channel's queue; each end is taken by the socket that opens it.
struct Channel {
    key: String,
    writer: Option<mpsc::Sender<Message>>,
    reader: Option<mpsc::Receiver<Message>>,
}

enum End {
    Write(mpsc::Sender<Message>),
    Read(mpsc::Receiver<Message>),
    /// Already taken: closed at once.
    Taken,
}

#[derive(Default)]
struct State {
    functions: Mutex<BTreeMap<String, Registered>>,
    triggers: Mutex<Vec<Value>>,
    frames: Mutex<Vec<Value>>,
    conns: Mutex<BTreeMap<u32, Conn>>,
    /// Invocations sent by the mock → (connection, waiter).
    pending: Mutex<HashMap<String, (u32, oneshot::Sender<Value>)>>,
    connections: AtomicU32,
    /// Ids whose next `registerfunction` is recorded as a frame but not applied.
    lose_next: Mutex<BTreeSet<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// `publish` calls' payloads, in arrival order.
    published: Mutex<Vec<Value>>,
    /// Ids `engine::functions::list` leaves out until a registration of them is refused.
    hidden: Mutex<BTreeSet<String>>,
    /// `state::*`, shared by every worker.
    state: sandbox_host::policy::shared_book::MemoryState,
    /// Set: every `state::*` call fails.
    state_down: std::sync::atomic::AtomicBool,
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
                        tokio::spawn(accept(st.clone(), stream));
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
        self.close_all();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    fn close_all(&self) {
        if let Some(s) = self.stop.lock().unwrap().take() {
            let _ = s.send(());
        }
        for (_, conn) in std::mem::take(&mut *self.state.conns.lock().unwrap()) {
            let _ = conn.tx.send(Message::Close(None));
        }
    }

    pub fn function_ids(&self) -> Vec<String> {
        self.state.functions.lock().unwrap().keys().cloned().collect()
    }

    /// The `registerfunction` frame that registered `id`.
    pub fn function(&self, id: &str) -> Option<Value> {
        self.state.functions.lock().unwrap().get(id).map(|r| r.frame.clone())
    }

    /// The name of the worker that owns `id` (`None`: unregistered, or an unnamed worker).
    pub fn owner(&self, id: &str) -> Option<String> {
        let conn = self.state.functions.lock().unwrap().get(id)?.conn;
        self.state.conns.lock().unwrap().get(&conn)?.name.clone()
    }

    pub fn triggers(&self) -> Vec<Value> {
        self.state.triggers.lock().unwrap().clone()
    }

    /// Every frame the workers sent, in order.
    pub fn frames(&self) -> Vec<Value> {
        self.state.frames.lock().unwrap().clone()
    }

    /// The payloads of every `publish` a worker called, in order.
    pub fn published(&self) -> Vec<Value> {
        self.state.published.lock().unwrap().clone()
    }

    pub fn connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Workers connected now (`connections` counts every connection ever accepted).
    pub fn live_connections(&self) -> usize {
        self.state.conns.lock().unwrap().len()
    }

    /// Leaves `id` out of `engine::functions::list` until another worker's registration
    /// of it is refused: as if its owner registered it just after a worker listed.
    pub fn hide_until_contested(&self, id: &str) {
        self.state.hidden.lock().unwrap().insert(id.to_string());
    }

    /// Makes every `state::*` call fail (`STATE_ERROR`), as a state adapter that lost its
    /// store would, or answer again.
    pub fn set_state_down(&self, down: bool) {
        self.state.state_down.store(down, Ordering::SeqCst);
    }

    /// The value at `scope`/`key` in the engine's state (`null` when unset).
    pub fn state_value(&self, scope: &str, key: &str) -> Value {
        self.state.state.answer("state::get", &json!({"scope": scope, "key": key})).unwrap_or(Value::Null)
    }

    /// A channel as `engine::channels::create` makes it: (writer ref, reader ref).
    pub fn create_channel(&self) -> (Value, Value) {
        create_channel(&self.state, None)
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
        let Some(conn) = self.state.functions.lock().unwrap().get(function_id).map(|r| r.conn) else {
            return Err(InvokeError {
                code: "function_not_found".into(),
                message: format!("Function {function_id} not found in namespace default."),
            });
        };
        if let Value::Object(m) = &mut data {
            m.insert("_caller_worker_id".into(), json!("6f1c1d2e-0000-4000-8000-0000000000aa"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.state.pending.lock().unwrap().insert(id.clone(), (conn, tx));
        let frame = json!({"type": "invokefunction", "invocation_id": id, "function_id": function_id, "data": data});
        let out = self.state.conns.lock().unwrap().get(&conn).map(|c| c.tx.clone()).expect("the owning worker is connected");
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
        self.close_all();
    }
}

fn create_channel(st: &State, buffer: Option<u64>) -> (Value, Value) {
    // The engine's bounds (`workers/engine_fn/mod.rs:1552-1568`).
    let size = buffer.unwrap_or(64).clamp(1, 1024) as usize;
    let (writer, reader) = mpsc::channel(size);
    let id = uuid::Uuid::new_v4().to_string();
    let key = uuid::Uuid::new_v4().to_string();
    st.channels.lock().unwrap().insert(id.clone(), Channel { key: key.clone(), writer: Some(writer), reader: Some(reader) });
    let end = |direction: &str| json!({"channel_id": id, "access_key": key, "direction": direction});
    (end("write"), end("read"))
}

/// The function ids and owner names `engine::functions::list` shows.
fn list_functions(st: &State, prefix: &str) -> Vec<Value> {
    // Lock order everywhere: functions, then conns.
    let functions = st.functions.lock().unwrap();
    let conns = st.conns.lock().unwrap();
    let hidden = st.hidden.lock().unwrap();
    functions
        .iter()
        .filter(|(id, _)| id.starts_with(prefix) && !hidden.contains(*id))
        .map(|(id, r)| {
            let name = conns.get(&r.conn).and_then(|c| c.name.clone());
            let name = name.unwrap_or_else(|| id.split("::").next().unwrap_or_default().to_string());
            json!({"function_id": id, "namespace": "default", "worker_name": name})
        })
        .collect()
}

/// A worker's call of an engine function: its side effects, and the answer (`None` for
/// a call that wants none, i.e. without `invocation_id`).
fn answer_engine_call(st: &State, conn: u32, call: &Value) -> Option<Value> {
    let function_id = call["function_id"].as_str().unwrap_or_default();
    let data = &call["data"];
    let result = match function_id {
        "engine::workers::register" => {
            if let Some(c) = st.conns.lock().unwrap().get_mut(&conn) {
                c.name = data["name"].as_str().map(str::to_string);
            }
            Ok(Value::Null)
        }
        "engine::functions::list" => Ok(json!({"functions": list_functions(st, data["prefix"].as_str().unwrap_or_default())})),
        "engine::workers::list" => {
            let functions = st.functions.lock().unwrap();
            let workers: Vec<Value> = st
                .conns
                .lock()
                .unwrap()
                .iter()
                .map(|(n, c)| {
                    let count = functions.values().filter(|r| r.conn == *n).count();
                    json!({"id": format!("worker-{n}"), "name": c.name, "namespace": "default", "function_count": count})
                })
                .collect();
            Ok(json!({"workers": workers}))
        }
        "engine::channels::create" => {
            let (writer, reader) = create_channel(st, data["buffer_size"].as_u64());
            Ok(json!({"writer": writer, "reader": reader}))
        }
        "publish" => {
            st.published.lock().unwrap().push(data.clone());
            Ok(Value::Null)
        }
        f if f.starts_with("state::") && st.state_down.load(Ordering::SeqCst) => {
            Err(json!({"code": "STATE_ERROR", "message": "the state adapter is unavailable"}))
        }
        f if f.starts_with("state::") => st.state.answer(f, data).map_err(|(code, message)| json!({"code": code, "message": message})),
        _ => Err(json!({"code": "function_not_found", "message": format!("Function {function_id} not found in namespace default.")})),
    };
    let invocation_id = call.get("invocation_id").filter(|id| !id.is_null())?;
    let mut answer = json!({"type": "invocationresult", "invocation_id": invocation_id, "function_id": function_id});
    match result {
        Ok(v) => answer["result"] = v,
        Err(e) => answer["error"] = e,
    }
    Some(answer)
}

/// Takes the end of a channel a `/ws/channels/{id}?key=&dir=` request names; `None` for
/// an unknown channel or a wrong key (the engine's 404).
fn take_end(st: &State, uri: &tokio_tungstenite::tungstenite::http::Uri) -> Option<End> {
    let id = uri.path().strip_prefix("/ws/channels/")?;
    let query: HashMap<&str, &str> = uri.query().unwrap_or_default().split('&').filter_map(|kv| kv.split_once('=')).collect();
    let mut channels = st.channels.lock().unwrap();
    let channel = channels.get_mut(id)?;
    // The SDK percent-encodes the key; the mock's keys are UUIDs, which need no encoding.
    if query.get("key").copied() != Some(channel.key.as_str()) {
        return None;
    }
    let end = match query.get("dir").copied() {
        Some("write") => channel.writer.take().map(End::Write),
        Some("read") => channel.reader.take().map(End::Read),
        _ => return None,
    };
    Some(end.unwrap_or(End::Taken))
}

async fn accept(st: Arc<State>, stream: tokio::net::TcpStream) {
    let end: Arc<Mutex<Option<End>>> = Arc::default();
    let (st2, slot) = (st.clone(), end.clone());
    // The signature tungstenite's handshake callback requires.
    #[allow(clippy::result_large_err)]
    let route = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if !req.uri().path().starts_with("/ws/channels/") {
            return Ok(resp);
        }
        match take_end(&st2, req.uri()) {
            Some(e) => {
                *slot.lock().unwrap() = Some(e);
                Ok(resp)
            }
            None => {
                let mut refused = ErrorResponse::new(Some("channel not found".into()));
                *refused.status_mut() = StatusCode::NOT_FOUND;
                Err(refused)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, route).await else { return };
    let end = end.lock().unwrap().take();
    match end {
        None => serve_worker(st, ws).await,
        Some(End::Write(tx)) => channel_writer(ws, tx).await,
        Some(End::Read(rx)) => channel_reader(ws, rx).await,
        Some(End::Taken) => {
            let mut ws = ws;
            let _ = ws.close(None).await;
        }
    }
}

/// The writer's frames into the queue; a full queue holds the writer (backpressure), a
/// gone reader ends the socket. On Close, a moment for what is in flight, then the queue's
/// sender is dropped, which closes the reader once it drained.
async fn channel_writer(ws: WebSocketStream<tokio::net::TcpStream>, tx: mpsc::Sender<Message>) {
    let (_, mut source) = ws.split();
    while let Some(Ok(msg)) = source.next().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && tx.send(msg).await.is_err() {
            return;
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

async fn channel_reader(ws: WebSocketStream<tokio::net::TcpStream>, mut rx: mpsc::Receiver<Message>) {
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            },
            // The reader went away: dropping the queue makes the writer's next send fail.
            incoming = source.next() => {
                if !matches!(incoming, Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Binary(_)))) {
                    return;
                }
            }
        }
    }
}

async fn serve_worker(st: Arc<State>, ws: WebSocketStream<tokio::net::TcpStream>) {
    let n = st.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    st.conns.lock().unwrap().insert(n, Conn { tx: tx.clone(), name: None });
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
            "registerfunction" => register(&st, n, &tx, &v),
            "unregisterfunction" => {
                let id = v["id"].as_str().unwrap_or_default();
                let mut functions = st.functions.lock().unwrap();
                // The engine's ownership gate: only the owner's unregister counts.
                if functions.get(id).is_some_and(|r| r.conn == n) {
                    functions.remove(id);
                }
            }
            "registertrigger" => st.triggers.lock().unwrap().push(v.clone()),
            "ping" => {
                let _ = tx.send(Message::Text(json!({"type": "pong"}).to_string().into()));
            }
            "invokefunction" => {
                if let Some(answer) = answer_engine_call(&st, n, &v) {
                    let _ = tx.send(Message::Text(answer.to_string().into()));
                }
            }
            "invocationresult" => {
                let id = v["invocation_id"].as_str().unwrap_or_default().to_string();
                if let Some((_, waiter)) = st.pending.lock().unwrap().remove(&id) {
                    let _ = waiter.send(v.clone());
                }
            }
            _ => {}
        }
        if writer.is_finished() {
            break;
        }
    }
    // Like the engine: a gone worker's functions are gone, and so are calls waiting on it.
    st.conns.lock().unwrap().remove(&n);
    st.functions.lock().unwrap().retain(|_, r| r.conn != n);
    st.pending.lock().unwrap().retain(|_, (conn, _)| *conn != n);
    writer.abort();
}

/// The engine's claim: the first live registrant keeps an id.
fn register(st: &State, n: u32, tx: &mpsc::UnboundedSender<Message>, frame: &Value) {
    let id = frame["id"].as_str().unwrap_or_default().to_string();
    if st.lose_next.lock().unwrap().remove(&id) {
        return;
    }
    let mut functions = st.functions.lock().unwrap();
    if let Some(owner) = functions.get(&id).map(|r| r.conn).filter(|c| *c != n) {
        if st.conns.lock().unwrap().contains_key(&owner) {
            let rejected = json!({
                "type": "registrationrejected",
                "code": "FUNCTION_NAMESPACE_CONFLICT",
                "namespace": "default",
                "function_id": id,
                "owner_worker_id": format!("worker-{owner}"),
            });
            let _ = tx.send(Message::Text(rejected.to_string().into()));
            st.hidden.lock().unwrap().remove(&id);
            return;
        }
    }
    functions.insert(id, Registered { frame: frame.clone(), conn: n });
}
