//! `sandbox-host e2b-api` and `serve --e2b-api` as an operator starts them: no keys is
//! refused unless insecure on loopback, a key's missing variable is named, and a
//! started API answers on the address it prints.

use super::raw::request;
use sandbox_tests::mock_engine::MockEngine;
use sandbox_tests::root;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn sandbox_host() -> tokio::process::Command {
    let bin = root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--no-cache").env_remove("SANDBOX_HOST_CONFIG").stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

async fn refused(args: &[&str], config: Option<&str>) -> String {
    let plugins = tempfile::tempdir().unwrap();
    let conf = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = sandbox_host();
    cmd.arg("--plugins-dir").arg(plugins.path());
    if let Some(text) = config {
        std::fs::write(conf.path(), text).unwrap();
        cmd.arg("--config").arg(conf.path());
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.args(args).output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} must be refused at start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_api_will_not_start_open_to_anyone() {
    let e = refused(&["e2b-api", "--listen", "127.0.0.1:0"], None).await;
    assert!(e.contains("no keys") && e.contains("--e2b-api-insecure-no-auth"), "{e}");
    let e = refused(&["e2b-api", "--listen", "0.0.0.0:0", "--e2b-api-insecure-no-auth"], None).await;
    assert!(e.contains("loopback"), "{e}");
    let conf = "[e2b_api]\n[[e2b_api.keys]]\nname = \"ci\"\nenv = \"E2B_TEST_KEY_THAT_IS_UNSET\"\n";
    let e = refused(&["e2b-api", "--listen", "127.0.0.1:0"], Some(conf)).await;
    assert!(e.contains("E2B_TEST_KEY_THAT_IS_UNSET"), "{e}");
}

/// Starts `args` and returns the address from its `e2b api on http://…` line.
async fn started(mut cmd: tokio::process::Command) -> (tokio::process::Child, String) {
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("e2b api on http://") {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("sandbox-host exited without serving the API");
    })
    .await
    .expect("the API starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn e2b_api_and_serve_with_e2b_api_answer_on_the_printed_address() {
    let plugins = tempfile::tempdir().unwrap();
    let mut cmd = sandbox_host();
    cmd.arg("--plugins-dir").arg(plugins.path()).args(["e2b-api", "--listen", "127.0.0.1:0", "--e2b-api-insecure-no-auth"]);
    let (_api, addr) = started(cmd).await;
    assert_eq!(request(&addr, "GET", "/health", &[], b"").await.status, 204);
    let listed = request(&addr, "GET", "/v2/sandboxes", &[("X-API-KEY", "anything")], b"").await;
    assert_eq!((listed.status, listed.json()), (200, serde_json::json!([])));

    let engine = MockEngine::start(0).await;
    let mut cmd = sandbox_host();
    cmd.arg("--plugins-dir").arg(plugins.path()).args(["serve", "--iii-url", &engine.url(), "--no-watch", "--e2b-api"]);
    cmd.args(["--e2b-api-listen", "127.0.0.1:0", "--e2b-api-insecure-no-auth"]);
    let (_serve, addr) = started(cmd).await;
    let missing = request(&addr, "GET", "/sandboxes/nope_x", &[("X-API-KEY", "k")], b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], 404, "E2B's error body: {{code, message}}");
}
