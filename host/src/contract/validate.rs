//! Caller JSON → validated [`Request`], or S422 naming the field and what was wrong.
//!
//! Rules (docs/contract.md "Shapes"): unknown extra fields are ignored (the engine injects
//! `_caller_worker_id`, the router strips `provider`); a field of the wrong type is
//! rejected, never coerced, dropped or defaulted. An explicit `null` counts as absent
//! for optional fields only.

use super::codes::CallError;
use super::shapes::{CreateInput, ExecInput, FsWriteInput, Leaf, Request, StringMap};
use base64::Engine as _;
use serde_json::{Map, Value};

/// Longest sandbox id accepted; ids go into upstream URL paths.
const MAX_ID_LEN: usize = 256;

/// Parses `payload` as the input of `leaf`.
pub fn parse_request(leaf: Leaf, payload: &Value) -> Result<Request, CallError> {
    let obj = Fields::new(leaf, payload)?;
    Ok(match leaf {
        Leaf::Create => Request::Create(CreateInput {
            image: obj.req_str("image")?,
            idle_timeout_secs: obj.opt_positive("idle_timeout_secs")?,
            env: obj.opt_map("env")?,
            metadata: obj.opt_map("metadata")?,
        }),
        Leaf::Exec => Request::Exec(ExecInput {
            sandbox_id: obj.sandbox_id()?,
            cmd: obj.req_nonempty_str("cmd")?,
            args: obj.opt_str_list("args")?,
            env: obj.opt_map("env")?,
            cwd: obj.opt_str("cwd")?,
            timeout_ms: obj.opt_positive("timeout_ms")?,
        }),
        Leaf::Stop => Request::Stop { sandbox_id: obj.sandbox_id()? },
        Leaf::List => Request::List,
        Leaf::Snapshot => Request::Snapshot { sandbox_id: obj.sandbox_id()? },
        Leaf::Branch => {
            let sandbox_id = obj.sandbox_id()?;
            let count = match obj.opt_u64("count")? {
                None => 2,
                Some(0) => return Err(obj.err("`count` must be at least 1 (got 0)")),
                Some(n) => u32::try_from(n).map_err(|_| obj.err(format!("`count` must fit in 32 bits (got {n})")))?,
            };
            Request::Branch { sandbox_id, count }
        }
        Leaf::ExposePort => {
            let sandbox_id = obj.sandbox_id()?;
            let port = obj.req_u64("port")?;
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| obj.err(format!("`port` must be between 1 and 65535 (got {port})")))?;
            Request::ExposePort { sandbox_id, port }
        }
        Leaf::FsRead => Request::FsRead { sandbox_id: obj.sandbox_id()?, path: obj.req_nonempty_str("path")? },
        Leaf::FsWrite => {
            let sandbox_id = obj.sandbox_id()?;
            let path = obj.req_nonempty_str("path")?;
            let b64 = obj.req_str("bytes_base64")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| obj.err(format!("`bytes_base64` is not valid base64 ({e})")))?;
            let mode = match obj.opt_u64("mode")? {
                None => None,
                Some(m) => Some(u32::try_from(m).map_err(|_| obj.err(format!("`mode` must fit in 32 bits (got {m})")))?),
            };
            Request::FsWrite(FsWriteInput { sandbox_id, path, bytes, mode })
        }
    })
}

/// The payload's fields, with the leaf kept for error messages.
struct Fields<'a> {
    leaf: Leaf,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(leaf: Leaf, payload: &'a Value) -> Result<Self, CallError> {
        match payload {
            Value::Object(map) => Ok(Fields { leaf, map }),
            other => Err(CallError::bad_input(format!(
                "{leaf}: the input must be a JSON object, got {}. Send e.g. {}.",
                kind(other),
                example(leaf)
            ))),
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> CallError {
        CallError::bad_input(format!("{}: {what}. Fix the input; retrying it unchanged will fail again.", self.leaf))
    }

    /// The field, with `null` treated as absent.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn missing(&self, name: &str, ty: &str) -> CallError {
        self.err(format!("missing required field `{name}` ({ty})"))
    }

    fn wrong(&self, name: &str, ty: &str, got: &Value) -> CallError {
        self.err(format!("field `{name}` must be {ty}, got {}", kind(got)))
    }

    fn req_str(&self, name: &str) -> Result<String, CallError> {
        match self.get(name) {
            None => Err(self.missing(name, "a string")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    fn req_nonempty_str(&self, name: &str) -> Result<String, CallError> {
        let s = self.req_str(name)?;
        if s.is_empty() {
            return Err(self.err(format!("field `{name}` must not be empty")));
        }
        Ok(s)
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>, CallError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(name, "a string", v)),
        }
    }

    fn opt_u64(&self, name: &str) -> Result<Option<u64>, CallError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.wrong(name, "a non-negative integer", v)),
        }
    }

    fn req_u64(&self, name: &str) -> Result<u64, CallError> {
        self.opt_u64(name)?.ok_or_else(|| self.missing(name, "an integer"))
    }

    fn opt_positive(&self, name: &str) -> Result<Option<u64>, CallError> {
        match self.opt_u64(name)? {
            Some(0) => Err(self.err(format!("field `{name}` must be at least 1 (got 0)"))),
            other => Ok(other),
        }
    }

    fn opt_str_list(&self, name: &str) -> Result<Vec<String>, CallError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.err(format!("field `{name}` must be an array of strings, but element {i} is {}", kind(other)))),
                })
                .collect(),
            Some(v) => Err(self.wrong(name, "an array of strings", v)),
        }
    }

    fn opt_map(&self, name: &str) -> Result<StringMap, CallError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(self.err(format!("field `{name}` must map strings to strings, but `{name}.{k}` is {}", kind(other)))),
                })
                .collect(),
            Some(v) => Err(self.wrong(name, "an object of string values", v)),
        }
    }

    /// `sandbox_id`: non-empty, at most 256 of `[A-Za-z0-9._:-]`, not starting with `.`,
    /// so an id can never walk an upstream URL path.
    fn sandbox_id(&self) -> Result<String, CallError> {
        let id = self.req_nonempty_str("sandbox_id")?;
        if !valid_sandbox_id(&id) {
            return Err(self.err(format!(
                "field `sandbox_id` must be 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ : - not starting with `.` (got {:?})",
                truncate(&id, 80)
            )));
        }
        Ok(id)
    }
}

