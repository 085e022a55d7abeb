//! `GET /v2/sandboxes`'s query: filters (`metadata`, `state`, `template`,
//! `startedAfter`), order by start time, and pages of `limit` with an opaque
//! `nextToken` (the position after the page's last row, so a page is stable while
//! sandboxes come and go).

use super::errors::ApiError;
use super::http::{query_pairs, query_value};
use base64::Engine as _;
use serde_json::Value;

const MAX_LIMIT: usize = 100;

#[derive(Debug, Default)]
pub struct Filter {
    metadata: Vec<(String, String)>,
    states: Option<Vec<String>>,
    template: Option<String>,
    started_after: Option<chrono::DateTime<chrono::FixedOffset>>,
    ascending: bool,
    limit: usize,
    after: Option<(String, String)>,
}

impl Filter {
    pub fn parse(query: &[(String, String)]) -> Result<Filter, ApiError> {
        let mut f = Filter { limit: MAX_LIMIT, ..Filter::default() };
        // One parameter holding its own form-encoded `k=v&…`.
        if let Some(m) = query_value(query, "metadata") {
            f.metadata = query_pairs(Some(m));
        }
        let states: Vec<String> = query
            .iter()
            .filter(|(k, _)| k == "state")
            .flat_map(|(_, v)| v.split(','))
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = states.iter().find(|s| *s != "running" && *s != "paused") {
            return Err(ApiError::bad_request(format!("state {bad:?} is not running or paused")));
        }
        f.states = (!states.is_empty()).then_some(states);
        f.template = query_value(query, "template").map(str::to_string);
        if let Some(t) = query_value(query, "startedAfter") {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::bad_request(format!("startedAfter {t:?} is not an RFC 3339 time")))?;
            f.started_after = Some(at);
        }
        f.ascending = match query_value(query, "order") {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => return Err(ApiError::bad_request(format!("order {o:?} is not asc or desc"))),
        };
        if let Some(l) = query_value(query, "limit") {
            f.limit = l
                .parse()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| ApiError::bad_request(format!("limit {l:?} is not 1 to {MAX_LIMIT}")))?;
        }
        if let Some(token) = query_value(query, "nextToken").filter(|t| !t.is_empty()) {
            f.after = Some(decode_token(token).ok_or_else(|| ApiError::bad_request("nextToken is not one this API issued"))?);
        }
        Ok(f)
    }

    /// True when a `ListedSandbox` passes every filter.
    pub fn keeps(&self, sandbox: &Value) -> bool {
        let meta_ok = self.metadata.iter().all(|(k, v)| sandbox["metadata"][k].as_str() == Some(v));
        let state_ok = self.states.as_ref().is_none_or(|s| s.iter().any(|s| sandbox["state"] == s.as_str()));
        let template_ok = self.template.as_ref().is_none_or(|t| sandbox["templateID"] == t.as_str());
        let started_ok = self.started_after.is_none_or(|after| {
            sandbox["startedAt"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).is_some_and(|at| at >= after)
        });
        meta_ok && state_ok && template_ok && started_ok
    }

    /// Sorts, skips to after the token, cuts a page; returns it and the next token.
    pub fn page(&self, mut sandboxes: Vec<Value>) -> Result<(Vec<Value>, Option<String>), ApiError> {
        sandboxes.sort_by_key(position);
        if !self.ascending {
            sandboxes.reverse();
        }
        let start = match &self.after {
            None => 0,
            Some(after) => sandboxes
                .iter()
                .position(|s| if self.ascending { position(s) > *after } else { position(s) < *after })
                .unwrap_or(sandboxes.len()),
        };
        let rest = sandboxes.split_off(start);
        let more = rest.len() > self.limit;
        let page: Vec<Value> = rest.into_iter().take(self.limit).collect();
        let next = if more { page.last().map(|s| encode_token(&position(s))) } else { None };
        Ok((page, next))
    }
}

/// Where a sandbox sorts: start time, then id (RFC 3339 UTC strings sort as times).
fn position(s: &Value) -> (String, String) {
    let started = s["startedAt"].as_str().unwrap_or_default();
    let normal = chrono::DateTime::parse_from_rfc3339(started)
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|_| started.to_string());
    (normal, s["sandboxID"].as_str().unwrap_or_default().to_string())
}

fn encode_token((started, id): &(String, String)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{started}\n{id}"))
}

fn decode_token(token: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (started, id) = text.split_once('\n')?;
    Some((started.to_string(), id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Vec<(String, String)> {
        super::super::http::query_pairs(Some(s))
    }

    fn sandbox(id: &str, started: &str, state: &str, team: &str) -> Value {
        json!({"sandboxID": id, "startedAt": started, "state": state, "templateID": "base", "metadata": {"team": team}})
    }

    fn ids(page: &[Value]) -> Vec<&str> {
        page.iter().map(|s| s["sandboxID"].as_str().unwrap()).collect()
    }

    #[test]
    fn pages_walk_every_sandbox_once_newest_first() {
        let all: Vec<Value> = (0..5).map(|i| sandbox(&format!("p_{i}"), &format!("2026-12-01T00:00:0{i}Z"), "running", "x")).collect();
        let mut seen = Vec::new();
        let mut token = None::<String>;
        loop {
            let query = match &token {
                Some(t) => q(&format!("limit=2&nextToken={t}")),
                None => q("limit=2"),
            };
            let (page, next) = Filter::parse(&query).unwrap().page(all.clone()).unwrap();
            seen.extend(ids(&page).into_iter().map(str::to_string));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["p_4", "p_3", "p_2", "p_1", "p_0"]);
        let (asc, _) = Filter::parse(&q("order=asc&limit=1")).unwrap().page(all).unwrap();
        assert_eq!(ids(&asc), ["p_0"]);
    }

    #[test]
    fn filters_match_metadata_state_and_start_time() {
        let a = sandbox("a", "2026-12-01T00:00:00Z", "running", "red");
        let b = sandbox("b", "2026-12-02T00:00:00Z", "paused", "blue");
        let f = Filter::parse(&q("metadata=team%3Dred&state=running%2Cpaused")).unwrap();
        assert!(f.keeps(&a) && !f.keeps(&b));
        let f = Filter::parse(&q("state=paused")).unwrap();
        assert!(!f.keeps(&a) && f.keeps(&b));
        let f = Filter::parse(&q("startedAfter=2026-12-01T12%3A00%3A00Z")).unwrap();
        assert!(!f.keeps(&a) && f.keeps(&b));
    }

    #[test]
    fn bad_queries_are_400s() {
        for bad in ["state=dead", "limit=0", "limit=101", "order=up", "nextToken=%21%21", "startedAfter=yesterday"] {
            assert_eq!(Filter::parse(&q(bad)).unwrap_err().status, 400, "{bad}");
        }
    }
}
