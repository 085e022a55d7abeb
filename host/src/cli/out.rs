//! The CLI's standard output and error, written as a well-mannered Unix tool writes them.
//!
//! `println!` panics when a write fails, so `sandbox-host plugins --json | head -1` used to
//! end in "failed printing to stdout: Broken pipe" and a backtrace. Here:
//!
//! - [`write_out`] (macros [`outln!`], [`out!`]) writes to stdout and flushes, returning the
//!   failure instead of panicking. A reader that went away (`EPIPE`) is [`StdoutClosed`];
//!   `main` ends the command quietly with status 0 wherever it surfaces, as ripgrep does (the
//!   reader took what it wanted; a C tool would have died of `SIGPIPE`, which the Rust
//!   runtime ignores). Any other write failure (`> /dev/full`) is an error, status 1.
//! - [`write_err`] (macro [`errln!`]) writes to stderr and ignores failures: with stderr
//!   closed there is nowhere left to say anything, and a diagnostic must never be what kills
//!   the command.
//!
//! Commands that have something to finish after printing (`call` settling an abandoned
//! create) do it before they return the error.

use std::fmt;
use std::io::Write as _;

/// Standard output was closed by its reader (`EPIPE`): the command ends quietly, status 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Maps a failed write to stdout: `EPIPE` → [`StdoutClosed`], anything else → an error
/// that says it was standard output.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// Writes bytes to stdout at once (flushed).
pub fn write_out_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(stdout_error)
}

/// Writes to stdout at once (flushed); see the module doc for what a failure becomes.
pub fn write_out(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.flush()).map_err(stdout_error)
}

/// Writes to stderr; a failure is ignored (see the module doc).
pub fn write_err(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// Bytes to stderr, failures ignored.
pub fn write_err_bytes(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes).and_then(|()| err.flush());
}

/// True when `e` (or what caused it) is stdout closed by its reader. Only [`StdoutClosed`]
/// counts: an `EPIPE` from a socket (`stats` talking to a host that went away) is a real error.
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<StdoutClosed>().is_some())
}

/// `print!` that returns the failure: `out!("x{}", 1)?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write_out(format_args!($($arg)*))
    };
}

/// `println!` that returns the failure: `outln!("x{}", 1)?`.
macro_rules! outln {
    () => {
        $crate::cli::out::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::out::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_a_quiet_end_and_other_failures_are_errors() {
        let closed = stdout_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_stdout_closed(&closed));
        assert!(is_stdout_closed(&closed.context("printing the answer")));
        let full = stdout_error(std::io::Error::from_raw_os_error(28));
        assert!(!is_stdout_closed(&full));
        assert!(format!("{full:#}").starts_with("cannot write to standard output: "), "{full:#}");
        // An EPIPE from elsewhere (a socket) is not a closed stdout.
        assert!(!is_stdout_closed(&anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))));
    }
}
