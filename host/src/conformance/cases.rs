//! The case list: the contract's lifecycle (docs/contract.md) as one sandbox goes through
//! it — create → get → exec (args, env, cwd, exit code; the deadline; stdin) → files round
//! trip → list contains it → set_timeout → the other optional leaves the plugin declares →
//! stop twice → list no longer has it — and a clean-up row that stops every sandbox the
//! run created and checks the upstream no longer lists any.
//!
//! A check whose capability the plugin does not declare is skipped (its leaf is S404
//! there, never called); one that needs the first sandbox is skipped when create failed.
//! Checks go through [`crate::Host::call`], the path every front end takes, so the host's
//! validation, slots and idempotent stop are part of what is checked.

use super::report::{Outcome, Report, Row};
use super::Session;
use crate::contract::shapes::Capability;
use crate::{CallError, Code, Leaf};
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An id no upstream knows (get, fs::read's missing-file case use real ids).
const MISSING: &str = "missing-sbx-0000";
/// Where the files check writes, relative to the sandbox's home (created with `parents`).
const FILE_PATH: &str = "sandbox-host-conformance/data.bin";
/// How long the clean-up waits for creates the host abandoned to be settled.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// One check of the list, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Create,
    Get,
    ExecArgsEnvCwdExit,
    ExecTimeout,
    ExecStdin,
    FilesRoundTrip,
    ListContains,
    SetTimeout,
    ExposePort,
    Branch,
    PauseResume,
    Snapshot,
    CreateNetworkOff,
    CreateSizing,
    StopTwice,
    ListGone,
}

impl Check {
    pub const ALL: [Check; 16] = [
        Check::Create,
        Check::Get,
        Check::ExecArgsEnvCwdExit,
        Check::ExecTimeout,
        Check::ExecStdin,
        Check::FilesRoundTrip,
        Check::ListContains,
        Check::SetTimeout,
        Check::ExposePort,
        Check::Branch,
        Check::PauseResume,
        Check::Snapshot,
        Check::CreateNetworkOff,
        Check::CreateSizing,
        Check::StopTwice,
        Check::ListGone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Create => "create",
            Check::Get => "get",
            Check::ExecArgsEnvCwdExit => "exec: args, env, cwd, exit code",
            Check::ExecTimeout => "exec: timeout",
            Check::ExecStdin => "exec: stdin",
            Check::FilesRoundTrip => "fs: write, read back",
            Check::ListContains => "list contains it",
            Check::SetTimeout => "set_timeout",
            Check::ExposePort => "expose_port",
            Check::Branch => "branch",
            Check::PauseResume => "pause, resume",
            Check::Snapshot => "snapshot",
            Check::CreateNetworkOff => "create: network off",
            Check::CreateSizing => "create: sizing",
            Check::StopTwice => "stop twice",
            Check::ListGone => "list no longer has it",
        }
    }

    /// The capability the check needs, `None` for the lifecycle floor.
    pub fn needs(self) -> Option<Capability> {
        match self {
            Check::Get => Some(Capability::Get),
            Check::ExecStdin => Some(Capability::ExecStdin),
            Check::FilesRoundTrip => Some(Capability::Fs),
            Check::SetTimeout => Some(Capability::SetTimeout),
            Check::ExposePort => Some(Capability::ExposePort),
            Check::Branch => Some(Capability::Branch),
            Check::PauseResume => Some(Capability::Pause),
            Check::Snapshot => Some(Capability::Snapshot),
            Check::CreateNetworkOff => Some(Capability::NetworkOff),
            Check::CreateSizing => Some(Capability::Sizing),
            Check::Create | Check::ExecArgsEnvCwdExit | Check::ExecTimeout | Check::ListContains | Check::StopTwice | Check::ListGone => {
                None
            }
        }
    }

    /// False for the checks that start sandboxes of their own.
    fn needs_the_sandbox(self) -> bool {
        !matches!(self, Check::Create | Check::CreateNetworkOff | Check::CreateSizing)
    }
}

/// The name of the clean-up row.
pub const CLEANUP: &str = "cleanup";

/// The sandboxes a run created and those a stop answered for, kept in its [`Session`].
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every sandbox id the run learnt it created, in order.
    created: Vec<String>,
    /// Those a stop answered for.
    stopped: Vec<String>,
}

