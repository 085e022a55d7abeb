//! `exec`: a command's deadline bounded by `limits.max_exec_timeout_ms` (it stretches
//! the call's budgets), `stdin` only where the provider can feed it, and the output kept
//! per stream up to `limits.max_exec_output_kib`, streamed to a caller's tap as it is
//! produced (`runtime/output.rs`).

use super::answer::{answer, mismatch, unsupported_field, wall_budget};
use super::{Answered, Call};
use crate::contract::codes::CallError;
use crate::contract::shapes::{reply, Capability, Leaf, PluginReply, Request};
use crate::runtime::invoke;
use crate::runtime::output::OutputTap;

pub(super) async fn exec(call: &Call<'_>, mut req: Request, tap: Option<OutputTap>) -> Answered {
    let Request::Exec(e) = &mut req else { unreachable!("exec() is only called with an exec") };
    // The host always sends a deadline: it, not a provider's own default, decides how long
    // the command may run, and it stretches the call's upstream waits to match.
    e.timeout_ms = e.timeout_ms.or(Some(call.plugin.policy.limits.default_exec_timeout_ms));
    let e = &*e;
    let plugin = call.plugin;
    let name = &*plugin.name;
    let max = plugin.policy.limits.max_exec_timeout_ms;
    if let Some(ms) = e.timeout_ms.filter(|ms| *ms > max) {
        let msg = format!(
            "exec: `timeout_ms` {ms} exceeds provider `{name}`'s limit of {max} ms (limits.max_exec_timeout_ms in plugins/{name}.toml)."
        );
        return (Err(CallError::bad_input(msg)), None);
    }
    if e.stdin.is_some() && !plugin.capabilities().contains(&Capability::ExecStdin) {
        return (Err(unsupported_field(name, Leaf::Exec, "stdin", "exec_stdin")), None);
    }
    let busy_secs = e.timeout_ms.unwrap_or(0).div_ceil(1000);
    call.keepalive.touch(plugin, &e.sandbox_id, busy_secs);
    let sandbox_id = e.sandbox_id.clone();
    let (outcome, stats) = invoke::run_tapped(plugin, &req, wall_budget(plugin, &req), tap).await;
    call.keepalive.touch(plugin, &sandbox_id, 0);
    if stats.output_cut_bytes > 0 {
        tracing::info!(plugin = name, cut_bytes = stats.output_cut_bytes, "exec output beyond limits.max_exec_output_kib was cut");
    }
    let result = answer(plugin, Leaf::Exec, outcome).and_then(|r| match r {
        PluginReply::Executed(out) => Ok(reply::executed(&out)),
        other => Err(mismatch(name, Leaf::Exec, &other)),
    });
    (result, Some(stats))
}
