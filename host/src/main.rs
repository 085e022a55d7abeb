use clap::Parser;
use sandbox_host::cli::out::{is_stdout_closed, write_err};
use std::process::ExitCode;

sandbox_host::install_allocator!();

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Its fallback for a failed write is `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false)
        .init();
    let cli = sandbox_host::cli::Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            write_err(format_args!("error: cannot start the async runtime: {e}\n"));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(sandbox_host::cli::run(cli)) {
        Ok(status) => ExitCode::from(status),
        // The reader of stdout went away (`| head -1`): it took what it wanted; end quietly.
        Err(e) if is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            write_err(format_args!("error: {e:#}\n"));
            ExitCode::from(1)
        }
    }
}
