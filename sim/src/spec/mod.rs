//! The providers' own API documents, vendored under `sim/specs/` (sources and commits in
//! `sim/specs/README.md`), and what every simulator checks against them: each request it
//! receives (method and path template, path, query and header parameters, the body's
//! content type and JSON schema) before it is served, and each answer it gives (a status
//! the operation documents, its content type, the body against the response schema, with
//! no property the schema does not declare) before it is sent.
//!
//! A request that fails is answered with the provider's own error shape carrying the
//! spec's words (`POST /sandboxes: body.templateID is required by NewSandbox
//! (sim/specs/e2b/openapi.yml:768)`), and an answer that fails becomes a 500 "simulator
//! bug: …"; both are recorded ([`crate::Sim::violations`]) and printed. What the specs do
//! not cover is exempted in one list, [`exempt::EXEMPTIONS`], each entry saying why.
//!
//! Covered: OpenAPI 3.0 (E2B, Daytona API), 3.1 (Morph) and Swagger 2.0 (Daytona toolbox);
//! local `$ref`s; parameters `in` path, query (form arrays, exploded or not, and
//! deepObject) and header; JSON and multipart bodies (required parts). Not covered:
//! response headers, security schemes (each simulator checks its own credential),
//! cookies, external `$ref`s, and the schema keywords listed in [`schema`].

pub mod contract;
pub mod exempt;
mod lines;
mod schema;

use crate::server::{percent_decode, Recorded};
use schema::{Node, Validator};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// One vendored API document and its operations.
pub struct Spec {
    /// The document's path under `sim/specs/`, e.g. `e2b/openapi.yml`.
    pub file: &'static str,
    text: &'static str,
    doc: Value,
    swagger2: bool,
    ops: Vec<Op>,
    patterns: Mutex<HashMap<String, Option<regex::Regex>>>,
}

/// One operation: a method on a path template.
#[derive(Debug)]
pub struct Op {
    pub method: String,
    pub template: String,
    /// The template's segments: `None` for a `{parameter}`.
    segs: Vec<Option<String>>,
    /// The operation object's JSON pointer (`/paths/~1sandboxes/post`).
    ptr: String,
}

impl Op {
    /// `POST /sandboxes/{sandboxID}/pause`.
    pub fn route(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// A request the spec does not allow: the status to answer and the spec's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub status: u16,
    pub message: String,
}

macro_rules! vendored {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
        pub fn $name() -> &'static Spec {
            static SPEC: OnceLock<Spec> = OnceLock::new();
            SPEC.get_or_init(|| Spec::load($file, include_str!(concat!("../../specs/", $file))))
        }
    };
}

vendored!(
    /// E2B's control plane (`api.e2b.app`).
    e2b_api,
    "e2b/openapi.yml"
);
vendored!(
    /// E2B's in-sandbox daemon, envd (its REST part; the process service is Connect RPC).
    e2b_envd,
    "e2b/envd/envd.yaml"
);
vendored!(
    /// Morph Cloud's instance API (`cloud.morph.so/api`).
    morph_api,
    "morph/morph-3.1.0.json"
);
vendored!(
    /// Daytona's API (`app.daytona.io/api`).
    daytona_api,
    "daytona/api.json"
);
vendored!(
    /// Vercel Sandbox's v1 API (`vercel.com/api`), the subset the plugin calls, written from
    /// `@vercel/sandbox` 1.10.2 (no OpenAPI document of it is published to vendor).
    vercel_api,
    "vercel/sandbox-v1.yml"
);
vendored!(
    /// Daytona's toolbox daemon, behind the proxy (`{toolboxProxyUrl}/{sandboxId}`).
    daytona_toolbox,
    "daytona/toolbox.json"
);

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// A media type whose body is one JSON value per line, each checked against the schema.
fn is_record_stream(media: &str) -> bool {
    matches!(media, "application/x-ndjson" | "application/ndjson" | "application/jsonl")
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json") || media == "text/json"
}

/// `type/subtype` of a Content-Type header, lower-case, without parameters.
fn media_type(ct: Option<&str>) -> Option<String> {
    ct.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()).filter(|c| !c.is_empty())
}

