//! `exec` through a toolbox session, its output streamed to the caller while it runs.
//!
//! Routes (toolbox.json at d94a1281; behaviour from v0.190.0 `apps/daemon/pkg/session`):
//! `POST process/session {sessionId}` → 201; `POST process/session/{id}/exec {command,
//! runAsync: false}` → 200 `{cmdId, exitCode, stdout, stderr}` once the command ended;
//! `GET process/session/{id}` → `{sessionId, commands: [{id, command, exitCode?}]}`;
//! `GET process/session/{id}/command/{cmdId}/logs` → the output so far (`follow` is
//! WebSocket only, so plain HTTP polls); `DELETE process/session/{id}` → 204, terminating
//! the session's whole process tree.
//!
//! How: a fresh session per exec (a session's shell runs its commands one at a time). The
//! command is sent as a *synchronous* exec, and while that request waits, the logs are
//! polled and each poll's new complete lines are written to the caller's output (see
//! [`crate::logs`]). The sync answer ends the wait the moment the command exits, with its
//! exit code and whole output, whose unwritten rest is written last. Polling only the logs
//! (not also the command's status) keeps an exec within the host's per-call request budget
//! (32 by default): the first poll is after 200 ms, each pause half again as long, up to 5 s, at most
//! [`MAX_POLLS`] of them; after that the output arrives with the answer.
//!
//! At the deadline (`timeout_ms`, default [`DEFAULT_TIMEOUT_MS`]) the output so far is
//! fetched once more, and deleting the session kills the command: `timed_out`, exit -1.
//! The session is deleted after every exec, so background processes the command left
//! attached to it end too (start long-lived servers with `setsid -f …` to keep them).

use crate::logs::{self, Channel, Cursor, ExecAnswer, Streams, SPLIT_OUTPUT_SDK_VERSION};
use crate::toolbox::{toolbox_error, Toolbox};
use provider_kit::errors::unavailable;
use provider_kit::upstream::{encode, Call};
use provider_kit::wstd::time::Instant;
use provider_kit::{log, Error, ExecResult, Output};
use serde::Deserialize;
use serde_json::json;
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Deadline when the caller gives none: inside the host's default 60 s wait for an
/// upstream's first byte, so a hung command ends as `timed_out`, not as a cut connection.
pub const DEFAULT_TIMEOUT_MS: u64 = 55_000;
/// Log polls per exec (with session create, exec, lookups and delete: under 32 requests).
pub const MAX_POLLS: u32 = 20;
const FIRST_POLL: Duration = Duration::from_millis(200);
const SLOWEST_POLL: Duration = Duration::from_secs(5);
/// A log larger than this is not polled again (each poll reads it whole); the rest comes
/// with the answer. The host keeps 1 MiB per stream by default anyway.
const MAX_POLLED_LOG_BYTES: usize = 8 << 20;
/// Extra time the exec request may take past the deadline before it counts as failed.
const HTTP_GRACE: Duration = Duration::from_secs(5);

const SDK_HEADER: &str = "x-daytona-sdk-version";

enum Ended {
    /// The sync exec answered (or failed).
    Answered(Result<provider_kit::upstream::Reply, Error>),
    /// The deadline passed; the command's id, once it was seen.
    Deadline(Option<String>),
}

/// Runs `command` (from [`crate::shell::session_command`], built with `marker`).
pub async fn run(tb: &Toolbox, command: &str, marker: &str, timeout_ms: Option<u64>, output: Output<'_>) -> Result<ExecResult, Error> {
    let session = session_id();
    let created = Call::post(tb.url("process/session"))
        .header(SDK_HEADER, SPLIT_OUTPUT_SDK_VERSION)
        .json(&json!({ "sessionId": session }))
        .send()
        .await?;
    if !created.is_success() {
        return Err(toolbox_error(&created, "process/session"));
    }
    let cursor = RefCell::new(Cursor::new(marker));
    let result = drive(tb, &session, command, &cursor, timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS), output).await;
    // Always: it ends the command at the deadline, and the session's shell otherwise.
    let route = format!("process/session/{}", encode(&session));
    match Call::delete(tb.url(&route)).send().await {
        Ok(r) if r.is_success() || r.status == 404 => {}
        Ok(r) => log::log(log::Level::Warn, &format!("deleting session {session}: {}", toolbox_error(&r, &route).message)),
        Err(e) => log::log(log::Level::Warn, &format!("deleting session {session}: {}", e.message)),
    }
    result
}

