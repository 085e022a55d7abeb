//! `Host::call`, the one entry every front end goes through: 10 000 generated payloads
//! per leaf, each checked against the oracle and the invariants (`world.rs`).

use crate::json::{self, show_value};
use crate::world::World;
use crate::{cases, generate, runtime, Tally, ALIVE_EVERY};
use proptest::prelude::*;
use sandbox_host::Leaf;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};

const CASES: u32 = 10_000;

/// One generated call on `w`, judged; `n` counts the cases so far.
pub async fn one(w: &World, tally: &Tally, leaf: Leaf, provider: &str, payload: Value, n: u32) -> Result<(), String> {
    // A failed case (or its shrinking) may have left requests behind.
    w.clear();
    let expect = w.expect(provider, leaf, &payload);
    let result = w.call(provider, leaf, &payload).await;
    let sent = w.sent();
    tally.add(outcome(&expect, &result));
    w.judge(&expect, &result, sent, approx_len(&payload))?;
    if let Ok(answer) = &result {
        w.undo(provider, leaf, &payload, answer).await;
    }
    json::drop_flat(payload);
    w.clear();
    w.check_books()?;
    if n.is_multiple_of(ALIVE_EVERY) {
        w.check_alive().await?;
        w.clear();
    }
    Ok(())
}

/// How a case ended, for the tally.
pub fn outcome(expect: &crate::world::Expect, result: &Result<Value, sandbox_host::CallError>) -> String {
    use crate::world::Expect;
    let kind = match expect {
        Expect::Invalid(_) => "invalid",
        Expect::Refused(..) => "refused",
        Expect::Valid => "valid",
    };
    match result {
        Ok(_) => format!("{kind}→ok"),
        Err(e) => format!("{kind}→{}", e.code),
    }
}

/// Roughly how many bytes `v` is as JSON, without recursion.
pub fn approx_len(v: &Value) -> usize {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        n += match v {
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a);
                2 + a.len()
            }
            Value::Object(m) => {
                stack.extend(m.values());
                2 + m.keys().map(|k| k.len() + 4).sum::<usize>()
            }
            _ => 8,
        };
    }
    n
}

fn run(leaf: Leaf) {
    crate::big_stack(move || {
        let rt = runtime();
        let w = rt.block_on(World::start(|_| {}));
        let strategy = prop_oneof![
            199 => (json::provider(), json::payload(leaf, true)),
            1 => json::resident(leaf, w.resident.clone()).prop_map(|v| ("e2b".to_string(), v)),
        ];
        let (tally, n) = (Tally::default(), AtomicU32::new(0));
        let started = std::time::Instant::now();
        let what = format!("host_call::{}", leaf.as_str().replace("::", "_"));
        let ran = generate(
            &what,
            cases(CASES),
            strategy,
            |(p, v)| format!("provider {}, payload {}", crate::world::clip(&format!("{p:?}")), show_value(v)),
            |(provider, payload)| rt.block_on(one(&w, &tally, leaf, &provider, payload, n.fetch_add(1, Ordering::Relaxed) + 1)),
        );
        rt.block_on(async {
            w.check_alive().await.unwrap();
            w.check_books().unwrap();
        });
        tally.print(&what, ran, started);
    });
}

leaf_tests!();
