//! What a conformance run found: one row per check (pass, fail with the reason, or skip
//! with why it did not apply), the upstream calls each made, and the clean-up. Printed as
//! a table for people and as JSON for tools; [`Report::passed`] decides the exit status.

use super::UpstreamCall;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail(String),
    /// Not run: the plugin does not declare the capability, or an earlier check it needs failed.
    Skip(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub check: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub millis: u64,
    pub upstream_calls: Vec<UpstreamCall>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub provider: String,
    pub version: String,
    pub image: String,
    pub rows: Vec<Row>,
}

impl Report {
    /// True when no check (clean-up included) failed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| !matches!(r.outcome, Outcome::Fail(_)))
    }

    pub fn failed(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| matches!(r.outcome, Outcome::Fail(_))).collect()
    }

    /// The row of `check`, if it ran.
    pub fn row(&self, check: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.check == check)
    }

    /// The table: result, check, time, then the upstream calls one per line below it
    /// (a failure's reason first). Ends with a summary line.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|r| r.check.len()).max().unwrap_or(5).max(5);
        let mut out = format!("conformance of {} {} (image {:?})\n", self.provider, self.version, self.image);
        out += &format!("{:<4}  {:<width$}  {:>7}  upstream calls\n", "", "check", "ms");
        for r in &self.rows {
            let mark = match r.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail(_) => "FAIL",
                Outcome::Skip(_) => "skip",
            };
            let calls = if r.upstream_calls.is_empty() { "-".to_string() } else { format!("{}", r.upstream_calls.len()) };
            out += &format!("{mark:<4}  {:<width$}  {:>7}  {calls}\n", r.check, r.millis);
            let indent = " ".repeat(width + 17);
            match &r.outcome {
                Outcome::Fail(why) | Outcome::Skip(why) => out += &format!("{indent}{why}\n"),
                Outcome::Pass => {}
            }
            for c in &r.upstream_calls {
                out += &format!("{indent}{c}\n");
            }
        }
        let count = |f: fn(&Outcome) -> bool| self.rows.iter().filter(|r| f(&r.outcome)).count();
        out += &format!(
            "{} passed, {} failed, {} skipped\n",
            count(|o| matches!(o, Outcome::Pass)),
            count(|o| matches!(o, Outcome::Fail(_))),
            count(|o| matches!(o, Outcome::Skip(_)))
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_each_call_and_a_failure_fails_the_report() {
        let call = |m: &str, p: &str| UpstreamCall { method: m.into(), path: p.into() };
        let mut r = Report {
            provider: "acme".into(),
            version: "0.1.0".into(),
            image: "base".into(),
            rows: vec![
                Row { check: "create".into(), outcome: Outcome::Pass, millis: 12, upstream_calls: vec![call("POST", "/sandboxes")] },
                Row { check: "get".into(), outcome: Outcome::Skip("get is not declared".into()), millis: 0, upstream_calls: vec![] },
            ],
        };
        assert!(r.passed());
        let t = r.table();
        assert!(t.contains("PASS  create") && t.contains("POST /sandboxes") && t.contains("get is not declared"), "{t}");
        assert!(t.ends_with("1 passed, 0 failed, 1 skipped\n"), "{t}");
        r.rows.push(Row { check: "cleanup".into(), outcome: Outcome::Fail("sb-1 still runs".into()), millis: 3, upstream_calls: vec![] });
        assert!(!r.passed());
        assert_eq!(r.failed().len(), 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["rows"][2]["status"], "fail");
        assert_eq!(json["rows"][2]["detail"], "sb-1 still runs");
        assert_eq!(json["rows"][0]["upstream_calls"][0], serde_json::json!({"method": "POST", "path": "/sandboxes"}));
    }
}
