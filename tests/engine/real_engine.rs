//! The real iii engine (`../shared/engine/iii`, 0.23.0-rc.4) as a child process on
//! 127.0.0.1: its own scratch directory (the engine writes its state beside its config),
//! the worker port chosen free, and a restart on the same port and directory. Where the
//! binary is absent, [`RealEngine::start`] says so in one line and the test passes
//! without it (the mock-engine suite still runs everywhere).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RealEngine {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `<workspace>/../shared/engine/iii`, where CI puts it beside the fresh clone.
fn shared_engine() -> PathBuf {
    sandbox_tests::root().join("../shared/engine")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port").local_addr().unwrap().port()
}

impl RealEngine {
    /// Starts an engine with the shared `config.yaml`, its worker port changed to a free
    /// one; `None` (after one line saying so) when the engine binary is absent.
    pub async fn start() -> Option<RealEngine> {
        let engine = shared_engine();
        let binary = engine.join("iii");
        if !binary.is_file() {
            // CI has ../shared beside the checkout: there a missing engine is a failure, not a skip.
            let required = std::env::var("SANDBOX_REQUIRE_REAL_ENGINE").is_ok_and(|v| v == "1");
            assert!(!required, "SANDBOX_REQUIRE_REAL_ENGINE=1 but the real iii engine is not at {}", binary.display());
            println!("skipped: the real iii engine is not at {} (see ../shared/engine/README.md)", binary.display());
            return None;
        }
        let config = std::fs::read_to_string(engine.join("config.yaml")).expect("../shared/engine/config.yaml");
        assert!(config.contains("port: 49134"), "../shared/engine/config.yaml no longer sets `port: 49134`; update this harness");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config.replace("port: 49134", &format!("port: {port}"))).unwrap();
        let mut engine = RealEngine { port, dir, child: None };
        engine.restart().await;
        Some(engine)
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Kills the engine (no goodbye to its workers) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill the engine");
        }
    }

    /// Starts the engine again on the same port and directory; returns once it accepts.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the engine is running");
        // Appended: a failure message shows both runs.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(shared_engine().join("iii"))
            .args(["--no-update-check", "-c", "config.yaml"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the iii engine");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the engine did not listen on {} within {START_TIMEOUT:?}; its log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("engine.log")
    }

    /// The engine's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}
