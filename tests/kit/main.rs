//! The author's kit, as an author meets it, through the real `sandbox-host` binary
//! (`target/debug/sandbox-host`, built by `just test`): `new` writes a Rust or a Python
//! skeleton that builds and passes `check`, whose leaves refuse with a typed "not
//! implemented" instead of succeeding; `conformance --sim` prints the table for
//! `plugins/e2b.wasm` against the E2B simulator, fails (status 3) when a check does, and
//! cleans up on Ctrl-C.
//!
//! The Rust build reuses the workspace's compiled guest dependencies: the skeleton gets
//! the workspace's `Cargo.lock` (the versions the kit is tested with) and builds in its
//! target dir, offline. The Python build uses the project's `.venv` and componentize-py
//! as `scripts/build-python-plugins.sh` pins it (installed there on first use).

use provider_sims::e2b::E2bSim;
use provider_sims::Fault;
use sandbox_host::{Code, Leaf};
use sandbox_tests::upstream::SECRET;
use sandbox_tests::{root, PluginSetup, TestHost};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Output;

fn bin() -> PathBuf {
    let bin = root().join("target/debug/sandbox-host");
    assert!(bin.exists(), "{} is missing: `just test` builds it (cargo build -p sandbox-host)", bin.display());
    bin
}

/// The binary with `args` (and `env`), its cache in the test cache folder.
fn command<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args).env("SANDBOX_CACHE_DIR", root().join("target/test-plugin-cache-bin"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn host<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    command(args, env).output().await.unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sandbox-host new acme --lang LANG --dir DIR`, checked successful.
async fn new_skeleton(lang: &str, dir: &Path) {
    let out = host(&["new", "acme", "--lang", lang, "--dir", dir.to_str().unwrap()], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    for file in ["README.md", "build.sh", "acme.toml", "wit/sandbox.wit"] {
        assert!(dir.join(file).is_file(), "{lang} skeleton lacks {file}");
    }
}

async fn build(dir: &Path, args: &[&str], env: &[(&str, &PathBuf)]) {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(dir.join("build.sh")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "build.sh failed:\n{}", text(&out));
}

/// `check` accepts the built skeleton, and a host running it under its own example
/// policy answers every floor leaf with S404 (the plugin's `unsupported`, "not
/// implemented yet"), never a success.
async fn passes_check_and_refuses_every_leaf(wasm: &Path) {
    let out = host(&["check", wasm.to_str().unwrap()], &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("name: acme") && stdout.contains("leaves: create, exec, stop, list"), "{stdout}");
    let policy = std::fs::read_to_string(wasm.with_extension("toml")).unwrap();
    let setup = PluginSetup { name: "acme".into(), wasm: wasm.to_path_buf(), policy: Some(policy) };
    let h = TestHost::start(vec![setup], &[("ACME_API_KEY", SECRET)]).await;
    assert!(h.diagnostics.is_empty(), "{:?}", h.diagnostics);
    for (leaf, payload) in [
        (Leaf::Create, json!({"image": "base"})),
        (Leaf::Exec, json!({"sandbox_id": "s1", "cmd": "true"})),
        (Leaf::Stop, json!({"sandbox_id": "s1"})),
    ] {
        let msg = h.err("acme", leaf, payload, Code::Unsupported).await;
        assert!(msg.contains(&format!("does not support `{leaf}`")), "{leaf}: {msg}");
    }
    let listed = h.ok("acme", Leaf::List, json!({})).await;
    assert_eq!(listed["reconciled"], false, "an unwritten list is not reported as an empty upstream: {listed}");
    assert!(listed["reconcile_error"].as_str().unwrap().contains("does not support `list`"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_skeleton_builds_and_passes_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("acme");
    new_skeleton("rust", &dir).await;
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    build(&dir, &["--offline", "--quiet"], &[("CARGO_TARGET_DIR", &root().join("target"))]).await;
    passes_check_and_refuses_every_leaf(&dir.join("acme.wasm")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_skeleton_builds_with_componentize_py_and_passes_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("acme");
    new_skeleton("python", &dir).await;
    build(&dir, &[], &[("VENV", &root().join(".venv"))]).await;
    passes_check_and_refuses_every_leaf(&dir.join("acme.wasm")).await;
}

/// `conformance plugins/e2b.wasm --sim <api> --policy <file>`, the file being the policy an
/// operator would write for the simulator, less what `--sim` adds: the credential grant
/// and envd's address (E2B runs commands on a second base).
fn e2b_sim_conformance(sim: &E2bSim, dir: &Path) -> Vec<String> {
    let file = dir.join("e2b-sim.toml");
    let policy = format!(
        "allowed_hosts = [\"{}\"]\n[credentials]\napi-key = \"E2B_API_KEY\"\n[config]\nenvd-url = \"{}\"\n",
        sim.envd.authority(),
        sim.envd.base_url()
    );
    std::fs::write(&file, policy).unwrap();
    let wasm = sandbox_tests::plugin_wasm("e2b");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    vec!["conformance".into(), path(&wasm), "--sim".into(), sim.api.base_url(), "--policy".into(), path(&file)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_the_e2b_simulator_prints_every_row_passing() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let args = e2b_sim_conformance(&sim, tmp.path());
    let out = host(&args, &[("E2B_API_KEY", SECRET)]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for row in ["create", "get", "exec: args, env, cwd, exit code", "exec: timeout", "exec: stdin", "fs: write, read back"] {
        assert!(stdout.contains(&format!("PASS  {row}")), "{row}:\n{stdout}");
    }
    for row in ["list contains it", "set_timeout", "stop twice", "list no longer has it", "cleanup"] {
        assert!(stdout.contains(&format!("PASS  {row}")), "{row}:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("POST /v2/sandboxes") && stdout.contains("DELETE /sandboxes/"), "the upstream calls are listed:\n{stdout}");
    // Every check but `create: sizing`, which e2b does not declare, and the clean-up.
    assert_eq!(stdout.lines().last(), Some("16 passed, 0 failed, 1 skipped"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !String::from_utf8_lossy(&out.stderr).contains(SECRET));
    assert_eq!(sim.live_count(), 0);

    // A failing check: the status says so, the table names it, the sandbox is still stopped.
    sim.envd.inject(Fault::new("POST", "/process.Process/Start", 500, r#"{"code":"internal","message":"boom"}"#));
    let out = host(&[&args[..], &["--json".to_string()]].concat(), &[("E2B_API_KEY", SECRET)]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> =
        report["rows"].as_array().unwrap().iter().filter(|r| r["status"] == "fail").map(|r| r["check"].as_str().unwrap()).collect();
    assert_eq!(failed, ["exec: args, env, cwd, exit code"], "{report}");
    assert_eq!(sim.live_count(), 0, "cleaned up after the failure");
}

/// Ctrl-C midway: the check under way finishes, the rest are skipped, and the command
/// stops what the run created before it exits (130) — even when the signal comes while
/// a create is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_conformance_run_stops_what_it_created() {
    let sim = E2bSim::start(0, SECRET).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let child = command(&e2b_sim_conformance(&sim, tmp.path()), &[("E2B_API_KEY", SECRET)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sim.live_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the run never created its sandbox");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: finishing the check under way"), "{stderr}");
    assert!(stdout.contains("PASS  cleanup") && stdout.contains("interrupted"), "{stdout}");
    assert!(stdout.contains("skip  list no longer has it"), "the checks after the signal are skipped:\n{stdout}");
    assert_eq!(sim.live_count(), 0, "{stdout}");
}