async fn drive(
    tb: &Toolbox,
    session: &str,
    command: &str,
    cursor: &RefCell<Cursor>,
    timeout_ms: u64,
    output: Output<'_>,
) -> Result<ExecResult, Error> {
    let deadline = Duration::from_millis(timeout_ms);
    let started = Instant::now();
    let mut write = writer(output);
    let exec_route = format!("process/session/{}/exec", encode(session));
    let exec = async {
        let call = Call::post(tb.url(&exec_route))
            .header(SDK_HEADER, SPLIT_OUTPUT_SDK_VERSION)
            .json(&json!({ "command": command, "runAsync": false }))
            .timeout((deadline + HTTP_GRACE).into());
        // Concurrently: the log polls below run while this waits for the command's end.
        Ended::Answered(call.send_concurrent().await)
    };
    let watch = async {
        let id = poll(tb, session, cursor, output, started, deadline).await;
        let left = deadline.saturating_sub(started.elapsed().into());
        provider_kit::wstd::task::sleep(left.into()).await;
        Ended::Deadline(id)
    };
    match first(exec, watch).await {
        Ended::Answered(Err(e)) => Err(e),
        Ended::Answered(Ok(reply)) => {
            if !reply.is_success() {
                return Err(toolbox_error(&reply, &exec_route));
            }
            let answer: ExecAnswer = reply.json()?;
            let exit_code = answer
                .exit_code
                .ok_or_else(|| unavailable(format!("Daytona toolbox {exec_route} answered a finished command without its exitCode")))?;
            if !cursor.borrow_mut().finish(&answer.streams(), &mut write) {
                log::log(log::Level::Warn, &format!("session {session}: the final output is shorter than what was streamed"));
            }
            Ok(ExecResult { exit_code, timed_out: false })
        }
        Ended::Deadline(id) => {
            // What the command printed until now; the session's delete then kills it.
            if let Some(id) = id {
                if let Ok(s) = fetch_logs(tb, session, &id).await {
                    cursor.borrow_mut().finish(&s, &mut write);
                }
            }
            Ok(ExecResult { exit_code: -1, timed_out: true })
        }
    }
}

/// Writes a chunk to the caller's stream (once the host's budget for it is spent, the
/// host only counts the bytes; the command still runs to its end).
fn writer(output: Output<'_>) -> impl FnMut(Channel, &[u8]) + '_ {
    move |ch, bytes| {
        match ch {
            Channel::Stdout => output.stdout(bytes),
            Channel::Stderr => output.stderr(bytes),
        };
    }
}

/// Streams the log until the polls run out or the deadline; returns the command's id.
async fn poll(
    tb: &Toolbox,
    session: &str,
    cursor: &RefCell<Cursor>,
    output: Output<'_>,
    started: Instant,
    deadline: Duration,
) -> Option<String> {
    let mut write = writer(output);
    let (mut pause, mut id) = (FIRST_POLL, None::<String>);
    for _ in 0..MAX_POLLS {
        let left = deadline.saturating_sub(started.elapsed().into());
        if left.is_zero() {
            break;
        }
        provider_kit::wstd::task::sleep(pause.min(left).into()).await;
        pause = (pause * 3 / 2).min(SLOWEST_POLL);
        let Some(cmd) = id.clone() else {
            // The exec may not have reached the daemon yet: look again next time.
            id = find_command(tb, session).await.ok().flatten();
            continue;
        };
        match fetch_logs(tb, session, &cmd).await {
            Ok(s) if s.stdout.len() + s.stderr.len() <= MAX_POLLED_LOG_BYTES => cursor.borrow_mut().advance(&s, &mut write),
            // Streaming is best effort: the answer still carries the whole output.
            _ => break,
        }
    }
    id
}

#[derive(Deserialize)]
struct SessionDto {
    #[serde(default)]
    commands: Vec<CommandDto>,
}

#[derive(Deserialize)]
struct CommandDto {
    id: String,
}

/// The id of the session's command (ours is its only one).
async fn find_command(tb: &Toolbox, session: &str) -> Result<Option<String>, Error> {
    let route = format!("process/session/{}", encode(session));
    let reply = Call::get(tb.url(&route)).send().await?;
    if !reply.is_success() {
        return Err(toolbox_error(&reply, &route));
    }
    Ok(reply.json::<SessionDto>()?.commands.into_iter().next().map(|c| c.id))
}

async fn fetch_logs(tb: &Toolbox, session: &str, cmd: &str) -> Result<Streams, Error> {
    let route = format!("process/session/{}/command/{}/logs", encode(session), encode(cmd));
    let reply = Call::get(tb.url(&route)).header(SDK_HEADER, SPLIT_OUTPUT_SDK_VERSION).send().await?;
    if !reply.is_success() {
        return Err(toolbox_error(&reply, &route));
    }
    Ok(logs::parse_logs(reply.header("content-type"), &reply.body))
}

/// A fresh session name per exec.
fn session_id() -> String {
    format!("iii-exec-{}", random_hex(8))
}

/// The end marker of one exec's script ([`crate::shell`]): random, so no output has it.
pub fn marker() -> String {
    format!("iii-end-{}", random_hex(16))
}

fn random_hex(n: usize) -> String {
    let mut rnd = vec![0u8; n];
    provider_kit::wstd::rand::get_random_bytes(&mut rnd);
    rnd.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whichever of `a` and `b` finishes first (the other is dropped, cancelling its request).
async fn first<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let (mut a, mut b) = (pin!(a), pin!(b));
    std::future::poll_fn(move |cx| match a.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending => b.as_mut().poll(cx),
    })
    .await
}
