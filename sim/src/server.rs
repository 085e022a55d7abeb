//! The part every simulator shares: a hyper server on `127.0.0.1:0`, the request log,
//! fault injection, and the check of every request and answer against the provider's
//! vendored spec ([`crate::spec`]).

use crate::spec::contract::{Admitted, Contract};
use crate::spec::exempt::OffSpec;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// `METHOD /path`.
    pub fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
    /// A query parameter, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| percent_decode(v))
        })
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An injected answer for the next request matching `method` + `path_prefix`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: String,
    pub path_prefix: String,
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering (slow upstream).
    pub delay: Duration,
    /// Do the real work first (e.g. commit a create), then answer after `delay`: with
    /// the real answer when `status` is 0, else with this fault's.
    pub after_work: bool,
}

impl Fault {
    pub fn new(method: &str, path_prefix: &str, status: u16, body: &str) -> Self {
        Fault {
            method: method.into(),
            path_prefix: path_prefix.into(),
            status,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
            after_work: false,
        }
    }
    /// The real answer, `delay` after the real work was done.
    pub fn late_answer(method: &str, path_prefix: &str, delay: Duration) -> Self {
        Fault { after_work: true, delay, ..Fault::new(method, path_prefix, 0, "") }
    }
    /// This answer instead of the real one, after the real work was done.
    pub fn after_work(method: &str, path_prefix: &str, status: u16, body: &str) -> Self {
        Fault { after_work: true, ..Fault::new(method, path_prefix, status, body) }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

pub type Reply = Response<Full<Bytes>>;
pub type Handler = Arc<dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// A running simulator: address, log, faults. Dropping it stops the server.
pub struct Sim {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    violations: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// What the server shares with each connection.
#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Recorded>>>,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    violations: Arc<Mutex<Vec<String>>>,
    handler: Handler,
    contract: Option<&'static Contract>,
}

/// Environment variable naming a file every spec violation is appended to (one a line),
/// to collect them over a whole test run.
pub const VIOLATIONS_LOG_ENV: &str = "PROVIDER_SIMS_VIOLATIONS";

/// Environment variable naming a file each checked exchange is appended to (`<spec>
/// <operation> → <status>`, or `exempt …`): what a test run covered of each spec.
pub const CHECKED_LOG_ENV: &str = "PROVIDER_SIMS_CHECKED";

/// A note on a request (an undeclared body property), kept in the [`CHECKED_LOG_ENV`] file.
pub(crate) fn note(line: &str) {
    append(CHECKED_LOG_ENV, &format!("note {line}"));
}

fn append(env: &str, line: &str) {
    if let Some(file) = std::env::var_os(env) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
            let _ = writeln!(f, "{line}");
        }
    }
}

impl Shared {
    fn violation(&self, message: String) {
        eprintln!("provider-sims: SPEC VIOLATION: {message}");
        append(VIOLATIONS_LOG_ENV, &message);
        self.violations.lock().unwrap().push(message);
    }

    async fn answer(&self, rec: Recorded) -> Reply {
        self.log.lock().unwrap().push(rec.clone());
        let admitted = match self.contract.map(|c| c.admit(&rec)) {
            None => Admitted::Exempt,
            Some(Ok(a)) => a,
            Some(Err(v)) => {
                let message = format!("request does not match the vendored spec: {}", v.message);
                self.violation(message.clone());
                return (self.contract.unwrap().reject)(&rec, v.status, &message);
            }
        };
        let fault = {
            let mut f = self.faults.lock().unwrap();
            let pos = f.iter().position(|x| x.method == rec.method && rec.path.starts_with(&x.path_prefix));
            pos.and_then(|i| f.remove(i))
        };
        let handler = &self.handler;
        let request = rec.clone();
        let reply = match fault {
            Some(f) if f.after_work && f.status == 0 => {
                let reply = handler(rec).await;
                tokio::time::sleep(f.delay).await;
                reply
            }
            // An injected answer is the test's, not the simulator's: it is not checked.
            Some(f) => {
                if f.after_work {
                    drop(handler(rec).await);
                }
                tokio::time::sleep(f.delay).await;
                let mut b = Response::builder().status(f.status).header("content-type", "application/json");
                for (k, v) in &f.headers {
                    b = b.header(k, v);
                }
                return b.body(Full::new(Bytes::from(f.body))).unwrap();
            }
            None => handler(rec).await,
        };
        self.checked(&admitted, &request, reply).await
    }

