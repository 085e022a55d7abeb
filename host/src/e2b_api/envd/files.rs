//! envd's `/files`: `GET ?path=` answers the file's bytes (the `fs::read` leaf) and
//! `POST ?path=` writes the multipart parts or the octet-stream body (`fs::write`,
//! missing directories created as envd does), answering `[{name, type, path}]`.

use super::super::errors::ApiError;
use super::super::http::{self, Reply};
use super::super::E2bApi;
use super::multipart;
use super::Target;
use crate::contract::shapes::Leaf;
use base64::Engine as _;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};

/// Uploads are held whole on their way to `fs::write`.
const UPLOAD_LIMIT: usize = 100 << 20;

pub async fn read(api: &E2bApi, t: &Target, req: &Request<Incoming>) -> Reply {
    let query = http::query_pairs(req.uri().query());
    let Some(path) = http::query_value(&query, "path").filter(|p| !p.is_empty()) else {
        return http::api_error(&ApiError::bad_request("`path` is required: GET /files?path=<file>"));
    };
    let payload = json!({ "sandbox_id": t.sandbox.upstream_id, "path": path });
    match api.call(&t.sandbox.provider, Leaf::FsRead, payload).await {
        Ok(answer) => match base64::engine::general_purpose::STANDARD.decode(answer["bytes_base64"].as_str().unwrap_or_default()) {
            Ok(bytes) => http::full(200, "application/octet-stream", bytes),
            Err(_) => http::api_error(&ApiError::new(500, "the provider's fs::read answer was not base64")),
        },
        Err(e) => http::api_error(&e),
    }
}

pub async fn write(api: &E2bApi, t: &Target, req: Request<Incoming>) -> Reply {
    match write_files(api, t, req).await {
        Ok(written) => http::json(200, &Value::Array(written)),
        Err(e) => http::api_error(&e),
    }
}

async fn write_files(api: &E2bApi, t: &Target, req: Request<Incoming>) -> Result<Vec<Value>, ApiError> {
    let query = http::query_pairs(req.uri().query());
    let query_path = http::query_value(&query, "path").filter(|p| !p.is_empty()).map(str::to_string);
    let content_type = http::header(&req, "content-type").unwrap_or_default().to_string();
    if http::header(&req, "content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err(ApiError::new(415, "compressed uploads are not supported here; write without gzip"));
    }
    let body = http::read_body(req.into_body(), UPLOAD_LIMIT).await?;
    let files: Vec<(String, Vec<u8>)> = match multipart::boundary(&content_type) {
        Some(boundary) => {
            let parts =
                multipart::parse(&body, &boundary).map_err(|e| ApiError::bad_request(format!("the multipart body is malformed: {e}")))?;
            let files: Vec<_> = parts.into_iter().filter(|p| p.name.as_deref() == Some("file")).collect();
            let single = files.len() == 1;
            let mut out = Vec::new();
            for part in files {
                // One file: the query names it (as envd reads it); several: each its filename.
                let path = if single { query_path.clone().or(part.filename) } else { part.filename.or(query_path.clone()) };
                let path = path.filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("a file part names no path (filename)"))?;
                out.push((path, part.body));
            }
            out
        }
        None => {
            let path = query_path.ok_or_else(|| ApiError::bad_request("`path` is required: POST /files?path=<file>"))?;
            vec![(path, body.to_vec())]
        }
    };
    if files.is_empty() {
        return Err(ApiError::bad_request("the upload holds no part named \"file\""));
    }
    let mut written = Vec::new();
    for (path, bytes) in files {
        let payload = json!({
            "sandbox_id": t.sandbox.upstream_id,
            "path": path,
            "bytes_base64": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "parents": true,
        });
        api.call(&t.sandbox.provider, Leaf::FsWrite, payload).await?;
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        written.push(json!({ "name": name, "type": "file", "path": path }));
    }
    Ok(written)
}
