//! The `upstream` import of world 0.2.0: one whole-body request, sent through the very
//! hook a `wasi:http` request takes (`EgressHooks::send_request`: allowlist, credential
//! injection, private-address check, fan-out bounds, body cap, timeouts, redaction), so
//! every egress rule lives in one place. What `wasi:http` itself checks before that hook
//! (scheme, headers the host owns, the `host` header) is checked here the same way.

use crate::policy::egress::EgressHooks;
use crate::policy::plugin_text::bounded;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http_body_util::BodyExt as _;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiHttpHooks};

pub struct WholeRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub struct WholeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum WholeFailure {
    Refused(String),
    TimedOut(String),
    Transport(String),
}

/// Sends `req` under `hooks` (this call's egress state) and reads the whole answer.
pub async fn send(hooks: &mut EgressHooks, req: WholeRequest) -> Result<WholeResponse, WholeFailure> {
    let refused = |why: String| WholeFailure::Refused(why);
    let uri: http::Uri = req.url.parse().map_err(|e| refused(format!("{:?} is not a URL ({e})", bounded(&req.url, 200))))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| refused(format!("{:?} has no scheme", bounded(&req.url, 200))))?;
    if !hooks.is_supported_scheme(&scheme) {
        return Err(refused(format!("scheme {scheme} is not supported; use http or https")));
    }
    let authority = uri.authority().cloned().ok_or_else(|| refused(format!("{:?} has no host", bounded(&req.url, 200))))?;
    let method =
        http::Method::from_bytes(req.method.as_bytes()).map_err(|_| refused(format!("{:?} is not a method", bounded(&req.method, 40))))?;
    let mut request = http::Request::new(
        http_body_util::Full::new(Bytes::from(req.body)).map_err(|never: std::convert::Infallible| match never {}).boxed_unsync(),
    );
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    for (name, value) in req.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| refused(format!("{:?} is not a header name", bounded(&name, 80))))?;
        if name == HOST || hooks.is_forbidden_header(&name) {
            return Err(refused(format!("header `{name}` is set by the host, not by the plugin")));
        }
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| refused(format!("header `{name}` has an invalid value")))?;
        request.headers_mut().append(name, value);
    }
    // As wasi:http does: the authority decides the destination, `host` follows it.
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| refused("the URL's host is not a valid header".into()))?;
    request.headers_mut().insert(HOST, host);
    let options = RequestOptions { connect_timeout: None, first_byte_timeout: req.timeout, between_bytes_timeout: req.timeout };
    let sent = hooks.send_request(request, Some(options), Box::new(async { Ok(()) }));
    let (response, _io) = Box::into_pin(sent).await.map_err(failure)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(failure)?.to_bytes().to_vec();
    let headers = parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    Ok(WholeResponse { status: parts.status.as_u16(), headers, body })
}

fn failure(e: HttpError) -> WholeFailure {
    let what = match &e {
        HttpError::HttpResponseBodySize(Some(n)) => {
            format!("the answer's body exceeds the host's limit of {n} bytes (limits.max_upstream_body_mib)")
        }
        HttpError::HttpRequestDenied => "the host's egress policy refused it".to_string(),
        HttpError::DestinationIpProhibited => "its host resolves only to addresses the policy does not allow".to_string(),
        other => format!("{other:?}"),
    };
    match e {
        HttpError::HttpRequestDenied | HttpError::DestinationIpProhibited => WholeFailure::Refused(what),
        HttpError::ConnectionTimeout | HttpError::ConnectionReadTimeout | HttpError::HttpResponseTimeout => WholeFailure::TimedOut(what),
        _ => WholeFailure::Transport(what),
    }
}
