//! Outbound HTTP policy: the one `WasiHttpHooks` impl through which a plugin's requests
//! leave the host. It decides (allowlist on the real destination authority, then the
//! fan-out bounds of `fanout.rs`), records (denials, refusals, request counts) and only
//! then delegates to the upstream client, after injecting credentials and clamping the
//! guest's timeouts to the policy's. What comes back passes `redact.rs` (no credential
//! echo) and [`LimitedBody`] (size and idle bounds) before the guest reads it.
//!
//! Deciding and reporting are separate: [`EgressPolicy::decide`] is pure; the per-call
//! [`EgressRecord`] collects what happened so the host can answer S703 or S704 even when
//! the guest swallowed the error (wstd reports a denial as "connection reset").

use super::allowed_hosts::{entry_for, AllowList};
use super::credentials::Credential;
use super::fanout::{FanoutRefusal, UpstreamFanout, UpstreamSlot};
use super::plugin_text::{bounded, MAX_DESTINATION_BYTES};
use super::redact::{can_inspect, Redactor};
use http::uri::Scheme;
use http::{HeaderName, Uri};
use std::future::Future as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks, DEFAULT_FORBIDDEN_HEADERS};

/// Upper bounds on upstream waits; a guest may ask for less, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts { connect: Duration::from_secs(10), first_byte: Duration::from_secs(60), between_bytes: Duration::from_secs(60) }
    }
}

impl UpstreamTimeouts {
    /// Bounds for a call whose command may legitimately run `busy` before answering
    /// (an exec's `timeout_ms`): waits for the first byte and between bytes may last
    /// that long plus `grace`; the call's wall-clock budget still caps the whole call.
    pub fn stretched(self, busy: Duration, grace: Duration) -> Self {
        UpstreamTimeouts {
            connect: self.connect,
            first_byte: self.first_byte.max(busy + grace),
            between_bytes: self.between_bytes.max(busy + grace),
        }
    }

    /// The guest's options clamped to these bounds.
    pub fn clamp(&self, guest: Option<RequestOptions>) -> RequestOptions {
        let g = guest.unwrap_or_default();
        let pick = |asked: Option<Duration>, cap: Duration| Some(asked.map_or(cap, |a| a.min(cap)));
        RequestOptions {
            connect_timeout: pick(g.connect_timeout, self.connect),
            first_byte_timeout: pick(g.first_byte_timeout, self.first_byte),
            between_bytes_timeout: pick(g.between_bytes_timeout, self.between_bytes),
        }
    }
}

/// A refused request, as reported to the caller and the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `scheme://host:port` the plugin tried to reach.
    pub destination: String,
    /// The `allowed_hosts` entry that would admit it.
    pub entry: String,
    /// True when the name was allowed but resolved only to non-public addresses.
    pub private_address: bool,
}

/// A plugin's resolved egress policy, shared by all its calls.
#[derive(Debug)]
pub struct EgressPolicy {
    pub plugin: Arc<str>,
    pub allow: AllowList,
    pub credentials: Vec<Credential>,
    pub timeouts: UpstreamTimeouts,
    /// Upstream response bodies are cut off past this many bytes.
    pub max_body_bytes: u64,
    /// This plugin's pooled connections; `None` sends each request on a fresh
    /// connection (`SANDBOX_UPSTREAM_POOL=off`, for comparison and as an escape hatch).
    pub client: Option<crate::runtime::upstream::UpstreamClient>,
    /// Requests per call and in flight across calls (S704 beyond either).
    pub fanout: UpstreamFanout,
    /// Removes the credentials from what upstreams answer.
    pub redactor: Arc<Redactor>,
    /// Sees each request sent, when switched on (`sandbox-host conformance`); off, free.
    pub observer: super::egress_observer::EgressObserver,
}

/// Where a request may go, decided before anything is sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by allowlist entry `entry`; indexes into `credentials` of those to inject.
    Allow {
        entry: String,
        credentials: Vec<usize>,
    },
    Deny(Denial),
}

