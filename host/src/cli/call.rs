//! `sandbox-host call PROVIDER LEAF JSON`: one contract call, locally, through the same
//! path iii calls take. Prints the JSON answer, or `[Sxxx] …` on stderr with the code's
//! exit status. `exec --stream` prints the command's output as it arrives (its stdout
//! on stdout, its stderr on stderr), then the JSON answer.

use super::GlobalArgs;
use crate::runtime::output::OutputStream;
use crate::{CallError, Host, Leaf};
use clap::Args;
use serde_json::Value;
use std::io::{Read as _, Write as _};

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
        eprintln!(
            "error: unknown leaf {:?}; expected one of: {}",
            args.leaf,
            Leaf::ALL.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
        );
        return Ok(1);
    };
    if args.stream && leaf != Leaf::Exec {
        eprintln!("error: --stream applies to exec only, not {leaf}");
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
            eprintln!("{err}");
            return Ok(err.code.exit_status());
        }
    };
    // Bad input is refused before anything starts or reaches an upstream.
    if let Err(e) = crate::contract::validate::parse_request(leaf, &payload) {
        eprintln!("{e}");
        return Ok(e.code.exit_status());
    }
    let (host, diags) = Host::start(global.host_config()?).await?;
    for d in &diags {
        eprintln!("warning: plugin not loaded: {d}");
    }
    if leaf == Leaf::Create && host.registry.get(&args.provider).is_some() {
        // A one-shot process starts with an empty slot book: count what already runs
        // upstream so the cap holds. A failed list leaves the local count (empty).
        let _ = host.reconcile(&args.provider).await;
    }
    let result = if args.stream {
        // The answer starts on a line of its own even when the output ended mid-line.
        let mut mid_line = false;
        let result = exec_streaming(&host, &args.provider, &payload, |stream, bytes| {
            if stream == OutputStream::Stdout {
                mid_line = bytes.last() != Some(&b'\n');
            }
            print_chunk(stream, bytes)
        })
        .await;
        if mid_line {
            println!();
        }
        result
    } else {
        host.call(&args.provider, leaf, &payload).await
    };
    let status = match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            0
        }
        Err(e) => {
            eprintln!("{e}");
            e.code.exit_status()
        }
    };
    // A create this process abandoned is finished or undone before it exits: nobody
    // else knows of the sandbox it may have started.
    if host.settling.running() > 0 {
        eprintln!("note: stopping what the abandoned {leaf} may have started upstream…");
        if !host.settling.wait(SETTLE_LIMIT).await {
            eprintln!(
                "warning: could not confirm within {} s; check the provider for a sandbox started by this call",
                SETTLE_LIMIT.as_secs()
            );
        }
    }
    Ok(status)
}

/// Writes a chunk of a command's output where the command wrote it, at once.
fn print_chunk(stream: OutputStream, bytes: &[u8]) {
    // A closed pipe (`| head`) only ends the printing; the call runs to its end.
    let _ = match stream {
        OutputStream::Stdout => std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().flush()),
        OutputStream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}

/// An exec whose output goes to `sink` chunk by chunk while it runs, in order; returns
/// the call's answer once every chunk has been given to `sink`.
pub async fn exec_streaming(
    host: &Host,
    provider: &str,
    payload: &Value,
    mut sink: impl FnMut(OutputStream, &[u8]),
) -> Result<Value, CallError> {
    let (tap, mut chunks) = tokio::sync::mpsc::unbounded_channel();
    let call = host.call_streaming(provider, Leaf::Exec, payload, tap);
    tokio::pin!(call);
    let result = loop {
        tokio::select! {
            biased;
            Some(chunk) = chunks.recv() => sink(chunk.stream, &chunk.bytes),
            result = &mut call => break result,
        }
    };
    // What the collector sent before the call ended, and nothing after.
    chunks.close();
    while let Some(chunk) = chunks.recv().await {
        sink(chunk.stream, &chunk.bytes);
    }
    result
}

/// How long `call` waits for an abandoned create to be settled before it exits.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(330);
