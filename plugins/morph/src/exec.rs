//! The exec leaf: the script from [`shell`] sent to `POST /instance/{id}/exec/sse`, each
//! stdout/stderr event written to the host's output as it arrives (see [`sse`]), and the
//! exit status read from the `exit_code` event. A server without the streaming route
//! (404/405) gets the blocking `POST /instance/{id}/exec`, whose output is written whole
//! at the end; an instance that does not exist is then that route's 404 (S410).

use crate::shell::{self, Seen};
use crate::{api, sse};
use provider_kit::errors::unavailable;
use provider_kit::upstream::{Lines, Streamed};
use provider_kit::wstd::time::Instant;
use provider_kit::{log, Error, ExecRequest, ExecResult, Output};

/// Longest event line kept whole: one output event is a piece of what the command
/// printed, far below this; a longer line is cut by [`Lines`] and then skipped as unreadable.
const MAX_EVENT_LINE: usize = 4 << 20;

pub async fn run(req: ExecRequest, output: Output<'_>) -> Result<ExecResult, Error> {
    let plan = shell::exec_plan(&req)?;
    let id = &req.sandbox_id;
    let started = Instant::now();
    let mut seen = Seen::default();
    let ran = match api::exec_stream(id, &plan.script, plan.deadline_ms).await {
        Ok(Some(stream)) => relay(stream, output, &mut seen).await,
        Ok(None) => blocking(id, &plan, output, &mut seen).await,
        Err(e) => Err(e),
    };
    let exit_code = match ran {
        Ok(code) => code,
        Err(e) => return Err(api::explain_refusal(id, e).await),
    };
    shell::interpret(&plan, req.cwd.as_deref(), exit_code, &seen, started.elapsed().as_millis() as u64)
}

/// Copies the stream's output events to `output` as they come; returns the exit status
/// (`None` when the stream said `[DONE]` without one: the command did not exit).
async fn relay(mut stream: Streamed, output: Output<'_>, seen: &mut Seen) -> Result<Option<i64>, Error> {
    let mut lines = Lines::default();
    let mut exit = None;
    loop {
        let piece = stream.chunk().await?;
        let batch = match &piece {
            Some(bytes) => lines.feed(bytes, MAX_EVENT_LINE),
            None => lines.finish().into_iter().collect(),
        };
        for line in batch {
            match sse::parse(&line) {
                Ok(Some(sse::Event::Stdout(text))) => {
                    seen.stdout(text.as_bytes());
                    output.stdout(text.as_bytes());
                }
                Ok(Some(sse::Event::Stderr(text))) => {
                    seen.stderr(text.as_bytes());
                    output.stderr(text.as_bytes());
                }
                Ok(Some(sse::Event::Exit(code))) => exit = Some(code),
                Ok(Some(sse::Event::Done)) => return Ok(exit),
                Ok(None) => {}
                Err(why) => log::log(log::Level::Warn, &format!("{}: {why}; skipped, as the Morph SDKs do", stream.what)),
            }
        }
        if piece.is_none() {
            // No `[DONE]`: the exit status is the only proof the command finished.
            return exit.map(Some).ok_or_else(|| {
                unavailable(format!("{} ended after {} bytes without the command's exit code", stream.what, stream.bytes_read()))
            });
        }
    }
}

/// The blocking route: the whole answer at the end, written out at once.
async fn blocking(id: &str, plan: &shell::Plan, output: Output<'_>, seen: &mut Seen) -> Result<Option<i64>, Error> {
    let out = api::exec(id, &plan.script, plan.deadline_ms).await?;
    let (stdout, stderr) = (out.stdout.unwrap_or_default(), out.stderr.unwrap_or_default());
    seen.stdout(stdout.as_bytes());
    seen.stderr(stderr.as_bytes());
    output.stdout(stdout.as_bytes());
    output.stderr(stderr.as_bytes());
    Ok(out.exit_code)
}