/// What the checks share: the session and the first sandbox.
struct Ctx<'a> {
    session: &'a Session,
    image: &'a str,
    capabilities: Vec<Capability>,
    sandbox: Option<String>,
}

type CheckResult = Result<(), String>;

impl Ctx<'_> {
    async fn call(&self, leaf: Leaf, payload: Value) -> Result<Value, CallError> {
        self.session.host.call(&self.session.provider, leaf, &payload).await
    }

    async fn ok(&self, leaf: Leaf, payload: Value) -> Result<Value, String> {
        self.call(leaf, payload.clone()).await.map_err(|e| format!("{leaf} {payload} failed: {e}"))
    }

    async fn err(&self, leaf: Leaf, payload: Value, code: Code) -> CheckResult {
        match self.call(leaf, payload.clone()).await {
            Ok(v) => Err(format!("{leaf} {payload} should fail with {code}, got {v}")),
            Err(e) if e.code == code => Ok(()),
            Err(e) => Err(format!("{leaf} {payload} should fail with {code}, got {e}")),
        }
    }

    fn id(&self) -> &str {
        self.sandbox.as_deref().unwrap_or_default()
    }

    async fn stop(&mut self, id: &str) -> CheckResult {
        stop(self.session, id).await
    }

    fn created(&self, ids: &[String]) {
        self.session.ledger().created.extend(ids.iter().cloned());
    }

    /// A sandbox of its own for a create variant (`extra` merged into the input): checked
    /// running and stopped again.
    async fn create_variant(&mut self, extra: Value) -> CheckResult {
        let mut payload = json!({"image": self.image});
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let v = self.ok(Leaf::Create, payload).await?;
        let id = string(&v, "sandbox_id")?;
        self.created(std::slice::from_ref(&id));
        expect(v["state"] == "running", || format!("state is not running: {v}"))?;
        expect(v.get("ignored").is_none_or(|i| i.as_array().is_some_and(Vec::is_empty)), || format!("honoured nothing of it: {v}"))?;
        self.stop(&id).await
    }

    async fn run(&mut self, check: Check) -> CheckResult {
        match check {
            Check::Create => self.create().await,
            Check::Get => self.get().await,
            Check::ExecArgsEnvCwdExit => self.exec_args_env_cwd_exit().await,
            Check::ExecTimeout => self.exec_timeout().await,
            Check::ExecStdin => self.exec_stdin().await,
            Check::FilesRoundTrip => self.files_round_trip().await,
            Check::ListContains => self.list_contains().await,
            Check::SetTimeout => self.set_timeout().await,
            Check::ExposePort => self.expose_port().await,
            Check::Branch => self.branch().await,
            Check::PauseResume => self.pause_resume().await,
            Check::Snapshot => self.snapshot().await,
            Check::CreateNetworkOff => self.create_variant(json!({"network": false})).await,
            Check::CreateSizing => self.create_variant(json!({"cpus": 1, "memory_mb": 1024})).await,
            Check::StopTwice => {
                let id = self.id().to_string();
                self.stop(&id).await?;
                self.stop(&id).await.map_err(|e| format!("a second stop is success too: {e}"))
            }
            Check::ListGone => {
                let ids = self.listed_ids().await?;
                expect(!ids.iter().any(|i| i == self.id()), || format!("{} is still listed after stop: {ids:?}", self.id()))
            }
        }
    }

    async fn create(&mut self) -> CheckResult {
        let v = self.ok(Leaf::Create, json!({"image": self.image})).await?;
        let id = string(&v, "sandbox_id")?;
        self.created(std::slice::from_ref(&id));
        self.sandbox = Some(id);
        let declared: Vec<&str> = self.capabilities.iter().map(|c| c.as_str()).collect();
        expect(v["capabilities"] == json!(declared), || format!("capabilities {} are not the declared {declared:?}", v["capabilities"]))?;
        expect(v["image"] == self.image, || format!("image is not {:?}: {v}", self.image))?;
        expect(v["state"] == "running", || format!("state is not running: {v}"))?;
        rfc3339(&v, "started_at")?;
        optional_rfc3339(&v, "ends_at")
    }

    async fn get(&mut self) -> CheckResult {
        let v = self.ok(Leaf::Get, json!({"sandbox_id": self.id()})).await?;
        expect(v["sandbox_id"] == self.id() && v["state"] == "running", || format!("not this running sandbox: {v}"))?;
        rfc3339(&v, "started_at")?;
        optional_rfc3339(&v, "ends_at")?;
        expect(v["metadata"].is_object(), || format!("metadata is not an object: {v}"))?;
        self.err(Leaf::Get, json!({"sandbox_id": MISSING}), Code::NotFound).await
    }

    async fn exec_args_env_cwd_exit(&mut self) -> CheckResult {
        let script = "printf '%s|%s|' \"$1\" \"$GREETING\"; pwd; echo oops >&2; exit 3";
        let payload = json!({
            "sandbox_id": self.id(), "cmd": "sh", "args": ["-c", script, "sh", "two  words 'quoted' $HOME"],
            "env": {"GREETING": "hi there"}, "cwd": "/",
        });
        let v = self.ok(Leaf::Exec, payload).await?;
        let first = v["stdout"].as_str().unwrap_or_default().split('\n').next().unwrap_or_default().to_string();
        expect(first == "two  words 'quoted' $HOME|hi there|/", || format!("args, env or cwd did not arrive as sent: {v}"))?;
        expect(format!("{}{}", v["stdout"], v["stderr"]).contains("oops"), || format!("the command's stderr is missing: {v}"))?;
        expect(v["exit_code"] == 3 && v["timed_out"] == false && v["success"] == false, || format!("exit 3 is not reported: {v}"))?;
        let ok = self.ok(Leaf::Exec, json!({"sandbox_id": self.id(), "cmd": "echo", "args": ["hello"]})).await?;
        expect(ok["stdout"] == "hello\n" && ok["exit_code"] == 0 && ok["success"] == true, || format!("echo hello answered {ok}"))
    }

    async fn exec_timeout(&mut self) -> CheckResult {
        let started = Instant::now();
        let v = self.ok(Leaf::Exec, json!({"sandbox_id": self.id(), "cmd": "sleep", "args": ["30"], "timeout_ms": 1000})).await?;
        expect(v["timed_out"] == true && v["exit_code"] != 0 && v["success"] == false, || format!("not reported as timed out: {v}"))?;
        let took = started.elapsed();
        expect(took < Duration::from_secs(20), || format!("a 1 s deadline took {} s", took.as_secs()))
    }

    async fn exec_stdin(&mut self) -> CheckResult {
        let text = "fed through stdin\n";
        let stdin = base64::engine::general_purpose::STANDARD.encode(text);
        let v = self.ok(Leaf::Exec, json!({"sandbox_id": self.id(), "cmd": "cat", "stdin": stdin})).await?;
        expect(v["stdout"] == text && v["success"] == true, || format!("cat did not echo its stdin: {v}"))
    }

    async fn files_round_trip(&mut self) -> CheckResult {
        let bytes: Vec<u8> = (0..=255u8).chain(b"\r\n--boundary--\r\n".iter().copied()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let id = self.id().to_string();
        let write = json!({"sandbox_id": id, "path": FILE_PATH, "bytes_base64": b64, "mode": 0o640, "parents": true});
        let written = self.ok(Leaf::FsWrite, write).await?;
        expect(written == json!({"bytes_written": bytes.len(), "path": FILE_PATH}), || format!("fs::write answered {written}"))?;
        let read = self.ok(Leaf::FsRead, json!({"sandbox_id": id, "path": FILE_PATH})).await?;
        expect(read == json!({"bytes_base64": b64, "size": bytes.len()}), || format!("the bytes read back differ: {read}"))?;
        let mode = self.ok(Leaf::Exec, json!({"sandbox_id": id, "cmd": "stat", "args": ["-c", "%a", FILE_PATH]})).await?;
        expect(mode["stdout"] == "640\n", || format!("mode 0640 was not applied: {mode}"))?;
        let missing = format!("{FILE_PATH}.missing");
        self.err(Leaf::FsRead, json!({"sandbox_id": id, "path": missing}), Code::NotFound).await
    }

    async fn listed_ids(&self) -> Result<Vec<String>, String> {
        listed_ids(self.session).await
    }

    async fn list_contains(&mut self) -> CheckResult {
        let v = self.ok(Leaf::List, json!({})).await?;
        expect(v["reconciled"] == true, || format!("the upstream list failed: {}", v["reconcile_error"]))?;
        let row = v["sandboxes"].as_array().and_then(|rows| rows.iter().find(|r| r["sandbox_id"] == self.id()));
        let row = row.ok_or_else(|| format!("{} is not listed: {v}", self.id()))?;
        expect(row["state"] == "running", || format!("listed as not running: {row}"))?;
        rfc3339(row, "started_at")
    }

    async fn set_timeout(&mut self) -> CheckResult {
        let id = self.id().to_string();
        self.err(Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 0}), Code::BadInput).await?;
        let sent = self.session.take_calls();
        expect(sent.is_empty(), || format!("a refused lifetime reached the upstream: {sent:?}"))?;
        let v = self.ok(Leaf::SetTimeout, json!({"sandbox_id": id, "timeout_secs": 600})).await?;
        expect(v["sandbox_id"] == id.as_str() && v["timeout_secs"] == 600, || format!("set_timeout answered {v}"))?;
        optional_rfc3339(&v, "ends_at")
    }

    async fn expose_port(&mut self) -> CheckResult {
        let v = self.ok(Leaf::ExposePort, json!({"sandbox_id": self.id(), "port": self.session.expose_port})).await?;
        let url = string(&v, "url")?;
        expect(url.starts_with("https://") || url.starts_with("http://"), || format!("not an http(s) URL: {url}"))?;
        expect(v["headers"].is_object(), || format!("headers is not an object: {v}"))
    }

    async fn branch(&mut self) -> CheckResult {
        let v = self.ok(Leaf::Branch, json!({"sandbox_id": self.id(), "count": 1})).await?;
        let ids: Vec<String> = v["sandbox_ids"].as_array().into_iter().flatten().filter_map(|i| i.as_str().map(str::to_string)).collect();
        self.created(&ids);
        expect(ids.len() == 1 && !ids[0].is_empty(), || format!("branch of 1 answered {v}"))?;
        self.stop(&ids[0]).await
    }

    async fn pause_resume(&mut self) -> CheckResult {
        let id = self.id().to_string();
        let paused = json!({"sandbox_id": id, "state": "paused"});
        for again in ["", " (again)"] {
            let v = self.ok(Leaf::Pause, json!({"sandbox_id": id})).await?;
            expect(v == paused, || format!("pause{again} answered {v}"))?;
        }
        if self.capabilities.contains(&Capability::Get) {
            let got = self.ok(Leaf::Get, json!({"sandbox_id": id})).await?;
            expect(got["state"] == "paused", || format!("get does not show it paused: {got}"))?;
        }
        let running = json!({"sandbox_id": id, "state": "running"});
        for again in ["", " (again)"] {
            let v = self.ok(Leaf::Resume, json!({"sandbox_id": id})).await?;
            expect(v == running, || format!("resume{again} answered {v}"))?;
        }
        let out = self.ok(Leaf::Exec, json!({"sandbox_id": id, "cmd": "echo", "args": ["back"]})).await?;
        expect(out["stdout"] == "back\n", || format!("exec after resume answered {out}"))
    }

    async fn snapshot(&mut self) -> CheckResult {
        let v = self.ok(Leaf::Snapshot, json!({"sandbox_id": self.id()})).await?;
        expect(v["snapshot_id"].as_str().is_some_and(|s| !s.is_empty()), || format!("no snapshot_id: {v}"))
    }
}

