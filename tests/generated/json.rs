//! What callers could send: JSON values (for `Host::call` and bridge invocations, which
//! take a parsed `Value`) and raw JSON text (for the front ends that parse bytes
//! themselves: the bridge's HTTP-trigger adapter and the E2B-compatible API).
//!
//! Every payload strategy mixes three kinds, per leaf:
//! - *anything*: a random JSON value, usually not even an object;
//! - *near-valid*: the leaf's documented shape with one to four mutations (a field
//!   removed, nulled, or given a hostile value; a field of another leaf; the whole thing
//!   wrapped), so validation is reached field by field;
//! - *valid*: the documented shape with random but acceptable contents, naming sandboxes
//!   that do not exist upstream (so the plugin and the simulator run, cheaply: S410).
//!
//! Hostile values: wrong types, empty and whitespace strings, NUL and other control
//! characters, non-ASCII, path tricks, numbers at and past the u16/u32/u64/i64 edges,
//! floats, numbers serde_json can only hold as f64 (`18446744073709551616`,
//! `-9223372036854775809`), and — rarely — 10 MiB strings, 200 000-element arrays,
//! 50 000-key objects and nesting 10 000 deep. Raw text adds what a `Value` cannot hold:
//! duplicate keys, `\u0000`, lone surrogates (`\ud800`), `1e400`, invalid UTF-8, a BOM,
//! truncation and trailing garbage.

use proptest::prelude::*;
use proptest::sample::{select, Index};
use sandbox_host::Leaf;
use serde_json::{json, Map, Value};

/// serde_json's reading of `text`: how every front end turns these into values.
pub fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The fields each leaf reads (docs/contract.md "Shapes").
pub fn fields(leaf: Leaf) -> &'static [&'static str] {
    match leaf {
        Leaf::Create => &["image", "idle_timeout_secs", "env", "metadata", "name", "cpus", "memory_mb", "network"],
        Leaf::Exec => &["sandbox_id", "cmd", "argv", "args", "env", "cwd", "workdir", "timeout_ms", "stdin", "stream"],
        Leaf::Stop | Leaf::Get | Leaf::Pause | Leaf::Snapshot => &["sandbox_id"],
        Leaf::Resume | Leaf::SetTimeout => &["sandbox_id", "timeout_secs"],
        Leaf::List => &[],
        Leaf::Branch => &["sandbox_id", "count"],
        Leaf::ExposePort => &["sandbox_id", "port"],
        Leaf::FsRead => &["sandbox_id", "path"],
        Leaf::FsWrite => &["sandbox_id", "path", "bytes_base64", "content_b64", "content", "mode", "parents"],
    }
}

/// Every field name any leaf reads, plus the router's and the engine's.
fn any_field() -> BoxedStrategy<String> {
    // Built once: a recursive strategy builds its levels again for every value, and
    // sorting this list each time was a tenth of the suite's CPU.
    static ALL: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut all: Vec<&'static str> = Leaf::ALL.iter().flat_map(|l| fields(*l).iter().copied()).collect();
        all.extend(["provider", "_caller_worker_id", "iii.dev/sandbox-host"]);
        all.sort_unstable();
        all.dedup();
        all
    });
    select(ALL.as_slice()).prop_map(String::from).boxed()
}

/// Strings of `min..max` characters from `alphabet` (cheaper than a regex strategy,
/// which proptest compiles for every value).
pub fn chars(alphabet: &'static str, min: usize, max: usize) -> BoxedStrategy<String> {
    let letters: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(select(letters), min..max).prop_map(String::from_iter).boxed()
}

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const ID_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789._:-";
const PLAIN: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._/-";

