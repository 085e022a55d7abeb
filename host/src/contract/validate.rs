//! Caller JSON → validated [`Request`], or S422 naming the field and what was wrong.
//!
//! Rules (docs/contract.md "Shapes"): unknown extra fields are ignored (the engine injects
//! `_caller_worker_id`, the router strips `provider`); a field of the wrong type is
//! rejected, never coerced, dropped or defaulted. An explicit `null` counts as absent
//! for optional fields only. Caller text quoted in an error is cut to [`QUOTE_CHARS`]
//! characters, so an error names the input without echoing megabytes of it back.

use super::codes::CallError;
use super::shapes::{CreateInput, ExecInput, FsWriteInput, Leaf, Request, StringMap};
use crate::calls::create::CREATED_BY;
use base64::Engine as _;
use serde_json::{Map, Value};

/// Longest sandbox id accepted; ids go into upstream URL paths.
const MAX_ID_LEN: usize = 256;
/// Caller text quoted in an error message is cut after this many characters.
pub const QUOTE_CHARS: usize = 80;

/// Parses `payload` as the input of `leaf`.
pub fn parse_request(leaf: Leaf, payload: &Value) -> Result<Request, CallError> {
    let obj = Fields::new(leaf, payload)?;
    Ok(match leaf {
        Leaf::Create => {
            let name = obj.opt_str("name")?;
            let mut metadata = obj.opt_map("metadata")?;
            // The host tags every sandbox it creates with this key (calls/create.rs): a
            // caller's own value is bad input, refused before anything runs.
            if metadata.iter().any(|(k, _)| k == CREATED_BY) {
                return Err(obj.err(format!(
                    "metadata key `{CREATED_BY}` is the host's own (it names the machine that created the sandbox); use another key"
                )));
            }
            if let Some(name) = &name {
                match metadata.iter().find(|(k, _)| k == "name") {
                    Some((_, v)) if v != name => {
                        return Err(obj.err(format!("`name` is {} but `metadata.name` is {}; give one of them", quote(name), quote(v))))
                    }
                    Some(_) => {}
                    None => metadata.push(("name".into(), name.clone())),
                }
            }
            Request::Create(CreateInput {
                image: obj.req_str("image")?,
                idle_timeout_secs: obj.opt_positive("idle_timeout_secs")?,
                env: obj.opt_env("env")?,
                metadata,
                name,
                cpus: obj.opt_positive_u32("cpus")?,
                memory_mb: obj.opt_positive_u32("memory_mb")?,
                network: obj.opt_bool("network")?,
            })
        }
        Leaf::Exec => {
            let sandbox_id = obj.sandbox_id()?;
            let (cmd, args) = obj.command()?;
            let cwd = match (obj.opt_str("cwd")?, obj.opt_str("workdir")?) {
                (Some(a), Some(b)) if a != b => {
                    return Err(obj.err(format!("`cwd` is {} but `workdir` is {}; give one of them", quote(&a), quote(&b))))
                }
                (a, b) => a.or(b),
            };
            let stdin = obj.opt_base64("stdin")?.filter(|b| !b.is_empty());
            let timeout_ms = obj.opt_positive("timeout_ms")?;
            Request::Exec(ExecInput { sandbox_id, cmd, args, env: obj.opt_env("env")?, cwd, timeout_ms, stdin })
        }
        Leaf::Get => Request::Get { sandbox_id: obj.sandbox_id()? },
        Leaf::SetTimeout => {
            let sandbox_id = obj.sandbox_id()?;
            let timeout_secs = obj.opt_positive("timeout_secs")?.ok_or_else(|| obj.missing("timeout_secs", "an integer"))?;
            Request::SetTimeout { sandbox_id, timeout_secs }
        }
        Leaf::Pause => Request::Pause { sandbox_id: obj.sandbox_id()? },
        Leaf::Resume => Request::Resume { sandbox_id: obj.sandbox_id()?, timeout_secs: obj.opt_positive("timeout_secs")? },
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
            let bytes = obj.file_body()?;
            let mode = obj.mode()?;
            let parents = obj.opt_bool("parents")?.unwrap_or(false);
            Request::FsWrite(FsWriteInput { sandbox_id, path, bytes, mode, parents })
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

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, CallError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(name, "a boolean", v)),
        }
    }

    fn opt_positive_u32(&self, name: &str) -> Result<Option<u32>, CallError> {
        match self.opt_positive(name)? {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| self.err(format!("`{name}` must fit in 32 bits (got {n})"))),
        }
    }

    fn opt_base64(&self, name: &str) -> Result<Option<Vec<u8>>, CallError> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map(Some)
                .map_err(|e| self.err(format!("`{name}` is not valid base64 ({e})"))),
        }
    }

    /// `cmd` + `args`, or the engine daemon's `argv`, or a whitespace `cmd` alone split
    /// with shlex rules (the daemon's `resolve_cmd_shape` precedence).
    fn command(&self) -> Result<(String, Vec<String>), CallError> {
        let argv = self.opt_str_list("argv")?;
        let args = self.opt_str_list("args")?;
        let cmd = self.opt_str("cmd")?;
        if !argv.is_empty() {
            if cmd.is_some() || !args.is_empty() {
                return Err(self.err("give either `argv` or `cmd`/`args`, not both"));
            }
            if argv[0].is_empty() {
                return Err(self.err("`argv[0]` (the executable) must not be empty"));
            }
            let mut argv = argv.into_iter();
            let cmd = argv.next().unwrap_or_default();
            return Ok((cmd, argv.collect()));
        }
        let cmd = match cmd {
            None => return Err(self.missing("cmd", "a string (or `argv`, an array of strings)")),
            Some(c) if c.trim().is_empty() => return Err(self.err("field `cmd` must not be empty")),
            Some(c) => c,
        };
        if args.is_empty() && cmd.contains(char::is_whitespace) {
            let words =
                shlex::split(&cmd).ok_or_else(|| self.err(format!("`cmd` {} has unbalanced quotes or a trailing escape", quote(&cmd))))?;
            let mut words = words.into_iter();
            let first = words.next().filter(|w| !w.is_empty()).ok_or_else(|| self.err("field `cmd` must not be empty"))?;
            return Ok((first, words.collect()));
        }
        Ok((cmd, args))
    }

    /// `env` as an object of strings, or the engine daemon's list of `"K=V"`.
    fn opt_env(&self, name: &str) -> Result<StringMap, CallError> {
        let Some(Value::Array(items)) = self.get(name) else {
            return self.opt_map(name);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let pair = v.as_str().and_then(|s| s.split_once('=')).filter(|(k, _)| !k.is_empty());
                pair.map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| self.err(format!("`{name}[{i}]` must be a \"KEY=value\" string, got {}", kind(v))))
            })
            .collect()
    }

    /// Exactly one of `bytes_base64`, `content_b64` (the same) or `content` (UTF-8 text).
    fn file_body(&self) -> Result<Vec<u8>, CallError> {
        let given: Vec<&str> = ["bytes_base64", "content_b64", "content"].into_iter().filter(|f| self.get(f).is_some()).collect();
        match given.as_slice() {
            ["content"] => Ok(self.req_str("content")?.into_bytes()),
            [one] => Ok(self.opt_base64(one)?.unwrap_or_default()),
            [] => Err(self.missing("bytes_base64", "a base64 string, or `content` as UTF-8 text")),
            many => Err(self.err(format!("give exactly one file body, got {}", many.join(" and ")))),
        }
    }

    /// `mode` as an integer or an octal string such as `"0644"`; at most 0o7777.
    fn mode(&self) -> Result<Option<u32>, CallError> {
        let mode = match self.get("mode") {
            None => return Ok(None),
            Some(Value::String(s)) => {
                // Octal digits only, after at most one `0o`: no sign, no `0o0o`.
                let digits = s.strip_prefix("0o").unwrap_or(s);
                let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
                octal
                    .then(|| u32::from_str_radix(digits, 8).ok())
                    .flatten()
                    .ok_or_else(|| self.err(format!("`mode` {} is not an octal number such as \"0644\"", quote(s))))?
            }
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| self.wrong("mode", "an integer or an octal string", v))?;
                u32::try_from(n).map_err(|_| self.err(format!("`mode` must fit in 32 bits (got {n})")))?
            }
        };
        if mode > 0o7777 {
            return Err(self.err(format!("`mode` {mode:#o} has bits beyond 0o7777")));
        }
        Ok(Some(mode))
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
                    other => {
                        Err(self.err(format!("field `{name}` must map strings to strings, but {name}[{}] is {}", quote(k), kind(other))))
                    }
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
                "field `sandbox_id` must be 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ : - not starting with `.` (got {})",
                quote(&id)
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
        // Past u64 and i64 (`18446744073709551616`, `-9223372036854775809`) serde_json
        // keeps only an f64: whole, but no 64-bit integer.
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.0e18) => "an integer beyond 64 bits",
        Value::Number(_) => "a non-integer number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` quoted for an error message, cut after [`QUOTE_CHARS`] characters (`…` marks a cut).
