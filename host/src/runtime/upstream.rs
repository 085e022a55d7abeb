//! How allowed upstream requests leave the host: one pooled HTTP/1.1 client per plugin
//! version (keep-alive connections, rustls with the webpki roots for https).
//!
//! wasi-http's `default_send_request` opens a fresh TCP (and TLS) connection for every
//! request; a provider plugin makes several requests per call to the same control
//! plane, so connection reuse is most of the gap to a native client (BENCHMARKS.md).
//! Pools are per plugin so no connection is ever shared between two plugins.
//!
//! Timeouts: the connect timeout is the client's; `first_byte` bounds the wait for the
//! response head (connecting included when no pooled connection is free);
//! `between_bytes` is enforced on the body by `egress::LimitedBody`.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct UpstreamClient {
    client: Client<Connector, WasiBody>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamClient")
    }
}

/// Idle pooled connections are closed after this long.
const IDLE: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per upstream host.
const MAX_IDLE_PER_HOST: usize = 32;

impl UpstreamClient {
    /// A pool, unless `SANDBOX_UPSTREAM_POOL=off`.
    pub fn from_env(connect_timeout: Duration) -> Option<Self> {
        match std::env::var("SANDBOX_UPSTREAM_POOL").as_deref() {
            Ok("off") => None,
            _ => Some(Self::new(connect_timeout)),
        }
    }

    pub fn new(connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        UpstreamClient { client }
    }

    /// Sends `request` (absolute URI) and waits at most `first_byte` for the response head.
    pub async fn send(&self, request: http::Request<WasiBody>, first_byte: Duration) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
        match tokio::time::timeout(first_byte, self.client.request(request)).await {
            Err(_) => Err(HttpError::HttpResponseTimeout),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(map_error(&e)),
        }
    }
}

fn map_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    use std::error::Error as _;
    if e.is_connect() {
        let mut source = e.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return match io.kind() {
                    std::io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
                    std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
                    _ => HttpError::Connect(std::io::Error::new(io.kind(), io.to_string())),
                };
            }
            source = s.source();
        }
        if format!("{e:?}").contains("ConnectTimeout") {
            return HttpError::ConnectionTimeout;
        }
        return HttpError::ConnectionRefused;
    }
    HttpError::HttpProtocolError
}