/// Strings a caller could send anywhere.
pub fn text() -> BoxedStrategy<String> {
    const ODD: &[&str] = &[
        " ",
        "\t\n",
        "\0",
        "a\0b",
        "\u{1}\u{7f}",
        "../../etc/passwd",
        "/",
        ".",
        "..",
        ".hidden",
        "%2e%2e%2f",
        "{}",
        "[]",
        "%s%n%x",
        "'unbalanced",
        "\"",
        "\\",
        "é",
        "🦀",
        "\u{202e}rtl",
        "\u{feff}",
        "\u{fffd}",
        "a b c",
        "echo 'a b' c",
        "0644",
        "0o7777",
        "+644",
        "99999999999",
        "-1",
        "1e400",
        "true",
        "null",
        "base",
        "sbx1",
        "KEY=value",
        "=value",
        "aGk=",
        "!!notbase64",
        "iii.dev/sandbox-host",
        "e2b",
    ];
    prop_oneof![
        8 => chars(ID_CHARS, 1, 13),
        2 => Just(String::new()),
        4 => select(ODD).prop_map(String::from),
        3 => prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        1 => (100usize..70_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// Numbers at the edges the contract names, and past what integers can hold.
pub fn number() -> BoxedStrategy<Value> {
    const EDGES: &[&str] = &[
        "0",
        "1",
        "-1",
        "2",
        "10",
        "11",
        "1023",
        "65535",
        "65536",
        "4095",
        "4096",
        "86400",
        "86401",
        "3600000",
        "3600001",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "-9223372036854775808",
        // Past u64 and i64: serde_json holds these as f64.
        "18446744073709551616",
        "-9223372036854775809",
        "1e20",
        "1.0",
        "0.5",
        "-0.0",
        "1e-300",
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
    ];
    prop_oneof![
        3 => select(EDGES).prop_map(parsed),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
    ]
    .boxed()
}

/// A small random JSON value.
pub fn value() -> BoxedStrategy<Value> {
    let scalar = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        4 => text().prop_map(Value::String),
    ];
    scalar
        .prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((prop_oneof![any_field(), text()], inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// What rarely arrives and must still be answered: huge and deep values.
pub fn monster() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(()).prop_map(|_| Value::String("y".repeat(10 << 20))),
        Just(()).prop_map(|_| Value::Array(vec![json!(0); 200_000])),
        Just(()).prop_map(|_| Value::Object((0..50_000).map(|i| (format!("k{i}"), json!("v"))).collect())),
        Just(()).prop_map(|_| nested(10_000, false)),
        Just(()).prop_map(|_| nested(10_000, true)),
    ]
    .boxed()
}

/// `[[[…]]]` or `{"a":{"a":…}}`, `depth` levels.
pub fn nested(depth: usize, objects: bool) -> Value {
    // Built by moving, not with `json!` (which would copy the value at every level).
    let mut v = json!(1);
    for _ in 0..depth {
        v = if objects { Value::Object(Map::from_iter([("a".to_string(), v)])) } else { Value::Array(vec![v]) };
    }
    v
}

/// Drops a value nested deeper than serde_json's recursion without recursing.
pub fn drop_flat(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// An image no policy allows.
fn other_image() -> BoxedStrategy<String> {
    chars(LOWER, 1, 7).prop_map(|s| format!("img-{s}")).boxed()
}

/// A sandbox id that is well formed and unknown upstream.
pub fn unknown_id() -> BoxedStrategy<String> {
    chars(LOWER, 6, 17).prop_map(|s| format!("gen-{s}")).boxed()
}

/// A valid input of `leaf` with random acceptable contents, on a sandbox that does not
/// exist. Creates name an image outside the allowlist unless `real_creates` (the harness
/// stops whatever they start).
pub fn valid(leaf: Leaf, real_creates: bool) -> BoxedStrategy<Value> {
    let id = unknown_id();
    let small = chars(PLAIN, 1, 25);
    let env = prop::collection::btree_map(chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", 1, 9), small.clone(), 0..3).prop_map(|m| json!(m));
    match leaf {
        Leaf::Create => {
            let image = if real_creates {
                prop_oneof![1 => Just("base".to_string()), 1 => Just("snapshot_base".to_string()), 5 => other_image()].boxed()
            } else {
                other_image()
            };
            (
                image,
                prop::option::of(1u64..=86_400),
                env.clone(),
                env,
                prop::option::of(chars(LOWER, 1, 9)),
                prop::option::of(any::<bool>()),
            )
                .prop_map(|(image, idle, env, metadata, name, network)| {
                    let mut v = json!({"image": image, "env": env, "metadata": metadata});
                    if let Some(s) = idle {
                        v["idle_timeout_secs"] = json!(s);
                    }
                    if let Some(n) = name {
                        v["name"] = json!(n);
                    }
                    if let Some(n) = network {
                        v["network"] = json!(n);
                    }
                    v
                })
                .boxed()
        }
        Leaf::Exec => (id, prop::collection::vec(small, 1..4), prop::option::of(1u64..=3_600_000), any::<bool>(), env)
            .prop_map(|(id, argv, timeout, as_argv, env)| {
                let mut v =
                    if as_argv { json!({"sandbox_id": id, "argv": argv}) } else { json!({"sandbox_id": id, "cmd": "echo", "args": argv}) };
                v["env"] = env;
                if let Some(t) = timeout {
                    v["timeout_ms"] = json!(t);
                }
                v
            })
            .boxed(),
        Leaf::Stop | Leaf::Get | Leaf::Pause | Leaf::Snapshot => id.prop_map(|id| json!({ "sandbox_id": id })).boxed(),
        Leaf::Resume => (id, prop::option::of(1u64..=86_400))
            .prop_map(|(id, t)| match t {
                Some(t) => json!({"sandbox_id": id, "timeout_secs": t}),
                None => json!({ "sandbox_id": id }),
            })
            .boxed(),
        Leaf::SetTimeout => (id, 1u64..=86_400).prop_map(|(id, t)| json!({"sandbox_id": id, "timeout_secs": t})).boxed(),
        Leaf::List => Just(json!({})).boxed(),
        Leaf::Branch => (id, 1u32..=3).prop_map(|(id, n)| json!({"sandbox_id": id, "count": n})).boxed(),
        Leaf::ExposePort => (id, 1u16..=65535).prop_map(|(id, p)| json!({"sandbox_id": id, "port": p})).boxed(),
        Leaf::FsRead => (id, small).prop_map(|(id, p)| json!({"sandbox_id": id, "path": p})).boxed(),
        Leaf::FsWrite => (id, small, text(), prop::option::of(0u32..=0o7777))
            .prop_map(|(id, path, content, mode)| {
                let mut v = json!({"sandbox_id": id, "path": path, "content": content});
                if let Some(m) = mode {
                    v["mode"] = json!(m);
                }
                v
            })
            .boxed(),
    }
}

/// One change to a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    /// Removes one of the fields present.
    Remove(Index),
    /// Nulls one of the fields present.
    Null(Index),
    /// Gives one of the leaf's own fields a random value.
    Own(Index, Value),
    /// Gives one of the fields present an edge number.
    Number(Index, Value),
    /// Sets any contract field (possibly another leaf's) to a random value.
    Foreign(String, Value),
    /// Changes one element or entry inside an array or object field.
    Inner(Index, Index, Value),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Null),
        5 => (any::<Index>(), value()).prop_map(|(i, v)| Mutation::Own(i, v)),
        3 => (any::<Index>(), number()).prop_map(|(i, v)| Mutation::Number(i, v)),
        2 => (any_field(), value()).prop_map(|(k, v)| Mutation::Foreign(k, v)),
        2 => (any::<Index>(), any::<Index>(), value()).prop_map(|(i, j, v)| Mutation::Inner(i, j, v)),
    ]
    .boxed()
}

fn apply(leaf: Leaf, mut v: Value, mutations: Vec<Mutation>) -> Value {
    let Value::Object(m) = &mut v else { return v };
    for mu in mutations {
        let present: Vec<String> = m.keys().cloned().collect();
        let pick = |i: &Index| (!present.is_empty()).then(|| present[i.index(present.len())].clone());
        match mu {
            Mutation::Remove(i) => {
                if let Some(k) = pick(&i) {
                    m.remove(&k);
                }
            }
            Mutation::Null(i) => {
                if let Some(k) = pick(&i) {
                    m.insert(k, Value::Null);
                }
            }
            Mutation::Own(i, x) => {
                let own = fields(leaf);
                if !own.is_empty() {
                    m.insert(own[i.index(own.len())].to_string(), x);
                }
            }
            Mutation::Number(i, x) => {
                if let Some(k) = pick(&i) {
                    m.insert(k, x);
                }
            }
            Mutation::Foreign(k, x) => {
                m.insert(k, x);
            }
            Mutation::Inner(i, j, x) => {
                if let Some(k) = pick(&i) {
                    match m.get_mut(&k) {
                        Some(Value::Array(a)) if !a.is_empty() => {
                            let n = a.len();
                            a[j.index(n)] = x;
                        }
                        Some(Value::Array(a)) => a.push(x),
                        Some(Value::Object(o)) => {
                            let keys: Vec<String> = o.keys().cloned().collect();
                            let key = if keys.is_empty() { "K".to_string() } else { keys[j.index(keys.len())].clone() };
                            o.insert(key, x);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    v
}

/// A valid input of `leaf` with one to four mutations; rarely a monster in one field.
pub fn near_valid(leaf: Leaf) -> BoxedStrategy<Value> {
    let monstrous = (valid(leaf, false), any::<Index>(), monster()).prop_map(move |(v, i, big)| {
        let own = fields(leaf);
        let key = if own.is_empty() { "padding" } else { own[i.index(own.len())] };
        apply(leaf, v, vec![Mutation::Foreign(key.to_string(), big)])
    });
    prop_oneof![
        999 => (valid(leaf, false), prop::collection::vec(mutation(), 1..5)).prop_map(move |(v, m)| apply(leaf, v, m)),
        1 => monstrous,
    ]
    .boxed()
}

/// Inputs of `leaf` through a front end that takes a `Value`.
pub fn payload(leaf: Leaf, real_creates: bool) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => value(),
        1 => Just(()).prop_map(|_| Value::Object(Map::new())),
        12 => near_valid(leaf),
        2 => valid(leaf, real_creates),
    ]
    .boxed()
}

/// A raw JSON token for a field: a value's text, or text no `Value` can hold.
fn raw_token() -> BoxedStrategy<String> {
    const RAW: &[&str] = &[
        "1e400",
        "-1e400",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "1E-400",
        "-0",
        "00",
        "01",
        "1.",
        ".5",
        "+1",
        "0x10",
        "NaN",
        "Infinity",
        "\"\\u0000\"",
        "\"a\\u0000b\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud83e\\udd80\"",
        "\"\\x41\"",
        "\"\\u12\"",
        "\"tab\there\"",
        "\"new\nline\"",
        "'single'",
        "undefined",
        "True",
        "nul",
        "[1,]",
        "{\"a\":1,}",
        "[",
        "{",
        "\"unterminated",
    ];
    prop_oneof![
        3 => value().prop_map(|v| v.to_string()),
        2 => select(RAW).prop_map(String::from),
        1 => (1usize..200).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d))),
    ]
    .boxed()
}

/// A change to raw text that no `Value` can express.
#[derive(Debug, Clone)]
enum RawEdit {
    /// `"key": token` added before the fields (`after`: after them). A duplicate key's
    /// last occurrence wins in serde_json, so both orders matter.
    Field { key: String, token: String, after: bool },
    /// The text cut at a point.
    Truncate(Index),
    /// Bytes after the value.
    Trailing(&'static str),
    /// Bytes before the value.
    Leading(&'static str),
    /// One byte replaced by an invalid UTF-8 byte.
    BadByte(Index),
}

fn raw_edit(leaf: Leaf) -> BoxedStrategy<RawEdit> {
    let own: Vec<String> = fields(leaf).iter().map(|s| s.to_string()).collect();
    let key = if own.is_empty() { any_field() } else { prop_oneof![3 => select(own), 1 => any_field()].boxed() };
    prop_oneof![
        8 => (key, raw_token(), any::<bool>()).prop_map(|(key, token, after)| RawEdit::Field { key, token, after }),
        1 => any::<Index>().prop_map(RawEdit::Truncate),
        1 => select(&["x", "{}", " ", "\n\n", ",", "\0", "]"][..]).prop_map(RawEdit::Trailing),
        1 => select(&["\u{feff}", " \t\r\n", "x", ")]}'\n"][..]).prop_map(RawEdit::Leading),
        1 => any::<Index>().prop_map(RawEdit::BadByte),
    ]
    .boxed()
}

fn edit_raw(mut text: Vec<u8>, edits: Vec<RawEdit>) -> Vec<u8> {
    for e in edits {
        match e {
            RawEdit::Field { key, token, after } if text.first() == Some(&b'{') && text.last() == Some(&b'}') => {
                let field = format!("{}:{token}", json!(key)).into_bytes();
                let inner = text[1..text.len() - 1].to_vec();
                let joined = match (inner.is_empty(), after) {
                    (true, _) => field,
                    (false, false) => [&field[..], b",", &inner].concat(),
                    (false, true) => [&inner[..], b",", &field].concat(),
                };
                text = [&b"{"[..], &joined, b"}"].concat();
            }
            RawEdit::Field { .. } => {}
            RawEdit::Truncate(i) if !text.is_empty() => {
                let n = i.index(text.len());
                text.truncate(n);
            }
            RawEdit::Truncate(_) => {}
            RawEdit::Trailing(t) => text.extend_from_slice(t.as_bytes()),
            RawEdit::Leading(l) => text = [l.as_bytes(), &text].concat(),
            RawEdit::BadByte(i) if !text.is_empty() => {
                let n = i.index(text.len());
                text[n] = 0xff;
            }
            RawEdit::BadByte(_) => {}
        }
    }
    text
}

/// Raw request bodies for `leaf`: a payload's text, usually edited as only raw text can be.
pub fn raw(leaf: Leaf, real_creates: bool) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => payload(leaf, real_creates).prop_map(|v| v.to_string().into_bytes()),
        5 => (payload(leaf, real_creates), prop::collection::vec(raw_edit(leaf), 1..4)).prop_map(|(v, e)| edit_raw(v.to_string().into_bytes(), e)),
        1 => select(&["", " ", "null", "[]", "\"{}\"", "{}", "{\"a\":", "\u{feff}{}", "{}{}", "[{}]"][..]).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

/// Relative paths inside the resident sandbox's home (the E2B simulator resolves
/// absolute paths on this machine, so generated paths never reach it).
const SAFE_PATHS: &[&str] = &["gen/a.txt", "gen/b.bin", "gen/missing.txt", "gen", "gen-top.txt"];

/// Valid calls on the resident sandbox `id` that really run: safe commands (`echo` an
/// argument, never a generated command), safe paths, lifetimes within the limit. A
/// create starts a sandbox of the allowed image; the harness stops it again.
pub fn resident(leaf: Leaf, id: String) -> BoxedStrategy<Value> {
    let path = select(SAFE_PATHS).prop_map(String::from);
    match leaf {
        Leaf::Create => Just(json!({"image": "base", "metadata": {"gen": "1"}})).boxed(),
        Leaf::Exec => prop_oneof![
            Just(json!({"sandbox_id": id, "cmd": "true"})),
            text().prop_map(move |a| json!({"sandbox_id": id, "argv": ["echo", a]})),
        ]
        .boxed(),
        Leaf::Get | Leaf::Pause | Leaf::Snapshot => Just(json!({ "sandbox_id": id })).boxed(),
        // Stopping the resident would end the run's subject: stops of unknown ids instead.
        Leaf::Stop => valid(Leaf::Stop, false),
        Leaf::List => Just(json!({})).boxed(),
        Leaf::Resume => prop::option::of(1u64..=86_400)
            .prop_map(move |t| match t {
                Some(t) => json!({"sandbox_id": id, "timeout_secs": t}),
                None => json!({ "sandbox_id": id }),
            })
            .boxed(),
        Leaf::SetTimeout => (3_600u64..=86_400).prop_map(move |t| json!({"sandbox_id": id, "timeout_secs": t})).boxed(),
        Leaf::Branch => (1u32..=2).prop_map(move |n| json!({"sandbox_id": id, "count": n})).boxed(),
        Leaf::ExposePort => (1u16..=65535).prop_map(move |p| json!({"sandbox_id": id, "port": p})).boxed(),
        Leaf::FsRead => path.prop_map(move |p| json!({"sandbox_id": id, "path": p})).boxed(),
        Leaf::FsWrite => (path, text(), any::<bool>())
            .prop_map(move |(p, content, parents)| json!({"sandbox_id": id, "path": p, "content": content, "parents": parents}))
            .boxed(),
    }
}

/// Provider names that are not loaded.
pub fn unknown_provider() -> BoxedStrategy<String> {
    const NAMES: &[&str] =
        &["", "E2B", "e2b ", " e2b", "e2b\0", "e2b/", "../e2b", "sandbox::provider::e2b", "daytona", "morph", "🦀", "legacy\n"];
    prop_oneof![
        500 => select(NAMES).prop_map(String::from),
        500 => text(),
        1 => Just(()).prop_map(|_| "p".repeat(10 << 20)),
    ]
    .boxed()
}

/// The provider a generated call names: mostly e2b, sometimes morph or the legacy one
/// (absent fields and leaves), sometimes none that is loaded.
pub fn provider() -> BoxedStrategy<String> {
    prop_oneof![
        14 => Just("e2b".to_string()),
        3 => Just("morph".to_string()),
        2 => Just("legacy".to_string()),
        2 => unknown_provider(),
    ]
    .boxed()
}

/// Nesting depth of `v`, without recursion.
pub fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// A short rendering of a value for failure messages (deep ones by their depth).
pub fn show_value(v: &Value) -> String {
    if depth(v) > 100 {
        return format!("<a value nested {} deep>", depth(v));
    }
    crate::world::clip(&v.to_string())
}