    /// The simulator's `reply`, or a 500 naming the simulator bug when it violates the spec.
    async fn checked(&self, admitted: &Admitted, rec: &Recorded, reply: Reply) -> Reply {
        if std::env::var_os(CHECKED_LOG_ENV).is_some() {
            let line = match admitted {
                Admitted::Exempt => format!("exempt {} {}", rec.method, rec.path),
                Admitted::Op { spec, label, .. } => format!("{} {label} → {}", spec.file, reply.status().as_u16()),
            };
            append(CHECKED_LOG_ENV, &line);
        }
        if matches!(admitted, Admitted::Exempt) || reply.extensions().get::<Streamed>().is_some() {
            return reply;
        }
        let (parts, body) = reply.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let ct = parts.headers.get("content-type").and_then(|v| v.to_str().ok());
        let knob = parts.extensions.get::<OffSpec>().map(|k| k.0);
        match Contract::answer(admitted, parts.status.as_u16(), ct, &bytes, knob) {
            Ok(()) => Response::from_parts(parts, Full::new(bytes)),
            Err(why) => {
                let message = format!("simulator bug: response violates spec: {why}");
                self.violation(message.clone());
                (self.contract.unwrap().reject)(rec, 500, &message)
            }
        }
    }
}

impl Sim {
    /// Serves `handler` on 127.0.0.1 (`port` 0 = any free port), unchecked.
    pub async fn serve(port: u16, handler: Handler) -> std::io::Result<Sim> {
        Self::serve_checked(port, handler, None).await
    }

    /// Serves `handler`, checking every request and answer against `contract`'s specs.
    pub async fn serve_checked(port: u16, handler: Handler, contract: Option<&'static Contract>) -> std::io::Result<Sim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared { log: Arc::default(), faults: Arc::default(), violations: Arc::default(), handler, contract };
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (log, faults, violations) = (shared.log.clone(), shared.faults.clone(), shared.violations.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let rec = record(req).await;
                            let reply = shared.answer(rec).await;
                            Ok::<_, std::convert::Infallible>(on_the_wire(reply))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Sim { addr, log, faults, violations, stop: Some(stop) })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, the allowlist entry for this simulator.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Every spec violation so far: requests refused as the real API would refuse them,
    /// and answers of the simulator's own that the spec does not allow (answered 500).
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// The violations so far, forgotten (for a test that provoked them on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.violations.lock().unwrap())
    }

    /// Makes the next request matching `fault` get its answer instead of the simulator's.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }
}

impl Drop for Sim {
    /// A test whose simulator saw a spec violation fails here, even when the plugin
    /// recovered from the refusal (a fallback route, a retry): the real API would have
    /// refused that request too. Tests that provoke violations on purpose take them first.
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let violations = std::mem::take(&mut *self.violations.lock().unwrap_or_else(|p| p.into_inner()));
        if !violations.is_empty() && !std::thread::panicking() {
            panic!("the simulator saw {} spec violation(s):\n{}", violations.len(), violations.join("\n"));
        }
    }
}

async fn record(req: Request<Incoming>) -> Recorded {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect(),
        body,
    }
}

/// An answer whose body is written as it is produced: each piece sent on the returned
/// channel goes out as its own chunk at once; dropping the sender ends the body. (A
/// [`Reply`] carries the channel in its extensions, so handlers keep one return type.)
pub fn streamed(status: u16, content_type: &str) -> (Reply, tokio::sync::mpsc::UnboundedSender<Bytes>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut reply = raw(status, content_type, Vec::new());
    reply.extensions_mut().insert(Streamed(Arc::new(Mutex::new(Some(rx)))));
    (reply, tx)
}

/// The receiving end of a [`streamed`] body (extensions must be `Clone`).
#[derive(Clone)]
struct Streamed(Arc<Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>>>);

/// A body fed by a channel; hyper flushes what it has whenever the channel is empty.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

/// The reply as served: its own body, or the channel of a [`streamed`] one.
fn on_the_wire(reply: Reply) -> Response<BoxBody<Bytes, std::convert::Infallible>> {
    let (parts, body) = reply.into_parts();
    let channel = parts.extensions.get::<Streamed>().and_then(|s| s.0.lock().unwrap().take());
    match channel {
        Some(rx) => Response::from_parts(parts, ChannelBody(rx).boxed()),
        None => Response::from_parts(parts, body.boxed()),
    }
}

/// A JSON answer.
pub fn json(status: u16, value: &serde_json::Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).unwrap_or_default())))
        .unwrap()
}

/// A raw answer.
pub fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

pub fn empty(status: u16) -> Reply {
    raw(status, "text/plain", Vec::new())
}