/// The rule every sandbox id must satisfy, from callers and from plugins alike: 1 to 256
/// of `[A-Za-z0-9._:-]`, not starting with `.`.
pub fn valid_sandbox_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => "a negative integer",
        Value::Number(n) if n.is_u64() => "an integer",
        Value::Number(_) => "a non-integer number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A minimal valid input for `leaf`, quoted in errors.
pub fn example(leaf: Leaf) -> &'static str {
    match leaf {
        Leaf::Create => r#"{"image":"base"}"#,
        Leaf::Exec => r#"{"sandbox_id":"sbx1","cmd":"echo","args":["hi"]}"#,
        Leaf::Stop | Leaf::Snapshot => r#"{"sandbox_id":"sbx1"}"#,
        Leaf::List => "{}",
        Leaf::Branch => r#"{"sandbox_id":"sbx1","count":2}"#,
        Leaf::ExposePort => r#"{"sandbox_id":"sbx1","port":8080}"#,
        Leaf::FsRead => r#"{"sandbox_id":"sbx1","path":"/tmp/a.txt"}"#,
        Leaf::FsWrite => r#"{"sandbox_id":"sbx1","path":"/tmp/a.txt","bytes_base64":"aGk="}"#,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::codes::Code;
    use serde_json::json;

    fn bad(leaf: Leaf, v: Value) -> String {
        let e = parse_request(leaf, &v).expect_err("must be rejected");
        assert_eq!(e.code, Code::BadInput);
        e.message()
    }

    #[test]
    fn create_accepts_the_documented_shape_and_ignores_extras() {
        let r = parse_request(
            Leaf::Create,
            &json!({"image":"base","idle_timeout_secs":60,"env":{"A":"1"},"metadata":{"k":"v"},"_caller_worker_id":"w1"}),
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Create(CreateInput {
                image: "base".into(),
                idle_timeout_secs: Some(60),
                env: vec![("A".into(), "1".into())],
                metadata: vec![("k".into(), "v".into())],
            })
        );
    }

    #[test]
    fn wrong_types_are_rejected_with_the_field_named() {
        assert!(bad(Leaf::Create, json!({})).contains("missing required field `image`"));
        assert!(bad(Leaf::Create, json!({"image":5}))
            .ends_with("field `image` must be a string, got an integer. Fix the input; retrying it unchanged will fail again."));
        assert!(bad(Leaf::Create, json!({"image":"b","env":{"A":1}})).contains("`env.A` is an integer"));
        assert!(bad(Leaf::Create, json!({"image":"b","idle_timeout_secs":1.5})).contains("non-integer"));
        assert!(bad(Leaf::Create, json!({"image":"b","idle_timeout_secs":-1})).contains("negative"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":"ls","args":["-l",2]})).contains("element 1 is an integer"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":""})).contains("`cmd` must not be empty"));
        assert!(bad(Leaf::ExposePort, json!({"sandbox_id":"s","port":0})).contains("between 1 and 65535 (got 0)"));
        assert!(bad(Leaf::ExposePort, json!({"sandbox_id":"s","port":65536})).contains("(got 65536)"));
        assert!(bad(Leaf::Branch, json!({"sandbox_id":"s","count":0})).contains("at least 1"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","bytes_base64":"!!"})).contains("not valid base64"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","bytes_base64":"","mode":4294967296u64})).contains("32 bits"));
        assert!(bad(Leaf::Stop, json!({"sandbox_id":"../admin"})).contains("sandbox_id"));
        assert!(bad(Leaf::List, json!([])).contains("must be a JSON object, got an array"));
    }

    #[test]
    fn defaults_are_the_contracts() {
        assert_eq!(parse_request(Leaf::Branch, &json!({"sandbox_id":"s"})).unwrap(), Request::Branch { sandbox_id: "s".into(), count: 2 });
        assert_eq!(
            parse_request(Leaf::FsWrite, &json!({"sandbox_id":"s","path":"/a","bytes_base64":"aGk=","mode":420})).unwrap(),
            Request::FsWrite(FsWriteInput { sandbox_id: "s".into(), path: "/a".into(), bytes: b"hi".to_vec(), mode: Some(420) })
        );
    }
}
