//! JSON values against the schemas of a vendored document: `$ref`, `type` (with OpenAPI
//! 3.0's `nullable`, Swagger's `x-nullable` and 3.1's type arrays and `type: null`),
//! `required`, `properties`, `additionalProperties`, `enum`, `const`, `items`, `allOf`,
//! `anyOf`, `oneOf`, string and number bounds, `pattern`, and the cheap formats (`int32`,
//! `int64`, `date-time`, `date`, `uuid`). Not checked: `not`, `discriminator`,
//! `uniqueItems`, `multipleOf`, `min/maxProperties`, `readOnly`/`writeOnly`, other formats.
//!
//! In strict mode (the simulators' answers) an object may not carry a property its schema
//! does not declare, unless the schema leaves it open (`additionalProperties` other than
//! `false`, or no `properties` at all): a simulator that invents a field a plugin then
//! relies on is drift, whether or not JSON Schema would allow it.

use super::Spec;
use serde_json::Value;
use std::collections::BTreeSet;

const UNDECLARED: &str = " is not a property ";

/// Whether `message` is the strict check's: a property the schema does not declare.
pub(super) fn is_undeclared(message: &str) -> bool {
    message.contains(UNDECLARED) && message.contains(" declares (")
}

/// Nesting deeper than this is a cycle (`$ref` loops) or a hostile value.
const MAX_DEPTH: usize = 64;

pub(super) struct Validator<'a> {
    pub spec: &'a Spec,
    pub strict: bool,
    pub errors: Vec<String>,
}

/// A schema and where it is: its JSON pointer in the document and the nearest schema name.
#[derive(Clone)]
pub(super) struct Node<'a> {
    pub schema: &'a Value,
    pub ptr: String,
    pub name: String,
}

impl<'a> Node<'a> {
    fn child(&self, schema: &'a Value, path: &str) -> Node<'a> {
        Node { schema, ptr: format!("{}/{}", self.ptr, path.replace('~', "~0")), name: self.name.clone() }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "null" => v.is_null(),
        other => kind(v) == other,
    }
}

/// A value as it appears in a message: short, JSON.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Equality as JSON Schema means it (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The types `schema` declares (`type`, a 3.1 type array), or those its keywords imply.
fn declared_types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if s.get("properties").is_some() || s.get("required").is_some() || s.get("additionalProperties").is_some() => vec!["object"],
        _ if s.get("items").is_some() => vec!["array"],
        _ => vec![],
    }
}

