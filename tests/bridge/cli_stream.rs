//! Issue 9 §1: `sandbox-host call <provider> exec '<json>' --stream` prints the command's
//! output as it arrives (stdout on stdout, stderr on stderr), then the JSON answer. The
//! command waits until the test has read its first line from the CLI's stdout, so it can
//! only finish if that line was printed while it ran.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

fn sandbox_host() -> std::path::PathBuf {
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_exec_stream_prints_output_while_the_command_runs_then_the_answer() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(sandbox_tests::plugin_wasm("e2b"), dir.path().join("e2b.wasm")).unwrap();
    std::fs::write(dir.path().join("e2b.toml"), sim.policy_toml()).unwrap();
    let id = sim.create_out_of_band("base");
    let gate = sim.root_of(&id).unwrap().join("gate");
    let script = "echo ready; while [ ! -e gate ]; do sleep 0.05; done; echo done; echo oops >&2";
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", script], "timeout_ms": 10000});
    let mut child = tokio::process::Command::new(sandbox_host())
        .args(["call", "e2b", "exec", &payload.to_string(), "--stream", "--plugins-dir"])
        .arg(dir.path())
        .env("E2B_API_KEY", SECRET)
        .env("SANDBOX_CACHE_DIR", sandbox_tests::root().join("target/test-plugin-cache-bin"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut first)).await.expect("a first line").unwrap();
    assert_eq!(first, "ready\n");
    std::fs::write(&gate, b"").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit {status}; stderr: {stderr}");
    let (streamed, answer) = rest.split_once('{').map(|(a, b)| (a, format!("{{{b}"))).unwrap_or_else(|| panic!("no answer: {rest}"));
    let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(
        (answer["stdout"].clone(), answer["stderr"].clone(), answer["timed_out"].clone()),
        (json!("ready\ndone\n"), json!("oops\n"), json!(false)),
        "the command finishes only if its first line reached the terminal while it ran: {answer}"
    );
    assert_eq!(streamed, "done\n", "the rest of the output, then the answer");
    assert!(stderr.contains("oops\n"), "the command's stderr goes to stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_refused_for_a_leaf_other_than_exec() {
    let out = tokio::process::Command::new(sandbox_host()).args(["call", "e2b", "list", "{}", "--stream"]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "error: --stream applies to exec only, not list\n");
}