/// `stop` of `id`, checked, and recorded as stopped in the session's ledger.
async fn stop(session: &Session, id: &str) -> CheckResult {
    let v = session.host.call(&session.provider, Leaf::Stop, &json!({"sandbox_id": id})).await;
    let v = v.map_err(|e| format!("stop {id:?} failed: {e}"))?;
    expect(v == json!({"sandbox_id": id, "stopped": true}), || format!("stop answered {v}"))?;
    session.ledger().stopped.push(id.to_string());
    Ok(())
}

/// The ids the upstream lists, or why it could not.
async fn listed_ids(session: &Session) -> Result<Vec<String>, String> {
    let v = session.host.call(&session.provider, Leaf::List, &json!({})).await.map_err(|e| format!("list failed: {e}"))?;
    expect(v["reconciled"] == true, || format!("the upstream list failed: {}", v["reconcile_error"]))?;
    let rows = v["sandboxes"].as_array().ok_or_else(|| format!("no sandboxes list: {v}"))?;
    Ok(rows.iter().filter_map(|r| r["sandbox_id"].as_str().map(str::to_string)).collect())
}

/// Stops every sandbox the session's runs created that no stop answered for, waits for
/// creates the host abandoned, and checks the upstream lists none of them.
async fn clean_up(session: &Session) -> CheckResult {
    let mut problems = Vec::new();
    let pending: Vec<String> = {
        let ledger = session.ledger();
        ledger.created.iter().filter(|id| !ledger.stopped.contains(id)).cloned().collect()
    };
    for id in pending {
        if let Err(e) = stop(session, &id).await {
            problems.push(e);
        }
    }
    if !session.host.settling.wait(SETTLE_LIMIT).await {
        problems.push(format!("a create the host abandoned was not settled within {} s", SETTLE_LIMIT.as_secs()));
    }
    if session.ledger().created.is_empty() {
        // Nothing to look for (and a list may fail for the reason create did).
        return expect(problems.is_empty(), || problems.join("; "));
    }
    match listed_ids(session).await {
        Ok(listed) => {
            let left: Vec<String> = session.ledger().created.iter().filter(|id| listed.contains(id)).cloned().collect();
            if !left.is_empty() {
                problems.push(format!("still listed upstream after clean-up: {left:?}"));
            }
        }
        Err(e) => problems.push(format!("could not confirm the clean-up: {e}")),
    }
    expect(problems.is_empty(), || problems.join("; "))
}

