//! Outbound HTTP policy: the one `WasiHttpHooks` impl through which a plugin's requests
//! leave the host. It decides (allowlist on the real destination authority), records
//! (denials, request counts) and only then delegates to `default_send_request`,
//! after injecting credentials and clamping the guest's timeouts to the policy's.
//!
//! Deciding and reporting are separate: [`EgressPolicy::decide`] is pure; the per-call
//! [`EgressRecord`] collects what happened so the host can answer S703 even when the
//! guest swallowed the error (wstd reports a denial as "connection reset").

use super::allowed_hosts::{entry_for, AllowList};
use super::credentials::Credential;
use http::uri::Scheme;
use http::{HeaderName, Uri};
use std::future::Future as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{
    Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
    DEFAULT_FORBIDDEN_HEADERS,
};

/// Upper bounds on upstream waits; a guest may ask for less, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            between_bytes: Duration::from_secs(60),
        }
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
}

/// Where a request may go, decided before anything is sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by allowlist entry `entry`; indexes into `credentials` of those to inject.
    Allow { entry: String, credentials: Vec<usize> },
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

/// What one call's requests did; read by the host after the call.
#[derive(Debug, Default)]
pub struct EgressRecord {
    denials: Mutex<Vec<Denial>>,
    requests: AtomicU64,
    /// Per matched allowlist entry: (requests, response body bytes).
    per_host: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
    /// Set when an upstream body was cut off at the limit.
    body_cut: std::sync::atomic::AtomicBool,
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
    fn deny(&self, d: Denial) {
        self.denials.lock().unwrap_or_else(|p| p.into_inner()).push(d);
    }
}

/// The hooks placed in each call's Store.
pub struct EgressHooks {
    pub policy: Arc<EgressPolicy>,
    pub record: Arc<EgressRecord>,
    /// This call's bounds: the policy's, stretched for a long exec.
    pub timeouts: UpstreamTimeouts,
    forbidden: Arc<[HeaderName]>,
}

impl EgressHooks {
    pub fn new(policy: Arc<EgressPolicy>, record: Arc<EgressRecord>) -> Self {
        let forbidden = policy.forbidden_headers().into();
        EgressHooks { timeouts: policy.timeouts, policy, record, forbidden }
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
                tracing::warn!(
                    plugin = %self.policy.plugin,
                    destination = %denial.destination,
                    "plugin `{}` tried to reach {} which is not in its egress allowlist; if that is intended, add \
                     \"{}\" to allowed_hosts in plugins/{}.toml",
                    self.policy.plugin, denial.destination, denial.entry, self.policy.plugin
                );
                self.record.deny(denial);
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
            Decision::Allow { entry, credentials } => (entry, credentials),
        };
        let (entry, inject) = inject;
        self.record.requests.fetch_add(1, Ordering::Relaxed);
        // Metrics are keyed by the allowlist entry that matched (`*.e2b.app`), not the
        // host itself, so per-sandbox host names cannot grow them without bound.
        let authority = request.uri().authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
        self.record.count_request(&entry);
        for i in inject {
            let cred = &self.policy.credentials[i];
            // A credential that is not ready was already refused before the call (S503).
            if let Some(v) = cred.header_value() {
                request.headers_mut().insert(cred.header.clone(), v.clone());
            }
        }
        let options = self.timeouts.clamp(options);
        let (record, limit, policy) = (self.record.clone(), self.policy.max_body_bytes, self.policy.clone());
        let destination = format!("{}://{authority}", request.uri().scheme_str().unwrap_or("https"));
        Box::new(async move {
            use http_body_util::BodyExt;
            let first_byte = options.first_byte_timeout.unwrap_or(policy.timeouts.first_byte);
            let between = options.between_bytes_timeout.unwrap_or(policy.timeouts.between_bytes);
            let res: http::Response<WasiBody> = match &policy.client {
                Some(client) => match client.send(request, first_byte).await {
                    Err(HttpError::DestinationIpProhibited) => {
                        tracing::warn!(plugin = %policy.plugin, %destination, "plugin `{}` tried to reach {destination}, whose name resolves only to non-public addresses; set allow_private_networks = true in plugins/{}.toml if that is intended", policy.plugin, policy.plugin);
                        record.deny(Denial { entry: authority.clone(), destination, private_address: true });
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
            let res = res.map(|inner| LimitedBody { inner, seen: 0, limit, record, entry, between, idle: None }.boxed_unsync());
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

    fn policy() -> EgressPolicy {
        EgressPolicy {
            plugin: "e2b".into(),
            allow: AllowList::parse(&["api.e2b.app", "*.e2b.app", "127.0.0.1:9000"]).unwrap(),
            credentials: vec![Credential {
                name: "api-key".into(),
                env_var: Some("E2B_API_KEY".into()),
                header: HeaderName::from_static("x-api-key"),
                hosts: AllowList::parse(&["api.e2b.app"]).unwrap(),
                plain_http_hosts: AllowList::parse(&["127.0.0.1:9000"]).unwrap(),
                value: CredentialValue::from_env("", Some("k".into())),
            }],
            timeouts: UpstreamTimeouts::default(),
            max_body_bytes: 1 << 20,
            client: Some(crate::runtime::upstream::UpstreamClient::new(Duration::from_secs(1), false)),
        }
    }

    #[test]
    fn allowed_destinations_get_only_their_credentials() {
        let p = policy();
        assert_eq!(p.decide(&"https://api.e2b.app/sandboxes".parse().unwrap()), Decision::Allow { entry: "api.e2b.app".into(), credentials: vec![0] });
        assert_eq!(p.decide(&"https://49983-x.e2b.app/files".parse().unwrap()), Decision::Allow { entry: "*.e2b.app".into(), credentials: vec![] });
        assert_eq!(p.decide(&"http://127.0.0.1:9000/".parse().unwrap()), Decision::Allow { entry: "127.0.0.1:9000".into(), credentials: vec![0] });
        // Never over plain http to a host that was only granted for https.
        assert_eq!(p.decide(&"http://api.e2b.app/sandboxes".parse().unwrap()), Decision::Allow { entry: "api.e2b.app".into(), credentials: vec![] });
        assert_eq!(p.decide(&"http://api.e2b.app:443/".parse().unwrap()), Decision::Allow { entry: "api.e2b.app".into(), credentials: vec![] });
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
        assert_eq!((t.connect, t.first_byte, t.between_bytes), (Duration::from_secs(10), Duration::from_secs(315), Duration::from_secs(315)));
        let short = UpstreamTimeouts::default().stretched(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(short, UpstreamTimeouts::default());
    }

    #[test]
    fn guest_timeouts_are_clamped() {
        let t = UpstreamTimeouts { connect: Duration::from_secs(1), ..Default::default() };
        let o = t.clamp(Some(RequestOptions { connect_timeout: Some(Duration::from_secs(30)), ..Default::default() }));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(60)));
    }
}
