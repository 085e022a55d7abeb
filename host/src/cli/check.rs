//! `sandbox-host check FILE.wasm`: does this component satisfy the provider world?
//! Prints its `describe()` (and the resolved policy when a `.toml` sits beside it).
//!
//! It compiles in memory and writes nothing: the file is not trusted yet, it may be run
//! from any directory, and a cache entry for it would only serve a later `check` of the
//! same bytes. So `--cache-dir` and `--no-cache` do not apply here.

use super::out::{errln, outln};
use super::GlobalArgs;
use crate::plugin::loader::Loader;
use crate::runtime::engine::Runtime;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component to check.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_global: &GlobalArgs, args: CheckArgs) -> anyhow::Result<u8> {
    let loader = Loader::new(Runtime::new(None)?)?;
    match loader.load_file(&args.file).await {
        Ok(p) => {
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&super::plugins::describe_json(&p))?)?;
            } else {
                let d = &p.descriptor;
                outln!("ok: {} satisfies {}", args.file.display(), p.pre.world())?;
                outln!("name: {}\nversion: {}", d.name, d.version)?;
                outln!("capabilities: {}", d.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))?;
                outln!("leaves: {}", p.leaves().iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", "))?;
                outln!("default egress hosts: {}", d.default_egress_hosts.join(", "))?;
                for c in &d.credentials {
                    outln!("credential: {} -> header {} (prefix {:?}) for {}", c.name, c.header, c.value_prefix, c.hosts.join(", "))?;
                }
            }
            Ok(0)
        }
        Err(d) => {
            errln!("error: {d}");
            Ok(1)
        }
    }
}