/// The entry of `content` (a map keyed by media range) that `media` falls under.
fn pick<'v>(content: &'v serde_json::Map<String, Value>, media: &str) -> Option<(&'v String, &'v Value)> {
    let major = media.split('/').next().unwrap_or_default();
    content
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(media))
        .or_else(|| content.iter().find(|(k, _)| k.strip_suffix("/*").is_some_and(|m| m.eq_ignore_ascii_case(major))))
        .or_else(|| content.iter().find(|(k, _)| k.as_str() == "*/*"))
}

/// The names of a multipart body's parts.
fn part_names(rec: &Recorded) -> Vec<String> {
    let Some(boundary) = rec.header("content-type").and_then(|c| c.split("boundary=").nth(1)) else { return Vec::new() };
    let delim = format!("--{}", boundary.split(';').next().unwrap_or_default().trim_matches('"'));
    let text = String::from_utf8_lossy(&rec.body);
    text.split(delim.as_str())
        .filter_map(|part| {
            let head = part.split("\r\n\r\n").next()?;
            let at = head.to_ascii_lowercase().find("name=\"")? + 6;
            Some(head[at..].split('"').next()?.to_string())
        })
        .collect()
}

impl Spec {
    /// Parses a vendored document (JSON, else YAML) and indexes its operations.
    pub fn load(file: &'static str, text: &'static str) -> Spec {
        let doc: Value = if file.ends_with(".json") {
            serde_json::from_str(text).unwrap_or_else(|e| panic!("sim/specs/{file} is not JSON: {e}"))
        } else {
            serde_norway::from_str(text).unwrap_or_else(|e| panic!("sim/specs/{file} is not YAML: {e}"))
        };
        let swagger2 = doc.get("swagger").is_some();
        let mut ops = Vec::new();
        for (template, item) in doc.get("paths").and_then(Value::as_object).into_iter().flatten() {
            let segs =
                template.trim_matches('/').split('/').map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string())).collect();
            for m in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                ops.push(Op {
                    method: m.to_ascii_uppercase(),
                    template: template.clone(),
                    segs: Vec::clone(&segs),
                    ptr: format!("/paths/{}/{m}", pointer_escape(template)),
                });
            }
        }
        Spec { file, text, doc, swagger2, ops, patterns: Mutex::default() }
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// `sim/specs/<file>:<line>` of the node at `ptr`, or `sim/specs/<file>#<ptr>`.
    pub fn cite(&self, ptr: &str) -> String {
        match lines::line_of(self.text, ptr) {
            Some(line) => format!("sim/specs/{}:{line}", self.file),
            None => format!("sim/specs/{}#{ptr}", self.file),
        }
    }

    fn node(&self, ptr: &str) -> Option<&Value> {
        self.doc.pointer(ptr)
    }

    /// A local `$ref` (`#/components/schemas/X`) as a node named `X`.
    fn resolve(&self, r: &str) -> Option<Node<'_>> {
        let ptr = r.strip_prefix('#')?;
        let name = ptr.rsplit('/').next().unwrap_or_default().replace("~1", "/").replace("~0", "~");
        Some(Node { schema: self.node(ptr)?, ptr: ptr.to_string(), name })
    }

    /// A node that may be a `$ref` (parameters, request bodies, responses), followed.
    fn follow(&self, v: &Value, ptr: String) -> Option<(Value, String)> {
        let mut node = (v.clone(), ptr);
        for _ in 0..8 {
            let Some(r) = node.0.get("$ref").and_then(Value::as_str) else { return Some(node) };
            let target = self.resolve(r)?;
            node = (target.schema.clone(), target.ptr);
        }
        None
    }

    fn pattern(&self, p: &str) -> Option<regex::Regex> {
        let mut cache = self.patterns.lock().unwrap();
        cache.entry(p.to_string()).or_insert_with(|| regex::Regex::new(p).ok()).clone()
    }

    /// The operation serving `method` on `path` (relative to the spec's paths): the
    /// template with the most literal segments, leftmost first.
    pub fn find(&self, method: &str, path: &str) -> Result<&Op, Violation> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let matches = |op: &&Op| {
            op.segs.len() == segs.len() && op.segs.iter().zip(&segs).all(|(t, s)| t.as_deref().map_or(!s.is_empty(), |t| t == *s))
        };
        let literal = |op: &&Op| op.segs.iter().map(Option::is_some).collect::<Vec<_>>();
        let candidates: Vec<&Op> = self.ops.iter().filter(matches).collect();
        let Some(best) = candidates.iter().max_by_key(|op| literal(op)).map(|op| op.template.clone()) else {
            return Err(Violation { status: 404, message: format!("{method} {path}: no path of sim/specs/{} matches {path}", self.file) });
        };
        let on_best: Vec<&Op> = candidates.into_iter().filter(|op| op.template == best).collect();
        match on_best.iter().find(|op| op.method.eq_ignore_ascii_case(method)) {
            Some(op) => Ok(op),
            None => {
                let allowed: Vec<&str> = on_best.iter().map(|op| op.method.as_str()).collect();
                let cite = self.cite(&format!("/paths/{}", pointer_escape(&best)));
                Err(Violation {
                    status: 405,
                    message: format!("{method} {path}: {best} has no {method} in the spec, only {} ({cite})", allowed.join(", ")),
                })
            }
        }
    }

    /// The parameters of `op` (its path item's and its own, its own winning), followed.
    fn parameters(&self, op: &Op) -> Vec<(Value, String)> {
        let item_ptr = op.ptr.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
        let mut out: Vec<(Value, String)> = Vec::new();
        for base in [item_ptr, op.ptr.clone()] {
            let Some(list) = self.node(&format!("{base}/parameters")).and_then(Value::as_array) else { continue };
            for (i, p) in list.iter().enumerate() {
                let Some((p, ptr)) = self.follow(p, format!("{base}/parameters/{i}")) else { continue };
                out.retain(|(q, _)| !(q["name"] == p["name"] && q["in"] == p["in"]));
                out.push((p, ptr));
            }
        }
        out
    }

    /// The schema of a parameter (3.x: `schema`; Swagger 2: the parameter object itself).
    fn param_schema<'s>(&self, p: &'s Value, ptr: &str) -> (&'s Value, String) {
        match p.get("schema") {
            Some(s) => (s, format!("{ptr}/schema")),
            None => (p, ptr.to_string()),
        }
    }

    /// The JSON types a schema may take, through `$ref`s and combinators.
    pub(super) fn types_of(&self, s: &Value, depth: usize) -> Vec<String> {
        if depth > 8 {
            return Vec::new();
        }
        if let Some(t) = s.get("$ref").and_then(Value::as_str).and_then(|r| self.resolve(r)) {
            return self.types_of(t.schema, depth + 1);
        }
        let mut out: Vec<String> = match s.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        for key in ["allOf", "anyOf", "oneOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                out.extend(self.types_of(b, depth + 1));
            }
        }
        out
    }

    /// A parameter's text as the JSON value the schema reads it as.
    fn coerce(&self, raw: &str, s: &Value) -> Value {
        let types = self.types_of(s, 0);
        let has = |t: &str| types.iter().any(|x| x == t);
        if has("integer") {
            if let Ok(i) = raw.parse::<i64>() {
                return Value::from(i);
            }
        }
        if has("number") || has("integer") {
            if let Some(n) = raw.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(serde_json::Number::from_f64) {
                if has("number") || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                    return Value::Number(n);
                }
            }
        }
        if has("boolean") && (raw == "true" || raw == "false") {
            return Value::Bool(raw == "true");
        }
        Value::String(raw.to_string())
    }

    fn schema_node<'s>(&'s self, schema: &'s Value, ptr: String, name: String) -> Node<'s> {
        Node { schema, ptr, name }
    }

    /// Everything wrong with `rec` as a call of `op`, `path` being its path in this spec.
    pub fn check_request(&self, op: &Op, rec: &Recorded, path: &str) -> Vec<String> {
        self.check_request_with_notes(op, rec, path).0
    }

    /// [`Spec::check_request`], and the notes: body properties the spec does not declare.
    /// Those are no violation (the real APIs ignore unknown fields, and so does JSON
    /// Schema), but a plugin setting one believes it sets something it does not.
    pub fn check_request_with_notes(&self, op: &Op, rec: &Recorded, path: &str) -> (Vec<String>, Vec<String>) {
        let (notes, errors) = self.request_errors(op, rec, path).into_iter().partition(|m| schema::is_undeclared(m));
        (errors, notes)
    }

    fn request_errors(&self, op: &Op, rec: &Recorded, path: &str) -> Vec<String> {
        let mut v = Validator::new(self, true);
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let query: Vec<(String, String)> = rec
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(val))
            })
            .collect();
        let mut form_fields: Vec<(String, bool, String)> = Vec::new();
        let mut body_param: Option<(Value, String)> = None;
        for (p, ptr) in self.parameters(op) {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let required = p["required"] == Value::Bool(true);
            let (schema, sptr) = self.param_schema(&p, &ptr);
            let label = format!("parameter `{name}`");
            let node = self.schema_node(schema, sptr, label.clone());
            let location = p["in"].as_str().unwrap_or_default();
            let value: Option<Value> = match location {
                "path" => {
                    let idx = op.template.trim_matches('/').split('/').position(|s| s == format!("{{{name}}}"));
                    idx.and_then(|i| segs.get(i)).map(|s| self.coerce(&percent_decode(s), schema))
                }
                "header" => rec.header(&name).map(|h| self.coerce(h, schema)),
                "query" => {
                    let deep = p["style"] == "deepObject";
                    let all: Vec<(&String, &String)> = query
                        .iter()
                        .filter(|(k, _)| if deep { k.starts_with(&format!("{name}[")) && k.ends_with(']') } else { *k == name })
                        .map(|(k, v)| (k, v))
                        .collect();
                    if all.is_empty() {
                        None
                    } else if deep {
                        Some(Value::Object(
                            all.iter()
                                .map(|(k, val)| (k[name.len() + 1..k.len() - 1].to_string(), Value::String(val.to_string())))
                                .collect(),
                        ))
                    } else if self.types_of(schema, 0).iter().any(|t| t == "array") {
                        let items = self.array_items(schema);
                        let split = p["explode"] == Value::Bool(false)
                            || p["collectionFormat"].as_str().is_some_and(|f| f != "multi")
                            || (self.swagger2 && p.get("collectionFormat").is_none());
                        let raws: Vec<String> = if split {
                            all[0].1.split(',').map(str::to_string).collect()
                        } else {
                            all.iter().map(|(_, v)| v.to_string()).collect()
                        };
                        Some(Value::Array(raws.iter().map(|r| self.coerce(r, items.unwrap_or(&Value::Null))).collect()))
                    } else {
                        Some(self.coerce(all[0].1, schema))
                    }
                }
                "body" => {
                    body_param = Some((p.clone(), ptr.clone()));
                    continue;
                }
                "formData" => {
                    form_fields.push((name, required, ptr.clone()));
                    continue;
                }
                _ => continue,
            };
            match value {
                None if required => v.errors.push(format!("{location} {label} is required ({})", self.cite(&format!("{ptr}/required")))),
                None => {}
                Some(val) => v.check(&node, &val, &format!("{location}.{name}")),
            }
        }
        if self.swagger2 {
            self.swagger_body(&mut v, op, rec, body_param, &form_fields);
        } else {
            self.oas_body(&mut v, op, rec);
        }
        v.errors
    }

    fn array_items<'s>(&'s self, s: &'s Value) -> Option<&'s Value> {
        if let Some(t) = s.get("$ref").and_then(Value::as_str).and_then(|r| self.resolve(r)) {
            return self.array_items(t.schema);
        }
        s.get("items").or_else(|| {
            ["anyOf", "oneOf"].iter().find_map(|k| s.get(*k).and_then(Value::as_array)?.iter().find_map(|b| self.array_items(b)))
        })
    }

    fn oas_body(&self, v: &mut Validator, op: &Op, rec: &Recorded) {
        let Some(rb) = self.node(&format!("{}/requestBody", op.ptr)) else { return };
        let Some((rb, ptr)) = self.follow(rb, format!("{}/requestBody", op.ptr)) else { return };
        if rec.body.is_empty() {
            if rb["required"] == Value::Bool(true) {
                v.errors.push(format!("a request body is required ({})", self.cite(&format!("{ptr}/required"))));
            }
            return;
        }
        let empty = serde_json::Map::new();
        let content = rb["content"].as_object().unwrap_or(&empty);
        let media = media_type(rec.header("content-type"));
        let Some((key, entry)) = media.as_deref().and_then(|m| pick(content, m)) else {
            let accepted: Vec<&str> = content.keys().map(String::as_str).collect();
            let sent = media.as_deref().unwrap_or("no Content-Type");
            v.errors.push(format!("the body is {sent}, not one of [{}] ({})", accepted.join(", "), self.cite(&format!("{ptr}/content"))));
            return;
        };
        let sptr = format!("{ptr}/content/{}/schema", pointer_escape(key));
        let Some(schema) = entry.get("schema") else { return };
        if is_json(key) {
            match serde_json::from_slice::<Value>(&rec.body) {
                Ok(body) => v.check(&self.schema_node(schema, sptr, format!("the request body of {}", op.route())), &body, "body"),
                Err(e) => v.errors.push(format!("the body is not JSON ({e}), but the spec takes {key} ({})", self.cite(&sptr))),
            }
        } else if key == "multipart/form-data" {
            let parts = part_names(rec);
            let resolved = self.follow(schema, sptr.clone()).map(|(s, _)| s).unwrap_or(Value::Null);
            for req in resolved["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !parts.iter().any(|p| p == req) {
                    v.errors.push(format!("multipart part `{req}` is required ({})", self.cite(&format!("{sptr}/required"))));
                }
            }
        }
    }

    fn swagger_body(
        &self,
        v: &mut Validator,
        op: &Op,
        rec: &Recorded,
        body_param: Option<(Value, String)>,
        form: &[(String, bool, String)],
    ) {
        let consumes: Vec<String> = self
            .node(&format!("{}/consumes", op.ptr))
            .or_else(|| self.doc.get("consumes"))
            .and_then(Value::as_array)
            .map(|c| c.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).collect())
            .unwrap_or_default();
        let media = media_type(rec.header("content-type"));
        if !rec.body.is_empty() && !consumes.is_empty() && (body_param.is_some() || !form.is_empty()) {
            let ok = media.as_deref().is_some_and(|m| consumes.iter().any(|c| c == m || c == "*/*"));
            if !ok {
                let sent = media.as_deref().unwrap_or("no Content-Type");
                v.errors.push(format!(
                    "the body is {sent}, not one of [{}] ({})",
                    consumes.join(", "),
                    self.cite(&format!("{}/consumes", op.ptr))
                ));
                return;
            }
        }
        if let Some((p, ptr)) = body_param {
            if rec.body.is_empty() {
                if p["required"] == Value::Bool(true) {
                    v.errors.push(format!("a request body is required ({})", self.cite(&format!("{ptr}/required"))));
                }
            } else if let Some(schema) = p.get("schema") {
                match serde_json::from_slice::<Value>(&rec.body) {
                    Ok(body) => v.check(
                        &self.schema_node(schema, format!("{ptr}/schema"), format!("the request body of {}", op.route())),
                        &body,
                        "body",
                    ),
                    Err(e) => v.errors.push(format!("the body is not JSON ({e}) ({})", self.cite(&format!("{ptr}/schema")))),
                }
            }
        }
        if form.iter().any(|(_, required, _)| *required) {
            let parts = part_names(rec);
            for (name, _, ptr) in form.iter().filter(|(n, required, _)| *required && !parts.contains(n)) {
                v.errors.push(format!("form field `{name}` is required ({})", self.cite(&format!("{ptr}/required"))));
            }
        }
    }

    /// Everything wrong with an answer `status`, `content_type`, `body` to `op`.
    pub fn check_response(&self, op: &Op, status: u16, content_type: Option<&str>, body: &[u8]) -> Vec<String> {
        let mut v = Validator::new(self, true);
        let responses_ptr = format!("{}/responses", op.ptr);
        let Some(responses) = self.node(&responses_ptr).and_then(Value::as_object) else { return Vec::new() };
        let keys = [status.to_string(), format!("{}XX", status / 100), "default".to_string()];
        let Some(key) = keys.iter().find(|k| responses.contains_key(k.as_str())) else {
            let documented: Vec<&str> = responses.keys().map(String::as_str).collect();
            return vec![format!("status {status} is not documented (only {}) ({})", documented.join(", "), self.cite(&responses_ptr))];
        };
        let Some((resp, ptr)) = self.follow(&responses[key.as_str()], format!("{responses_ptr}/{key}")) else { return Vec::new() };
        let media = media_type(content_type);
        let name = format!("the {status} answer of {}", op.route());
        // (schema, its pointer, the media type it is for)
        let documented: Option<(Value, String, String)> = if self.swagger2 {
            resp.get("schema").map(|s| (s.clone(), format!("{ptr}/schema"), "application/json".to_string()))
        } else {
            match resp.get("content").and_then(Value::as_object) {
                None => None,
                Some(content) if body.is_empty() => {
                    // An empty stream of records (NDJSON) is zero records, not a missing body.
                    let typed = content.iter().find(|(k, e)| {
                        !is_record_stream(k) && e.get("schema").is_some_and(|s| !(s["type"] == "string" && s["format"] == "binary"))
                    });
                    if let Some((k, _)) = typed {
                        return vec![format!(
                            "answers {status} with no body, but the spec's {status} is {k} ({})",
                            self.cite(&format!("{ptr}/content"))
                        )];
                    }
                    None
                }
                Some(content) => match media.as_deref().and_then(|m| pick(content, m)) {
                    Some((k, e)) => Some((
                        e.get("schema").cloned().unwrap_or(Value::Bool(true)),
                        format!("{ptr}/content/{}/schema", pointer_escape(k)),
                        k.clone(),
                    )),
                    None => {
                        let has: Vec<&str> = content.keys().map(String::as_str).collect();
                        let sent = media.as_deref().unwrap_or("no Content-Type");
                        return vec![format!(
                            "answers {status} with {sent}, but the spec's {status} is [{}] ({})",
                            has.join(", "),
                            self.cite(&format!("{ptr}/content"))
                        )];
                    }
                },
            }
        };
        let binary = |s: &Value| s["type"] == "file" || (s["type"] == "string" && s["format"] == "binary");
        match documented {
            None if !body.is_empty() => {
                vec![format!("answers {status} with a body, but the spec's {status} has none ({})", self.cite(&ptr))]
            }
            None => Vec::new(),
            Some((schema, sptr, _)) if body.is_empty() && !binary(&schema) && schema != Value::Bool(true) => {
                vec![format!("answers {status} with no body, but the spec's {status} has one ({})", self.cite(&sptr))]
            }
            Some((schema, sptr, for_media)) if is_record_stream(&for_media) => {
                for (n, line) in body.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.trim_ascii().is_empty()) {
                    match serde_json::from_slice::<Value>(line) {
                        Ok(value) => v.check(&self.schema_node(&schema, sptr.clone(), name.clone()), &value, &format!("line {}", n + 1)),
                        Err(e) => {
                            v.errors.push(format!("answers {status} with line {} that is not JSON ({e}) ({})", n + 1, self.cite(&sptr)))
                        }
                    }
                }
                v.errors
            }
            Some((schema, sptr, for_media)) => {
                let json_reply = media.as_deref().is_some_and(is_json);
                if body.is_empty() || binary(&schema) || !(json_reply || is_json(&for_media) && !self.swagger2) {
                    return Vec::new();
                }
                match serde_json::from_slice::<Value>(body) {
                    Ok(value) => v.check(&self.schema_node(&schema, sptr, name), &value, "body"),
                    Err(e) => v.errors.push(format!("answers {status} with a body that is not JSON ({e}) ({})", self.cite(&sptr))),
                }
                v.errors
            }
        }
    }
}

#[cfg(test)]
mod tests;
