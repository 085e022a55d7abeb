//! `sandbox-host call PROVIDER LEAF JSON`: one contract call, locally, through the same
//! path iii calls take. Prints the JSON answer, or `[Sxxx] …` on stderr with the code's
//! exit status. `exec --stream` prints the command's output as it arrives (its stdout
//! on stdout, its stderr on stderr), then the JSON answer. A stdout closed by its reader
//! ends the command quietly, status 0 (`out.rs`); with `--stream` it also ends the call.

use super::out::{errln, outln};
use super::GlobalArgs;
use crate::contract::shapes::{Capability, Request};
use crate::runtime::output::OutputStream;
use crate::{CallError, Host, Leaf};
use clap::Args;
use serde_json::Value;
use std::io::Read as _;

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Provider (plugin) name, e.g. `e2b`.
    pub provider: String,
    /// Leaf: create, exec, stop, list, snapshot, branch, expose_port, fs::read, fs::write.
    pub leaf: String,
    /// JSON input (`-` reads standard input). Defaults to `{}`.
    #[arg(default_value = "{}")]
    pub json: String,
    /// exec only: print the command's output while it runs, then the JSON answer.
    #[arg(long)]
    pub stream: bool,
}

pub async fn run(global: &GlobalArgs, args: CallArgs) -> anyhow::Result<u8> {
    let Some(leaf) = Leaf::parse(&args.leaf) else {
        errln!(
            "error: unknown leaf {:?}; expected one of: {}",
            args.leaf,
            Leaf::ALL.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
        );
        return Ok(1);
    };
    if args.stream && leaf != Leaf::Exec {
        errln!("error: --stream applies to exec only, not {leaf}");
        return Ok(1);
    }
    let text = if args.json == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        args.json.clone()
    };
    let payload: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let err = crate::CallError::bad_input(format!("{leaf}: the input is not valid JSON ({e})."));
            errln!("{err}");
            return Ok(err.code.exit_status());
        }
    };
    // Bad input is refused before anything starts or reaches an upstream.
    if let Err(e) = crate::contract::validate::parse_request(leaf, &payload) {
        errln!("{e}");
        return Ok(e.code.exit_status());
    }
    let (host, diags) = Host::start(global.host_config()?).await?;
    for d in &diags {
        errln!("warning: plugin not loaded: {d}");
    }
    if leaf == Leaf::Create && !refused_before_upstream(&host, &args.provider, &payload) {
        // A one-shot process starts with an empty slot book: count what already runs
        // upstream so the cap holds. A failed list leaves the local count (empty).
        let _ = host.reconcile(&args.provider).await;
    }
    // A closed stdout ends the printing (and, for --stream, the call: its reader is gone);
    // whatever this process abandoned is still settled below before the error is returned.
    let printed = call_and_print(&host, &args, leaf, &payload).await;
    // A create this process abandoned is finished or undone before it exits: nobody
    // else knows of the sandbox it may have started.
    if host.settling.running() > 0 {
        errln!("note: stopping what the abandoned {leaf} may have started upstream…");
        if !host.settling.wait(SETTLE_LIMIT).await {
            errln!("warning: could not confirm within {} s; check the provider for a sandbox started by this call", SETTLE_LIMIT.as_secs());
        }
    }
    printed
}

/// True when the host refuses this create before anything reaches the upstream: an
/// unknown provider, an image outside the allowlist, `network: false` on a provider
/// without `network_off` (`calls/create.rs`, in that order after validation). Such a
/// create is answered without the reconciling list, so it sends nothing upstream, as the
/// contract says of every refused input.
fn refused_before_upstream(host: &Host, provider: &str, payload: &Value) -> bool {
    let Some(plugin) = host.registry.get(provider) else { return true };
    let Ok(Request::Create(c)) = crate::contract::validate::parse_request(Leaf::Create, payload) else { return true };
    plugin.policy.images.check(provider, &c.image).is_err()
        || (c.network == Some(false) && !plugin.capabilities().contains(&Capability::NetworkOff))
}

/// Runs the call and prints its output and answer; returns the exit status, or the
/// failure to write to stdout.
async fn call_and_print(host: &Host, args: &CallArgs, leaf: Leaf, payload: &Value) -> anyhow::Result<u8> {
    let result = if args.stream {
        // The answer starts on a line of its own even when the output ended mid-line.
        let mut mid_line = false;
        let result = exec_streaming(host, &args.provider, payload, |stream, bytes| {
            if stream == OutputStream::Stdout {
                mid_line = bytes.last() != Some(&b'\n');
            }
            print_chunk(stream, bytes)
        })
        .await?;
        if mid_line {
            outln!()?;
        }
        result
    } else {
        host.call(&args.provider, leaf, payload).await
    };
    Ok(match result {
        Ok(v) => {
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
            0
        }
        Err(e) => {
            errln!("{e}");
            e.code.exit_status()
        }
    })
}

/// Writes a chunk of a command's output where the command wrote it, at once. A failure
/// to write stdout ends the stream (the caller's reader is gone); stderr's is ignored.
fn print_chunk(stream: OutputStream, bytes: &[u8]) -> anyhow::Result<()> {
    match stream {
        OutputStream::Stdout => super::out::write_out_bytes(bytes),
        OutputStream::Stderr => {
            super::out::write_err_bytes(bytes);
            Ok(())
        }
    }
}

/// An exec whose output goes to `sink` chunk by chunk while it runs, in order; returns
/// the call's answer once every chunk has been given to `sink`. When `sink` fails the
/// call is dropped at once (its command may run on upstream until its `timeout_ms`) and
/// the failure is returned instead.
pub async fn exec_streaming<E>(
    host: &Host,
    provider: &str,
    payload: &Value,
    mut sink: impl FnMut(OutputStream, &[u8]) -> Result<(), E>,
) -> Result<Result<Value, CallError>, E> {
    let (tap, mut chunks) = tokio::sync::mpsc::unbounded_channel();
    let call = host.call_streaming(provider, Leaf::Exec, payload, tap);
    tokio::pin!(call);
    let result = loop {
        tokio::select! {
            biased;
            Some(chunk) = chunks.recv() => sink(chunk.stream, &chunk.bytes)?,
            result = &mut call => break result,
        }
    };
    // What the collector sent before the call ended, and nothing after.
    chunks.close();
    while let Some(chunk) = chunks.recv().await {
        sink(chunk.stream, &chunk.bytes)?;
    }
    Ok(result)
}

/// How long `call` waits for an abandoned create to be settled before it exits.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(330);