/// Whether `schema` itself admits null.
fn admits_null(s: &Value) -> bool {
    s.get("nullable") == Some(&Value::Bool(true))
        || s.get("x-nullable") == Some(&Value::Bool(true))
        || declared_types(s).contains(&"null")
        || s.get("enum").and_then(Value::as_array).is_some_and(|e| e.contains(&Value::Null))
        || s.get("const") == Some(&Value::Null)
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36 && b.iter().enumerate().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

impl<'a> Validator<'a> {
    pub fn new(spec: &'a Spec, strict: bool) -> Self {
        Validator { spec, strict, errors: Vec::new() }
    }

    /// Records `msg` with the rule's place in the spec: `{schema}` in `msg` is the schema's
    /// name, else the name is cited beside the place.
    fn fail(&mut self, n: &Node, keyword: &str, msg: String) {
        let cite = self.spec.cite(&format!("{}/{}", n.ptr, keyword).replace("//", "/"));
        let line = if msg.contains("{schema}") {
            format!("{} ({cite})", msg.replace("{schema}", &n.name))
        } else {
            format!("{msg} ({}, {cite})", n.name)
        };
        self.errors.push(line);
    }

    /// Checks `v` (found at `at`, e.g. `body.templateID`) against `n`.
    pub fn check(&mut self, n: &Node<'_>, v: &Value, at: &str) {
        self.walk(n, v, at, false, 0);
    }

    /// `open_here`: this object level's extra properties are judged by a parent (allOf).
    fn walk(&mut self, n: &Node<'_>, v: &Value, at: &str, open_here: bool, depth: usize) {
        if depth > MAX_DEPTH {
            return self.fail(n, "", format!("{at} nests deeper than {MAX_DEPTH} levels"));
        }
        let s = n.schema;
        let obj = match s {
            Value::Bool(true) => return,
            Value::Bool(false) => return self.fail(n, "", format!("{at} is not allowed here")),
            Value::Object(o) => o,
            _ => return,
        };
        if v.is_null() && admits_null(s) {
            return;
        }
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            match self.spec.resolve(r) {
                Some(target) => self.walk(&target, v, at, open_here, depth + 1),
                None => self.fail(n, "$ref", format!("{at}: the spec's $ref {r} does not resolve")),
            }
        }
        let types = declared_types(s);
        if !types.is_empty() && !types.iter().any(|t| is_type(v, t)) {
            let want = types.join(" or ");
            let got = if v.is_null() { "null".to_string() } else { format!("{} {}", kind(v), show(v)) };
            return self.fail(n, "type", format!("{at} must be {want}, not {got}"));
        }
        if v.is_null() && types.is_empty() && obj.get("$ref").is_none() && !["allOf", "anyOf", "oneOf"].iter().any(|k| obj.contains_key(*k))
        {
            // An untyped schema (description only) admits anything, null included.
            return;
        }
        if let Some(e) = obj.get("enum").and_then(Value::as_array) {
            if !e.iter().any(|x| same(x, v)) {
                let options: Vec<String> = e.iter().map(show).collect();
                self.fail(n, "enum", format!("{at} = {} is not one of [{}]", show(v), options.join(", ")));
            }
        }
        if let Some(c) = obj.get("const") {
            if !same(c, v) {
                self.fail(n, "const", format!("{at} = {} must be {}", show(v), show(c)));
            }
        }
        match v {
            Value::String(text) => self.string(n, text, at),
            Value::Number(_) => self.number(n, v, at),
            Value::Array(items) => self.array(n, items, at, depth),
            Value::Object(map) => self.object(n, map, at, open_here, depth),
            _ => {}
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for (i, b) in all.iter().enumerate() {
                self.walk(&n.child(b, &format!("allOf/{i}")), v, at, true, depth + 1);
            }
        }
        for key in ["anyOf", "oneOf"] {
            let Some(branches) = obj.get(key).and_then(Value::as_array) else { continue };
            let own_properties = obj.contains_key("properties");
            let mut passed = 0;
            // Per failing branch: whether it is of the value's type at all, and its errors.
            let mut failed: Vec<(bool, Vec<String>)> = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                let mut sub = Validator::new(self.spec, self.strict);
                sub.walk(&n.child(b, &format!("{key}/{i}")), v, at, open_here || own_properties, depth + 1);
                if sub.errors.is_empty() {
                    passed += 1;
                } else {
                    let types = self.spec.types_of(b, 0);
                    let fits = types.is_empty() || types.iter().any(|t| is_type(v, t));
                    failed.push((fits, sub.errors));
                }
            }
            if passed == 0 {
                let fitting: Vec<&Vec<String>> = failed.iter().filter(|(fits, _)| *fits).map(|(_, e)| e).collect();
                if let [only] = fitting.as_slice() {
                    // One branch is of the value's type (`anyOf: [X, {type: null}]`): its words.
                    self.errors.extend(only.iter().cloned());
                } else {
                    let why: Vec<String> = failed.iter().enumerate().map(|(i, (_, e))| format!("[{i}] {}", e.join(", "))).collect();
                    self.fail(n, key, format!("{at} matches none of {key}: {}", why.join("; ")));
                }
            } else if key == "oneOf" && passed > 1 {
                self.fail(n, key, format!("{at} matches {passed} branches of oneOf, not exactly one"));
            }
        }
    }

    fn string(&mut self, n: &Node, text: &str, at: &str) {
        let s = n.schema;
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64).filter(|m| len < *m) {
            self.fail(n, "minLength", format!("{at} is {len} characters, fewer than minLength {min}"));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64).filter(|m| len > *m) {
            self.fail(n, "maxLength", format!("{at} is {len} characters, more than maxLength {max}"));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if self.spec.pattern(p).is_some_and(|re| !re.is_match(text)) {
                self.fail(n, "pattern", format!("{at} = {} does not match pattern {p}", show(&Value::String(text.into()))));
            }
        }
        let ok = match s.get("format").and_then(Value::as_str) {
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
            Some("uuid") => is_uuid(text),
            _ => true,
        };
        if !ok {
            let f = s["format"].as_str().unwrap_or_default();
            self.fail(n, "format", format!("{at} = {} is not a valid {f}", show(&Value::String(text.into()))));
        }
    }

    fn number(&mut self, n: &Node, v: &Value, at: &str) {
        let s = n.schema;
        let x = v.as_f64().unwrap_or(0.0);
        let bound = |k: &str| s.get(k).and_then(Value::as_f64);
        // 3.0: `exclusiveMinimum: true` makes `minimum` exclusive; 3.1: it is the bound itself.
        let excl = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
        if let Some(min) = bound("minimum") {
            if x < min || (excl("exclusiveMinimum") && x == min) {
                self.fail(n, "minimum", format!("{at} = {} is below the minimum {min}", show(v)));
            }
        }
        if let Some(max) = bound("maximum") {
            if x > max || (excl("exclusiveMaximum") && x == max) {
                self.fail(n, "maximum", format!("{at} = {} is above the maximum {max}", show(v)));
            }
        }
        if let Some(min) = bound("exclusiveMinimum").filter(|m| x <= *m) {
            self.fail(n, "exclusiveMinimum", format!("{at} = {} must be greater than {min}", show(v)));
        }
        if let Some(max) = bound("exclusiveMaximum").filter(|m| x >= *m) {
            self.fail(n, "exclusiveMaximum", format!("{at} = {} must be less than {max}", show(v)));
        }
        let range = match s.get("format").and_then(Value::as_str) {
            Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX), "int32")),
            Some("int64") => Some((i64::MIN, i64::MAX, "int64")),
            _ => None,
        };
        if let Some((lo, hi, f)) = range {
            if !v.as_i64().is_some_and(|i| (lo..=hi).contains(&i)) && is_type(v, "integer") {
                self.fail(n, "format", format!("{at} = {} is out of the {f} range", show(v)));
            }
        }
    }

    fn array(&mut self, n: &Node<'_>, items: &[Value], at: &str, depth: usize) {
        let s = n.schema;
        let len = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64).filter(|m| len < *m) {
            self.fail(n, "minItems", format!("{at} has {len} items, fewer than minItems {min}"));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64).filter(|m| len > *m) {
            self.fail(n, "maxItems", format!("{at} has {len} items, more than maxItems {max}"));
        }
        if let Some(item_schema) = s.get("items") {
            let child = n.child(item_schema, "items");
            for (i, item) in items.iter().enumerate() {
                self.walk(&child, item, &format!("{at}[{i}]"), false, depth + 1);
            }
        }
    }

    fn object(&mut self, n: &Node<'_>, map: &serde_json::Map<String, Value>, at: &str, open_here: bool, depth: usize) {
        let s = n.schema;
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for p in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(p) {
                    self.fail(n, "required", format!("{at}.{p} is required by {{schema}}"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            let key_at = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(p), _) => self.walk(&n.child(p, &format!("properties/{}", k.replace('/', "~1"))), v, &key_at, false, depth + 1),
                (None, Some(Value::Bool(false))) => {
                    self.fail(n, "additionalProperties", format!("{key_at} is not a property of {{schema}} (additionalProperties: false)"))
                }
                (None, Some(extra @ Value::Object(_))) => self.walk(&n.child(extra, "additionalProperties"), v, &key_at, false, depth + 1),
                _ => {}
            }
        }
        // Judged here: an object with its own properties or allOf parts (whose branches are
        // open); a bare anyOf/oneOf leaves it to the branch that matches.
        let judged_here = props.is_some() || s.get("allOf").is_some();
        if self.strict && !open_here && judged_here && s.get("additionalProperties").is_none() {
            if let Some(declared) = self.declared(s, 0) {
                for k in map.keys().filter(|k| !declared.contains(*k)) {
                    self.fail(n, "properties", format!("{at}.{k}{UNDECLARED}{{schema}} declares"));
                }
            }
        }
    }

    /// Every property `s` declares (its own, its `$ref`'s, its `allOf`/`anyOf`/`oneOf`
    /// branches'); `None` when it leaves the object open.
    fn declared(&self, s: &Value, depth: usize) -> Option<BTreeSet<String>> {
        if depth > MAX_DEPTH {
            return None;
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            return self.declared(self.spec.resolve(r)?.schema, depth + 1);
        }
        match s.get("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(_) => return None,
        }
        let mut set: BTreeSet<String> =
            s.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default();
        let mut object_like = s.get("properties").is_some();
        for key in ["allOf", "anyOf", "oneOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                let resolved = match b.get("$ref").and_then(Value::as_str) {
                    Some(r) => self.spec.resolve(r)?.schema,
                    None => b,
                };
                let types = declared_types(resolved);
                if !types.is_empty() && !types.contains(&"object") && resolved.get("allOf").is_none() {
                    continue; // `{type: null}` and other non-object branches declare nothing
                }
                set.extend(self.declared(b, depth + 1)?);
                object_like = true;
            }
        }
        object_like.then_some(set)
    }
}