impl EgressPolicy {
    pub fn decide(&self, uri: &Uri) -> Decision {
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let Some(authority) = uri.authority() else {
            return Decision::Deny(Denial { destination: uri.to_string(), entry: "<no authority>".into(), private_address: false });
        };
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if scheme == Scheme::HTTP { 80 } else { 443 });
        let Some(matched) = self.allow.matching(&host, port) else {
            return Decision::Deny(Denial {
                destination: format!("{scheme}://{host}:{port}"),
                entry: entry_for(&host, port),
                private_address: false,
            });
        };
        let https = scheme == Scheme::HTTPS;
        let credentials = self
            .credentials
            .iter()
            .enumerate()
            .filter(|(_, c)| if https { c.hosts.allows(&host, port) } else { c.plain_http_hosts.allows(&host, port) })
            .map(|(i, _)| i)
            .collect();
        Decision::Allow { entry: matched.to_string(), credentials }
    }

    /// Header names the guest may not set: the defaults plus every credential header.
    pub fn forbidden_headers(&self) -> Vec<HeaderName> {
        DEFAULT_FORBIDDEN_HEADERS.iter().cloned().chain(self.credentials.iter().map(|c| c.header.clone())).collect()
    }
}

/// Denials kept (and logged) per call: the first is the caller's S703, a few more help
/// the operator; the rest of a loop of denied requests is not worth memory or log.
const MAX_RECORDED_DENIALS: usize = 16;

/// What one call's requests did; read by the host after the call.
#[derive(Debug, Default)]
pub struct EgressRecord {
    denials: Mutex<Vec<Denial>>,
    requests: AtomicU64,
    /// Per matched allowlist entry: (requests, response body bytes).
    per_host: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
    /// Set when an upstream body was cut off at the limit.
    body_cut: std::sync::atomic::AtomicBool,
    /// The first fan-out bound this call hit; every later request is refused too.
    fanout_refusal: Mutex<Option<FanoutRefusal>>,
    /// Requests refused by a fan-out bound.
    fanout_refused: AtomicU64,
    /// Credential occurrences removed from upstream responses.
    redactions: Arc<AtomicU64>,
}

