//! The native baseline: the e2b plugin's `list` logic compiled as an ordinary Rust
//! library, calling the upstream with reqwest (pooled connections) as a native worker
//! would: same request, same parsing, same contract answer.

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "templateID")]
    template_id: String,
    alias: Option<String>,
    #[serde(rename = "startedAt")]
    started_at: String,
}

pub struct NativeE2b {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl NativeE2b {
    pub fn new(base: String, key: &str) -> Self {
        NativeE2b { client: reqwest::Client::new(), base, key: key.to_string() }
    }

    pub async fn list(&self) -> Result<Value, String> {
        let r = self
            .client
            .get(format!("{}/v2/sandboxes?state=running&limit=100", self.base))
            .header("x-api-key", &self.key)
            .send()
            .await
            .map_err(|e| format!("[S502] {e}"))?;
        if !r.status().is_success() {
            return Err(format!("[S502] upstream answered {}", r.status()));
        }
        let rows: Vec<Listed> = r.json().await.map_err(|e| format!("[S502] {e}"))?;
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|r| json!({"sandbox_id": r.sandbox_id, "image": r.alias.unwrap_or(r.template_id), "started_at": r.started_at}))
            .collect();
        let n = rows.len();
        Ok(json!({"sandboxes": rows, "in_flight": n, "cap": 10, "remaining": 10usize.saturating_sub(n), "reconciled": true}))
    }
}