fn quote(s: &str) -> String {
    let cut = truncate(s, QUOTE_CHARS);
    if cut.len() < s.len() {
        format!("{cut:?}… ({} bytes)", s.len())
    } else {
        format!("{cut:?}")
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
        Leaf::Stop | Leaf::Snapshot | Leaf::Get | Leaf::Pause | Leaf::Resume => r#"{"sandbox_id":"sbx1"}"#,
        Leaf::SetTimeout => r#"{"sandbox_id":"sbx1","timeout_secs":600}"#,
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
                name: None,
                cpus: None,
                memory_mb: None,
                network: None,
            })
        );
    }

    #[test]
    fn wrong_types_are_rejected_with_the_field_named() {
        assert!(bad(Leaf::Create, json!({})).contains("missing required field `image`"));
        assert!(bad(Leaf::Create, json!({"image":5}))
            .ends_with("field `image` must be a string, got an integer. Fix the input; retrying it unchanged will fail again."));
        assert!(bad(Leaf::Create, json!({"image":"b","env":{"A":1}})).contains(r#"env["A"] is an integer"#));
        assert!(bad(Leaf::Create, json!({"image":"b","idle_timeout_secs":1.5})).contains("non-integer"));
        assert!(bad(Leaf::Create, json!({"image":"b","idle_timeout_secs":-1})).contains("negative"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":"ls","args":["-l",2]})).contains("element 1 is an integer"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":""})).contains("`cmd` must not be empty"));
        assert!(bad(Leaf::ExposePort, json!({"sandbox_id":"s","port":0})).contains("between 1 and 65535 (got 0)"));
        assert!(bad(Leaf::ExposePort, json!({"sandbox_id":"s","port":65536})).contains("(got 65536)"));
        assert!(bad(Leaf::Branch, json!({"sandbox_id":"s","count":0})).contains("at least 1"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","bytes_base64":"!!"})).contains("not valid base64"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","bytes_base64":"","mode":4294967296u64})).contains("32 bits"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","bytes_base64":"","mode":0o17777})).contains("beyond"));
        assert!(bad(Leaf::Stop, json!({"sandbox_id":"../admin"})).contains("sandbox_id"));
        assert!(bad(Leaf::List, json!([])).contains("must be a JSON object, got an array"));
    }

    /// Issue 12 (generated inputs): an error names the bad input without echoing it
    /// whole; a 10 MiB key, name or path comes back cut to a few dozen characters.
    #[test]
    fn caller_text_in_errors_is_cut() {
        let huge = "k".repeat(1 << 20);
        let cases = [
            (Leaf::Create, json!({"image":"b","env":{huge.as_str(): 1}})),
            (Leaf::Create, json!({"image":"b","name": huge,"metadata":{"name":"other"}})),
            (Leaf::Exec, json!({"sandbox_id":"s","cmd":"ls","cwd": huge,"workdir":"/b"})),
            (Leaf::Exec, json!({"sandbox_id":"s","cmd": format!("'{huge} x")})),
            (Leaf::Stop, json!({"sandbox_id": huge})),
            (Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","content":"","mode": huge})),
        ];
        for (leaf, v) in cases {
            let msg = bad(leaf, v);
            assert!(msg.len() < 400, "{} bytes: {}", msg.len(), &msg[..400]);
            assert!(msg.contains("… (10485"), "the cut is marked with the length: {msg}");
        }
    }

    #[test]
    fn the_hosts_own_metadata_key_is_bad_input() {
        let msg = bad(Leaf::Create, json!({"image":"b","metadata":{CREATED_BY: "elsewhere"}}));
        assert!(msg.contains("is the host's own"), "{msg}");
    }

    #[test]
    fn numbers_past_64_bits_and_loose_modes_are_named_and_refused() {
        let big: Value = serde_json::from_str("18446744073709551616").unwrap();
        assert!(bad(Leaf::ExposePort, json!({"sandbox_id":"s","port": big})).contains("an integer beyond 64 bits"));
        let low: Value = serde_json::from_str("-9223372036854775809").unwrap();
        assert!(bad(Leaf::Branch, json!({"sandbox_id":"s","count": low})).contains("an integer beyond 64 bits"));
        assert!(bad(Leaf::SetTimeout, json!({"sandbox_id":"s","timeout_secs": 1.5})).contains("non-integer"));
        for mode in ["+644", "0o0o644", "0o", "", "-1", "64 4", "0x1ff"] {
            assert!(
                bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","content":"","mode": mode})).contains("not an octal"),
                "{mode:?}"
            );
        }
        let w = |mode: &str| match parse_request(Leaf::FsWrite, &json!({"sandbox_id":"s","path":"/a","content":"","mode": mode})).unwrap() {
            Request::FsWrite(w) => w.mode,
            other => panic!("{other:?}"),
        };
        assert_eq!((w("0644"), w("0o755"), w("7777")), (Some(0o644), Some(0o755), Some(0o7777)));
    }

    #[test]
    fn defaults_are_the_contracts() {
        assert_eq!(parse_request(Leaf::Branch, &json!({"sandbox_id":"s"})).unwrap(), Request::Branch { sandbox_id: "s".into(), count: 2 });
        assert_eq!(
            parse_request(Leaf::FsWrite, &json!({"sandbox_id":"s","path":"/a","bytes_base64":"aGk=","mode":420})).unwrap(),
            Request::FsWrite(FsWriteInput {
                sandbox_id: "s".into(),
                path: "/a".into(),
                bytes: b"hi".to_vec(),
                mode: Some(420),
                parents: false
            })
        );
    }

    fn exec(v: Value) -> ExecInput {
        match parse_request(Leaf::Exec, &v).unwrap() {
            Request::Exec(e) => e,
            other => panic!("{other:?}"),
        }
    }

    fn argv(e: &ExecInput) -> Vec<&str> {
        std::iter::once(e.cmd.as_str()).chain(e.args.iter().map(String::as_str)).collect()
    }

    /// The engine daemon's exec shapes (`resolve_cmd_shape`) mean the same here.
    #[test]
    fn exec_accepts_the_engine_daemons_command_shapes() {
        assert_eq!(argv(&exec(json!({"sandbox_id":"s","argv":["ls","-l","/tmp"]}))), ["ls", "-l", "/tmp"]);
        assert_eq!(argv(&exec(json!({"sandbox_id":"s","cmd":"echo 'a b' c"}))), ["echo", "a b", "c"]);
        // Today's meaning is kept: with `args`, `cmd` is the executable as given.
        assert_eq!(argv(&exec(json!({"sandbox_id":"s","cmd":"my prog","args":["x"]}))), ["my prog", "x"]);
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","argv":["ls"],"cmd":"ls"})).contains("not both"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":"echo 'open"})).contains("unbalanced quotes"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s"})).contains("missing required field `cmd`"));
        let e = exec(json!({"sandbox_id":"s","cmd":"env","workdir":"/w","env":["A=1","B=x=y"],"stdin":"aGk="}));
        assert_eq!(e.cwd.as_deref(), Some("/w"));
        assert_eq!(e.env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        assert_eq!(e.stdin.as_deref(), Some(&b"hi"[..]));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":"ls","cwd":"/a","workdir":"/b"})).contains("give one of them"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":"ls","env":["NOEQUALS"]})).contains("`env[0]`"));
        assert!(bad(Leaf::Exec, json!({"sandbox_id":"s","cmd":"ls","stdin":"!!"})).contains("`stdin` is not valid base64"));
    }

    #[test]
    fn create_accepts_the_engine_daemons_fields() {
        let v = json!({"image":"base","name":"w1","cpus":2,"memory_mb":1024,"network":false,"env":["A=1"]});
        let Request::Create(c) = parse_request(Leaf::Create, &v).unwrap() else { unreachable!() };
        assert_eq!(c.metadata, vec![("name".into(), "w1".into())]);
        assert_eq!((c.cpus, c.memory_mb, c.network), (Some(2), Some(1024), Some(false)));
        assert_eq!(c.env, vec![("A".into(), "1".into())]);
        assert!(bad(Leaf::Create, json!({"image":"b","network":"no"})).contains("must be a boolean"));
        assert!(bad(Leaf::Create, json!({"image":"b","name":"a","metadata":{"name":"b"}})).contains("give one of them"));
    }

    #[test]
    fn fs_write_takes_exactly_one_body_and_an_octal_mode() {
        let w = |v: Value| match parse_request(Leaf::FsWrite, &v).unwrap() {
            Request::FsWrite(w) => w,
            other => panic!("{other:?}"),
        };
        let t = w(json!({"sandbox_id":"s","path":"/a","content":"héllo","mode":"0644","parents":true}));
        assert_eq!((t.bytes.as_slice(), t.mode, t.parents), ("héllo".as_bytes(), Some(0o644), true));
        assert_eq!(w(json!({"sandbox_id":"s","path":"/a","content_b64":"aGk="})).bytes, b"hi");
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","content":"x","content_b64":"eA=="})).contains("exactly one"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a"})).contains("missing required field `bytes_base64`"));
        assert!(bad(Leaf::FsWrite, json!({"sandbox_id":"s","path":"/a","content":"x","mode":"rw"})).contains("not an octal"));
    }

    #[test]
    fn the_new_leaves_name_their_fields() {
        assert_eq!(
            parse_request(Leaf::SetTimeout, &json!({"sandbox_id":"s","timeout_secs":60})).unwrap(),
            Request::SetTimeout { sandbox_id: "s".into(), timeout_secs: 60 }
        );
        assert!(bad(Leaf::SetTimeout, json!({"sandbox_id":"s"})).contains("missing required field `timeout_secs`"));
        assert!(bad(Leaf::SetTimeout, json!({"sandbox_id":"s","timeout_secs":0})).contains("at least 1"));
        assert_eq!(
            parse_request(Leaf::Resume, &json!({"sandbox_id":"s"})).unwrap(),
            Request::Resume { sandbox_id: "s".into(), timeout_secs: None }
        );
        assert!(bad(Leaf::Get, json!({})).contains("sandbox_id"));
    }
}
