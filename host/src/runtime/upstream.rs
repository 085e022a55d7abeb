//! How allowed upstream requests leave the host: one pooled HTTP/1.1 client per plugin
//! version (keep-alive connections, rustls with the webpki roots for https).
//!
//! wasi-http's `default_send_request` opens a fresh TCP (and TLS) connection for every
//! request; a provider plugin makes several requests per call to the same control
//! plane, so connection reuse is most of the gap to a native client (BENCHMARKS.md).
//! Pools are per plugin so no connection is ever shared between two plugins.
//!
//! Names are resolved by [`PublicOnly`]: an allowed *name* that resolves to a loopback,
//! private, link-local or otherwise non-public address is refused (S703), unless the
//! policy sets `allow_private_networks`. An IP literal in the allowlist is explicit
//! consent and is not resolved. (This second layer follows wasmCloud's egress policy:
//! an allowed name can be made to resolve anywhere.)
//!
//! Timeouts: the connect timeout is the client's; `first_byte` bounds the wait for the
//! response head (connecting included when no pooled connection is free);
//! `between_bytes` is enforced on the body by `egress::LimitedBody`.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

type Connector = hyper_rustls::HttpsConnector<HttpConnector<PublicOnly>>;

/// Why a resolved name was refused; found again in the error chain by `map_error`.
#[derive(Debug)]
pub struct PrivateAddress(pub String);

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to non-public addresses", self.0)
    }
}

impl std::error::Error for PrivateAddress {}

/// A resolver that drops non-public addresses unless `allow_private` is set.
#[derive(Clone, Debug)]
pub struct PublicOnly {
    allow_private: bool,
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for PublicOnly {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let kept: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| allow_private || is_public(a.ip())).collect();
            if kept.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, PrivateAddress(host)));
            }
            Ok(kept.into_iter())
        })
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240 // reserved
                || (a == 100 && (b & 0xc0) == 64) // shared address space (CGNAT)
                || (a == 198 && (b & 0xfe) == 18)) // benchmarking
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            // Forms that embed an IPv4 address are judged by that address: mapped
            // (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
            let embedded = if let Some(v4) = v6.to_ipv4_mapped() {
                Some(v4)
            } else if (seg[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified())
                || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            {
                Some(std::net::Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8))
            } else if seg[0] == 0x2002 {
                Some(std::net::Ipv4Addr::new((seg[1] >> 8) as u8, seg[1] as u8, (seg[2] >> 8) as u8, seg[2] as u8))
            } else {
                None
            };
            match embedded {
                Some(v4) => is_public(IpAddr::V4(v4)),
                None => {
                    !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (seg[0] & 0xfe00) == 0xfc00 // unique local
                    || (seg[0] & 0xffc0) == 0xfe80 // link local
                    || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated, still routed by some)
                    || seg[..3] == [0x64, 0xff9b, 1] // local-use NAT64 (RFC 8215)
                    || seg[..2] == [0x2001, 0xdb8])
                } // documentation
            }
        }
    }
}

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

impl UpstreamClient {
    /// A pool, unless `SANDBOX_UPSTREAM_POOL=off`.
    pub fn from_env(connect_timeout: Duration, allow_private: bool, max_in_flight: usize) -> Option<Self> {
        match std::env::var("SANDBOX_UPSTREAM_POOL").as_deref() {
            Ok("off") => None,
            _ => Some(Self::new(connect_timeout, allow_private, max_in_flight)),
        }
    }

    /// Keeps up to `max_in_flight` idle connections per upstream host: the plugin's bound
    /// on requests in flight, so a connection opened at the busiest moment is reused, not
    /// closed on return (a smaller pool made every request above it a fresh TCP connect
    /// under load: 110-120 µs of CPU per call at 64 callers against 63-80 µs at one).
    pub fn new(connect_timeout: Duration, allow_private: bool, max_in_flight: usize) -> Self {
        let mut http = HttpConnector::new_with_resolver(PublicOnly { allow_private });
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(max_in_flight.max(1))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        UpstreamClient { client }
    }

    /// Sends `request` (absolute URI) and waits at most `first_byte` for the response head.
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
        first_byte: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
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
            if s.downcast_ref::<PrivateAddress>().is_some() {
                return HttpError::DestinationIpProhibited;
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.get_ref().is_some_and(|inner| inner.is::<PrivateAddress>()) {
                    return HttpError::DestinationIpProhibited;
                }
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

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "ff02::1",
            "fec0::1",
            "64:ff9b:1::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "34.120.0.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