impl EgressRecord {
    /// (allowlist entry, requests, response bytes) per upstream host pattern.
    pub fn per_host(&self) -> Vec<(String, u64, u64)> {
        self.per_host.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(h, (n, b))| (h.clone(), *n, *b)).collect()
    }
    pub fn body_cut(&self) -> bool {
        self.body_cut.load(Ordering::Relaxed)
    }
    fn count_request(&self, host: &str) {
        self.per_host.lock().unwrap_or_else(|p| p.into_inner()).entry(host.to_string()).or_default().0 += 1;
    }
    fn count_bytes(&self, host: &str, n: u64) {
        self.per_host.lock().unwrap_or_else(|p| p.into_inner()).entry(host.to_string()).or_default().1 += n;
    }
    pub fn denials(&self) -> Vec<Denial> {
        self.denials.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Records a denial; false once [`MAX_RECORDED_DENIALS`] are kept (the caller then
    /// stays quiet: a loop of denied requests must not flood the log or host memory).
    fn deny(&self, d: Denial) -> bool {
        let mut denials = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        if denials.len() >= MAX_RECORDED_DENIALS {
            return false;
        }
        denials.push(d);
        true
    }
    /// The fan-out bound this call hit, if any (the call then ends with S704).
    pub fn fanout_refusal(&self) -> Option<FanoutRefusal> {
        *self.fanout_refusal.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// How many of this call's requests a fan-out bound refused.
    pub fn fanout_refused(&self) -> u64 {
        self.fanout_refused.load(Ordering::Relaxed)
    }
    /// How many credential occurrences were removed from this call's upstream responses.
    pub fn redactions(&self) -> u64 {
        self.redactions.load(Ordering::Relaxed)
    }
    /// Records a fan-out refusal; true for the call's first (the one worth a log line).
    fn refuse(&self, r: FanoutRefusal) -> bool {
        self.fanout_refused.fetch_add(1, Ordering::Relaxed);
        let mut first = self.fanout_refusal.lock().unwrap_or_else(|p| p.into_inner());
        let is_first = first.is_none();
        first.get_or_insert(r);
        is_first
    }
}

/// The hooks placed in each call's Store.
pub struct EgressHooks {
    pub policy: Arc<EgressPolicy>,
    pub record: Arc<EgressRecord>,
    /// This call's bounds: the policy's, stretched for a long exec.
    pub timeouts: UpstreamTimeouts,
    /// This call's largest upstream body: the policy's, or none for an exec (see
    /// `runtime/invoke.rs`).
    pub max_body_bytes: u64,
    /// This call is a `list`: its requests count against the list budget.
    pub listing: bool,
    forbidden: Arc<[HeaderName]>,
}

impl EgressHooks {
    pub fn new(policy: Arc<EgressPolicy>, record: Arc<EgressRecord>) -> Self {
        let forbidden = policy.forbidden_headers().into();
        EgressHooks { timeouts: policy.timeouts, max_body_bytes: policy.max_body_bytes, listing: false, policy, record, forbidden }
    }

    /// A fan-out slot for the next request of this call, or the bound that refuses it.
    fn admit(&self) -> Result<UpstreamSlot, FanoutRefusal> {
        if let Some(earlier) = self.record.fanout_refusal() {
            return Err(earlier);
        }
        self.policy.fanout.admit(self.record.requests(), self.listing)
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<(http::Response<WasiBody>, Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>), HttpError>,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let forbidden = self.forbidden.clone();
        Arc::new(move |name| forbidden.contains(name))
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let inject = match self.policy.decide(request.uri()) {
            Decision::Deny(denial) => {
                let (destination, entry) = (
                    bounded(&denial.destination, MAX_DESTINATION_BYTES).into_owned(),
                    bounded(&denial.entry, MAX_DESTINATION_BYTES).into_owned(),
                );
                if self.record.deny(denial) {
                    tracing::warn!(
                        plugin = %self.policy.plugin,
                        %destination,
                        "plugin `{}` tried to reach {destination} which is not in its egress allowlist; if that is intended, add \
                         \"{entry}\" to allowed_hosts in plugins/{}.toml",
                        self.policy.plugin, self.policy.plugin
                    );
                }
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
            Decision::Allow { entry, credentials } => (entry, credentials),
        };
        let (entry, inject) = inject;
        let slot = match self.admit() {
            Ok(slot) => slot,
            Err(refusal) => {
                if self.record.refuse(refusal) {
                    tracing::warn!(
                        plugin = %self.policy.plugin,
                        limit = refusal.as_str(),
                        "plugin `{}` {}; the request was refused before it was sent, as will be the call's later ones, \
                         and the call will fail with S704 ({} in plugins/{}.toml)",
                        self.policy.plugin, refusal.what(), refusal.key(), self.policy.plugin
                    );
                }
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
        };
        self.record.requests.fetch_add(1, Ordering::Relaxed);
        // Metrics are keyed by the allowlist entry that matched (`*.e2b.app`), not the
        // host itself, so per-sandbox host names cannot grow them without bound.
        let authority = request.uri().authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
        self.record.count_request(&entry);
        self.policy.observer.observe(request.method(), request.uri());
        for i in inject {
            let cred = &self.policy.credentials[i];
            // A credential that is not ready was already refused before the call (S503).
            if let Some(v) = cred.header_value() {
                request.headers_mut().insert(cred.header.clone(), v.clone());
            }
        }
        let redacting = !self.policy.redactor.is_empty();
        if redacting {
            // A compressed answer would hide an echoed credential from the redactor.
            request.headers_mut().insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
        }
        let options = self.timeouts.clamp(options);
        let (record, limit, policy) = (self.record.clone(), self.max_body_bytes, self.policy.clone());
        let destination =
            bounded(&format!("{}://{authority}", request.uri().scheme_str().unwrap_or("https")), MAX_DESTINATION_BYTES).into_owned();
        Box::new(async move {
            use http_body_util::BodyExt;
            let first_byte = options.first_byte_timeout.unwrap_or(policy.timeouts.first_byte);
            let between = options.between_bytes_timeout.unwrap_or(policy.timeouts.between_bytes);
            let res: http::Response<WasiBody> = match &policy.client {
                Some(client) => match client.send(request, first_byte).await {
                    Err(HttpError::DestinationIpProhibited) => {
                        let warning = format!("plugin `{}` tried to reach {destination}, whose name resolves only to non-public addresses; set allow_private_networks = true in plugins/{}.toml if that is intended", policy.plugin, policy.plugin);
                        if record.deny(Denial { entry: authority.clone(), destination: destination.clone(), private_address: true }) {
                            tracing::warn!(plugin = %policy.plugin, %destination, "{warning}");
                        }
                        return Err(HttpError::DestinationIpProhibited);
                    }
                    other => other?,
                }
                .map(|body| {
                    body.map_err(|e| if e.is_timeout() { HttpError::ConnectionReadTimeout } else { HttpError::HttpProtocolError }).boxed_unsync()
                }),
                None => {
                    let (res, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    tokio::spawn(io);
                    res.map(|b| b.boxed_unsync())
                }
            };
            let (mut parts, inner) = res.into_parts();
            let mut body =
                LimitedBody { inner, seen: 0, limit, record: record.clone(), entry, between, idle: None, slot: Some(slot) }.boxed_unsync();
            if redacting {
                record.redactions.fetch_add(policy.redactor.redact_headers(&mut parts.headers), Ordering::Relaxed);
                if !can_inspect(&parts.headers) {
                    tracing::warn!(plugin = %policy.plugin, %destination, "{destination} answered with a content-encoding the host cannot search for credentials; the body was withheld from plugin `{}`", policy.plugin);
                    return Err(HttpError::HttpProtocolError);
                }
                body = policy.redactor.body(body, record.redactions.clone()).boxed_unsync();
            }
            let res = http::Response::from_parts(parts, body);
            // The pooled client owns its connections; there is no per-request I/O task.
            Ok((res, Box::new(async { Ok(()) }) as Box<dyn std::future::Future<Output = _> + Send>))
        })
    }
}

/// An upstream response body that counts what passes (for metrics) and fails once it
/// exceeds the plugin's limit, so a huge or endless body cannot fill the guest.
struct LimitedBody {
    inner: WasiBody,
    seen: u64,
    limit: u64,
    record: Arc<EgressRecord>,
    /// The allowlist entry the request matched (the metrics key).
    entry: String,
    /// Longest wait between two frames.
    between: Duration,
    idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The request's place among the plugin's requests in flight, returned once the body
    /// has ended (or is dropped).
    slot: Option<UpstreamSlot>,
}

impl http_body::Body for LimitedBody {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            std::task::Poll::Ready(f) => {
                this.idle = None;
                f
            }
            std::task::Poll::Pending => {
                let between = this.between;
                let idle = this.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(between)));
                if idle.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                }
                return std::task::Poll::Pending;
            }
        };
        if !matches!(frame, Some(Ok(_))) {
            this.slot = None;
        }
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                let n = data.len() as u64;
                this.seen += n;
                this.record.count_bytes(&this.entry, n);
                if this.seen > this.limit {
                    this.record.body_cut.store(true, Ordering::Relaxed);
                    return std::task::Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.limit)))));
                }
            }
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::credentials::CredentialValue;

    const SECRET: &str = "sk-egress-unit-0c4f9e";

    fn policy() -> EgressPolicy {
        let credentials = vec![Credential {
            name: "api-key".into(),
            env_var: Some("E2B_API_KEY".into()),
            header: HeaderName::from_static("x-api-key"),
            hosts: AllowList::parse(&["api.e2b.app"]).unwrap(),
            plain_http_hosts: AllowList::parse(&["127.0.0.1:9000"]).unwrap(),
            value: CredentialValue::from_env("", Some(SECRET.into())),
        }];
        EgressPolicy {
            plugin: "e2b".into(),
            allow: AllowList::parse(&["api.e2b.app", "*.e2b.app", "127.0.0.1:9000"]).unwrap(),
            redactor: Arc::new(Redactor::for_secrets(credentials.iter().filter_map(Credential::secret))),
            credentials,
            timeouts: UpstreamTimeouts::default(),
            max_body_bytes: 1 << 20,
            client: Some(crate::runtime::upstream::UpstreamClient::new(Duration::from_secs(1), false, 16)),
            fanout: UpstreamFanout::new(32, 128, 16),
            observer: Default::default(),
        }
    }

    #[test]
    fn allowed_destinations_get_only_their_credentials() {
        let p = policy();
        assert_eq!(
            p.decide(&"https://api.e2b.app/sandboxes".parse().unwrap()),
            Decision::Allow { entry: "api.e2b.app".into(), credentials: vec![0] }
        );
        assert_eq!(
            p.decide(&"https://49983-x.e2b.app/files".parse().unwrap()),
            Decision::Allow { entry: "*.e2b.app".into(), credentials: vec![] }
        );
        assert_eq!(
            p.decide(&"http://127.0.0.1:9000/".parse().unwrap()),
            Decision::Allow { entry: "127.0.0.1:9000".into(), credentials: vec![0] }
        );
        // Never over plain http to a host that was only granted for https.
        assert_eq!(
            p.decide(&"http://api.e2b.app/sandboxes".parse().unwrap()),
            Decision::Allow { entry: "api.e2b.app".into(), credentials: vec![] }
        );
        assert_eq!(
            p.decide(&"http://api.e2b.app:443/".parse().unwrap()),
            Decision::Allow { entry: "api.e2b.app".into(), credentials: vec![] }
        );
    }

    #[test]
    fn denials_name_the_destination_and_the_entry_to_add() {
        let p = policy();
        assert_eq!(
            p.decide(&"http://10.0.0.1:8080/x".parse().unwrap()),
            Decision::Deny(Denial { destination: "http://10.0.0.1:8080".into(), entry: "10.0.0.1:8080".into(), private_address: false })
        );
        // The default port of the scheme counts: http://api.e2b.app is port 80, allowed.
        assert!(matches!(p.decide(&"http://api.e2b.app/".parse().unwrap()), Decision::Allow { .. }));
        assert!(matches!(p.decide(&"https://api.e2b.app:8443/".parse().unwrap()), Decision::Deny(_)));
    }

    #[test]
    fn credential_headers_are_forbidden_to_the_guest() {
        let p = Arc::new(policy());
        let mut hooks = EgressHooks::new(p, Arc::default());
        let f = hooks.forbidden_header_filter();
        assert!(f(&HeaderName::from_static("x-api-key")));
        assert!(f(&http::header::HOST));
        assert!(!f(&http::header::CONTENT_TYPE));
    }

    #[test]
    fn a_long_exec_stretches_the_waits_but_not_the_connect() {
        let t = UpstreamTimeouts::default().stretched(Duration::from_secs(300), Duration::from_secs(15));
        assert_eq!(
            (t.connect, t.first_byte, t.between_bytes),
            (Duration::from_secs(10), Duration::from_secs(315), Duration::from_secs(315))
        );
        let short = UpstreamTimeouts::default().stretched(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(short, UpstreamTimeouts::default());
    }

    /// A loopback upstream that echoes every request's `x-api-key` back in a header and
    /// in the body, as debug endpoints do; counts connections.
    async fn echoing_upstream() -> (u16, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.fetch_add(1, Ordering::SeqCst);
                            let text = String::from_utf8_lossy(&head[..end]).to_string();
                            head.drain(..end + 4);
                            let key = text.lines().find_map(|l| l.strip_prefix("x-api-key: ")).unwrap_or("none").to_string();
                            let body = format!("{{\"x-api-key\":\"{key}\"}}");
                            let answer = format!("HTTP/1.1 200 OK\r\nx-echo: {key}\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                            let _ = s.write_all(answer.as_bytes()).await;
                        }
                    }
                });
            }
        });
        (port, requests)
    }

    fn get(port: u16) -> http::Request<WasiBody> {
        use http_body_util::BodyExt;
        let empty = http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(format!("http://127.0.0.1:{port}/echo")).body(empty).unwrap()
    }

    #[tokio::test]
    async fn an_echoed_credential_is_masked_and_the_call_budget_refuses_before_sending() {
        use http_body_util::BodyExt;
        let (port, requests) = echoing_upstream().await;
        let mut p = policy();
        let entry = format!("127.0.0.1:{port}");
        p.allow = AllowList::parse(&[entry.as_str()]).unwrap();
        p.credentials[0].plain_http_hosts = AllowList::parse(&[entry.as_str()]).unwrap();
        p.fanout = UpstreamFanout::new(2, 2, 16);
        let (policy, record) = (Arc::new(p), Arc::new(EgressRecord::default()));
        let mut hooks = EgressHooks::new(policy.clone(), record.clone());
        for _ in 0..2 {
            let (res, _io) = Box::into_pin(hooks.send_request(get(port), None, Box::new(async { Ok(()) }))).await.unwrap();
            assert_eq!(res.headers()["x-echo"].as_bytes(), "*".repeat(SECRET.len()).as_bytes());
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], format!("{{\"x-api-key\":\"{}\"}}", "*".repeat(SECRET.len())).as_bytes());
        }
        assert_eq!(record.redactions(), 4, "two headers and two bodies");
        assert_eq!(policy.fanout.in_flight(), 0, "each read body returned its slot");
        // The third request of the call is refused in the hook: nothing is sent.
        let refused = Box::into_pin(hooks.send_request(get(port), None, Box::new(async { Ok(()) }))).await;
        assert!(matches!(refused, Err(HttpError::HttpRequestDenied)));
        assert_eq!(record.fanout_refusal(), Some(FanoutRefusal::PerCall { limit: 2 }));
        assert_eq!((record.requests(), record.fanout_refused()), (2, 1));
        assert_eq!(requests.load(Ordering::SeqCst), 2, "the refused request never reached the upstream");
    }

    /// World 0.2's whole-body `upstream` import goes through this same hook: the
    /// credential is injected (and masked in the echo), the call's budget counts it, a
    /// header the host owns or a destination outside the allowlist is refused unsent.
    #[tokio::test]
    async fn the_whole_body_import_takes_the_same_egress_path() {
        use crate::runtime::whole_body::{send, WholeFailure, WholeRequest};
        let (port, requests) = echoing_upstream().await;
        let mut p = policy();
        let entry = format!("127.0.0.1:{port}");
        p.allow = AllowList::parse(&[entry.as_str()]).unwrap();
        p.credentials[0].plain_http_hosts = AllowList::parse(&[entry.as_str()]).unwrap();
        let record = Arc::new(EgressRecord::default());
        let mut hooks = EgressHooks::new(Arc::new(p), record.clone());
        let req = |url: String, headers: Vec<(String, String)>| WholeRequest {
            method: "GET".into(),
            url,
            headers,
            body: Vec::new(),
            timeout: None,
        };
        let echo = format!("http://127.0.0.1:{port}/echo");
        let answer = send(&mut hooks, req(echo.clone(), vec![])).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("{{\"x-api-key\":\"{}\"}}", "*".repeat(SECRET.len())).into_bytes(), "injected, then masked");
        for owned in ["x-api-key", "host"] {
            let refused = send(&mut hooks, req(echo.clone(), vec![(owned.into(), "guest".into())])).await;
            assert!(matches!(&refused, Err(WholeFailure::Refused(w)) if w.contains(owned)), "{owned}: {refused:?}");
        }
        let outside = send(&mut hooks, req("http://203.0.113.9:9/x".into(), vec![])).await;
        assert!(matches!(outside, Err(WholeFailure::Refused(_))), "{outside:?}");
        assert_eq!(record.denials().len(), 1, "the denial is recorded for the call's S703");
        assert!(matches!(send(&mut hooks, req("ftp://127.0.0.1/x".into(), vec![])).await, Err(WholeFailure::Refused(_))));
        assert_eq!((record.requests(), requests.load(Ordering::SeqCst)), (1, 1), "only the allowed request was sent");
    }

    /// The observer `sandbox-host conformance` switches on sees each request sent (method
    /// and path, nothing of the headers), and not one the allowlist refused.
    #[tokio::test]
    async fn the_observer_sees_what_was_sent_and_not_what_was_refused() {
        use crate::runtime::whole_body::{send, WholeRequest};
        let (port, _requests) = echoing_upstream().await;
        let mut p = policy();
        let entry = format!("127.0.0.1:{port}");
        p.allow = AllowList::parse(&[entry.as_str()]).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        assert!(p.observer.set(Arc::new(move |m, u| sink.lock().unwrap().push(format!("{m} {}", u.path())))));
        let mut hooks = EgressHooks::new(Arc::new(p), Arc::default());
        let (res, _io) = Box::into_pin(hooks.send_request(get(port), None, Box::new(async { Ok(()) }))).await.unwrap();
        drop(res);
        let req = |url: String| WholeRequest { method: "DELETE".into(), url, headers: vec![], body: vec![], timeout: None };
        send(&mut hooks, req(format!("http://127.0.0.1:{port}/sandboxes/a"))).await.unwrap();
        assert!(send(&mut hooks, req("http://203.0.113.9:9/x".into())).await.is_err());
        assert_eq!(*seen.lock().unwrap(), vec!["GET /echo".to_string(), "DELETE /sandboxes/a".to_string()]);
    }

    #[tokio::test]
    async fn once_refused_a_call_sends_nothing_more_even_when_a_slot_frees() {
        let (port, requests) = echoing_upstream().await;
        let mut p = policy();
        let entry = format!("127.0.0.1:{port}");
        p.allow = AllowList::parse(&[entry.as_str()]).unwrap();
        p.fanout = UpstreamFanout::new(32, 128, 1);
        let policy = Arc::new(p);
        let mut hooks = EgressHooks::new(policy.clone(), Arc::default());
        let (open, _io) = Box::into_pin(hooks.send_request(get(port), None, Box::new(async { Ok(()) }))).await.unwrap();
        // Another call of the same plugin while the first body is unread: over the cap.
        let other = Arc::new(EgressRecord::default());
        let mut neighbour = EgressHooks::new(policy.clone(), other.clone());
        assert!(Box::into_pin(neighbour.send_request(get(port), None, Box::new(async { Ok(()) }))).await.is_err());
        assert_eq!(other.fanout_refusal(), Some(FanoutRefusal::Concurrent { limit: 1 }));
        drop(open);
        assert_eq!(policy.fanout.in_flight(), 0, "dropping an unread body returns its slot");
        assert!(
            Box::into_pin(neighbour.send_request(get(port), None, Box::new(async { Ok(()) }))).await.is_err(),
            "the refused call stays refused"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_loop_of_denied_requests_keeps_only_the_first_few() {
        let record = EgressRecord::default();
        let denial = Denial { destination: "http://evil.example:80".into(), entry: "evil.example:80".into(), private_address: false };
        let kept = (0..10_000).filter(|_| record.deny(denial.clone())).count();
        assert_eq!((kept, record.denials().len()), (MAX_RECORDED_DENIALS, MAX_RECORDED_DENIALS));
    }

    #[test]
    fn guest_timeouts_are_clamped() {
        let t = UpstreamTimeouts { connect: Duration::from_secs(1), ..Default::default() };
        let o = t.clamp(Some(RequestOptions { connect_timeout: Some(Duration::from_secs(30)), ..Default::default() }));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(60)));
    }
}
