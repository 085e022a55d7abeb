//! Issue 12: the CLI is a well-mannered Unix tool. A standard output whose reader went
//! away (`sandbox-host … | head -1`) ends the command quietly with status 0, as ripgrep
//! does — never "failed printing to stdout: Broken pipe" and a backtrace — and a closed
//! stderr never turns a diagnostic into a panic.
//!
//! Each case runs the built binary with `RUST_BACKTRACE=1` and its stdout the write end
//! of a pipe whose read end is closed before the process starts, so its first write
//! fails with `EPIPE` (no race with a reader that might still take the bytes).

use super::*;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sandbox_host() -> std::path::PathBuf {
    let bin = sandbox_tests::root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    bin
}

/// The write end of a pipe nobody will ever read.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// What a run with a closed stdout left: its exit status and its stderr.
struct Run {
    status: std::process::ExitStatus,
    stderr: String,
    elapsed: Duration,
}

async fn run_closed(args: &[&str], dir: &std::path::Path) -> Run {
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new(sandbox_host())
        .args(args)
        .arg("--plugins-dir")
        .arg(dir)
        .env("E2B_API_KEY", SECRET)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "warn")
        .env("SANDBOX_CACHE_DIR", sandbox_tests::root().join("target/test-plugin-cache-bin"))
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("the command ends").unwrap();
    Run { status, stderr, elapsed: started.elapsed() }
}

fn assert_quiet(what: &str, run: &Run) {
    for panic_text in ["panicked", "Broken pipe", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!run.stderr.contains(panic_text), "{what}: {panic_text:?} on stderr:\n{}", run.stderr);
    }
    assert_eq!(run.status.code(), Some(0), "{what}: a closed stdout ends the command with status 0; stderr:\n{}", run.stderr);
}

/// A plugins directory with the real e2b plugin, pointed at `sim`.
fn e2b_dir(sim: &E2bSim) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(sandbox_tests::plugin_wasm("e2b"), dir.path().join("e2b.wasm")).unwrap();
    std::fs::write(dir.path().join("e2b.toml"), sim.policy_toml()).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_check_and_call_end_quietly_when_stdout_is_closed() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let dir = e2b_dir(&sim);
    let wasm = dir.path().join("e2b.wasm");
    let wasm = wasm.to_str().unwrap();
    for args in [
        vec!["plugins"],
        vec!["plugins", "--json"],
        vec!["check", wasm],
        vec!["check", "--json", wasm],
        vec!["call", "e2b", "list", "{}"],
        vec!["call", "e2b", "create", r#"{"image":"base"}"#],
    ] {
        let run = run_closed(&args, dir.path()).await;
        assert_quiet(&args.join(" "), &run);
    }
    // The create above ran to its end (its answer was what could not be printed).
    assert_eq!(sim.live_count(), 1);
}

/// `call exec --stream` of a command that never stops printing: the closed stdout ends
/// the call at once, well before the command's own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_exec_ends_when_its_reader_goes_away() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let dir = e2b_dir(&sim);
    let id = sim.create_out_of_band("base");
    let payload = json!({"sandbox_id": id, "cmd": "sh", "args": ["-c", "while :; do echo y; sleep 0.05; done"], "timeout_ms": 45000});
    let run = run_closed(&["call", "e2b", "exec", &payload.to_string(), "--stream"], dir.path()).await;
    assert_quiet("call exec --stream", &run);
    assert!(run.elapsed < Duration::from_secs(30), "the call should end with its reader, not at its 45 s deadline: {:?}", run.elapsed);
}

/// `stats` (text and JSON) against a stand-in for `serve --metrics-addr`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_ends_quietly_when_stdout_is_closed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let body = json!({"plugins": {"e2b": {"calls": 3, "errors_by_code": {"S502": 1}, "cpu_seconds": 0.01, "peak_memory_bytes": 1,
            "egress_denials": 0, "egress": {"api.e2b.app": {"requests": 3, "bytes": 10}}}}})
        .to_string();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let reply = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["stats", "--metrics-addr", &addr], vec!["stats", "--json", "--metrics-addr", &addr]] {
        let run = run_closed(&args, dir.path()).await;
        assert_quiet(&args.join(" "), &run);
    }
}

/// With stderr closed as well, warnings and error sentences are dropped, not panicked
/// over: the status is still the command's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_does_not_change_the_status() {
    let dir = tempfile::tempdir().unwrap();
    // A file that is not a plugin: `plugins` warns about it (and exits 1 for it).
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm").unwrap();
    let status = |args: &'static [&'static str]| {
        let dir = dir.path().to_path_buf();
        async move {
            let mut child = tokio::process::Command::new(sandbox_host())
                .args(args)
                .arg("--plugins-dir")
                .arg(&dir)
                .env("RUST_BACKTRACE", "1")
                .env("RUST_LOG", "warn")
                .env("SANDBOX_CACHE_DIR", sandbox_tests::root().join("target/test-plugin-cache-bin"))
                .stdout(closed_pipe())
                .stderr(closed_pipe())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap().code()
        }
    };
    assert_eq!(status(&["call", "nope", "list", "{}"]).await, Some(2), "S600 is a caller error (2), not a panic (101)");
    assert_eq!(status(&["call", "nope", "lsit", "{}"]).await, Some(1), "a usage error");
    assert_eq!(status(&["plugins"]).await, Some(0), "stdout closed at the first line: quiet, 0");
}