fn expect(ok: bool, why: impl FnOnce() -> String) -> CheckResult {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn string(v: &Value, field: &str) -> Result<String, String> {
    v[field].as_str().filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| format!("no {field}: {v}"))
}

fn rfc3339(v: &Value, field: &str) -> CheckResult {
    let s = v[field].as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(s).map(|_| ()).map_err(|_| format!("{field} is not RFC 3339: {v}"))
}

fn optional_rfc3339(v: &Value, field: &str) -> CheckResult {
    if v[field].is_null() {
        Ok(())
    } else {
        rfc3339(v, field)
    }
}

/// Runs every check on `session`'s plugin, then the clean-up, whatever failed.
pub async fn run(session: &Session, image: &str) -> Report {
    let plugin = session.host.registry.get(&session.provider);
    let capabilities = plugin.as_ref().map(|p| p.capabilities().to_vec()).unwrap_or_default();
    let version = plugin.map(|p| p.descriptor.version.clone()).unwrap_or_default();
    let mut ctx = Ctx { session, image, capabilities, sandbox: None };
    let mut rows = Vec::new();
    session.take_calls();
    for check in Check::ALL {
        let skip = match check.needs() {
            _ if session.is_interrupted() => Some("interrupted".to_string()),
            Some(cap) if !ctx.capabilities.contains(&cap) => Some(format!("`{}` is not declared", cap.as_str())),
            _ if check.needs_the_sandbox() && ctx.sandbox.is_none() => Some("needs the sandbox create did not give".to_string()),
            _ => None,
        };
        let started = Instant::now();
        let outcome = match skip {
            Some(why) => Outcome::Skip(why),
            None => match ctx.run(check).await {
                Ok(()) => Outcome::Pass,
                Err(why) => Outcome::Fail(why),
            },
        };
        rows.push(Row {
            check: check.name().into(),
            outcome,
            millis: started.elapsed().as_millis() as u64,
            upstream_calls: session.take_calls(),
        });
    }
    let started = Instant::now();
    let outcome = match clean_up(session).await {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    };
    rows.push(Row { check: CLEANUP.into(), outcome, millis: started.elapsed().as_millis() as u64, upstream_calls: session.take_calls() });
    Report { provider: session.provider.clone(), version, image: image.into(), rows }
}
