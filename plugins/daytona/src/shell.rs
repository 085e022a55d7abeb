//! The command string sent to a Daytona session (`POST process/session/{id}/exec`).
//!
//! The daemon writes `command` to a file and *sources* it in the session's shell, inside
//! its own wrapper that labels each output line (daytonaio/daytona v0.190.0
//! `apps/daemon/pkg/session/execute.go`, `cmdWrapperFormat`: `{ . cmd.sh; } < in > out 2> err`).
//! There is no argv, env or cwd field. So the contract's `cmd args…` become a POSIX
//! script, base64-encoded and run as `(eval "$(echo B64 | base64 -d)") < /dev/null`:
//!
//! - the subshell `( … )` keeps `exit`, `cd` and `export` away from the session's shell,
//!   whose own wrapper must run on to record the exit code;
//! - the payload is base64 so no quoting of the daemon's or the shell's can touch it, and
//!   `echo` is a shell builtin, so its size is not bound by the kernel's argument limit;
//! - `< /dev/null`: the command reads end-of-file (a session's stdin is the daemon's pipe);
//! - every word is single-quoted (`'…'`, a `'` as `'\''`): no splitting, no expansion,
//!   env values arrive byte for byte (trailing newlines included);
//! - the command runs as the script's child; then the script prints `marker` as a line of
//!   its own on stdout and on stderr and exits with the command's status (a missing
//!   command: 127, like any shell; a `cwd` that does not exist: 1, the shell's message on
//!   stderr). The daemon ends an unterminated last line with a newline; with the marker
//!   last, that newline is always the marker's, and the plugin removes the marker lines
//!   ([`crate::logs::Cursor`]), so the output arrives byte for byte (NUL bytes aside,
//!   which the daemon's `read` drops);
//! - `stdin` bytes are base64 in the script too and piped in: `printf %s B64 | base64 -d |`.

use base64::Engine as _;

/// What to run, as the contract's exec request gives it.
pub struct Command<'a> {
    pub cmd: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a str>,
    pub stdin: Option<&'a [u8]>,
    /// Printed as a line on both streams once the command ended (random per exec).
    pub marker: &'a str,
}

/// The session `command` for `c`, or why the input cannot pass a POSIX shell unchanged.
pub fn session_command(c: &Command) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(script(c)?.as_bytes());
    // The base64 alphabet has no space or quote: it stays one word.
    Ok(format!("(eval \"$(echo {b64} | base64 -d)\") < /dev/null"))
}

/// The script the session runs (see the module docs).
pub fn script(c: &Command) -> Result<String, String> {
    let mut script = String::new();
    for (key, value) in c.env {
        if !is_env_name(key) {
            return Err(format!("env name {key:?} is not a valid shell variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        if value.contains('\0') {
            return Err(format!("env value of {key} contains a NUL byte, which no process environment can hold"));
        }
        script.push_str(&format!("export {key}={}\n", quote(value)));
    }
    if let Some(cwd) = c.cwd {
        if cwd.contains('\0') {
            return Err("cwd contains a NUL byte".into());
        }
        script.push_str(&format!("cd -- {} || exit 1\n", quote(cwd)));
    }
    if c.cmd.is_empty() {
        return Err("cmd is empty".into());
    }
    if let Some(bytes) = c.stdin {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        script.push_str(&format!("printf %s {b64} | base64 -d | "));
    }
    for (i, word) in std::iter::once(c.cmd).chain(c.args.iter().map(String::as_str)).enumerate() {
        if word.contains('\0') {
            return Err(format!("argument {i} contains a NUL byte, which no argv can hold"));
        }
        if i > 0 {
            script.push(' ');
        }
        script.push_str(&quote(word));
    }
    script.push_str(&end(c.marker));
    Ok(script)
}

/// After the command: its status kept, the marker line on both streams, the status out.
fn end(marker: &str) -> String {
    let m = quote(marker);
    format!("\ns=$?\nprintf '%s\\n' {m}\nprintf '%s\\n' {m} >&2\nexit $s\n")
}

/// POSIX single-quoting: everything literal; a `'` becomes `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic()) && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command<'a>(cmd: &'a str, args: &'a [String], env: &'a [(String, String)]) -> Command<'a> {
        Command { cmd, args, env, cwd: None, stdin: None, marker: "M" }
    }

    fn decoded(session_command: &str) -> String {
        let b64 = session_command.strip_prefix("(eval \"$(echo ").and_then(|s| s.strip_suffix(" | base64 -d)\") < /dev/null")).unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn the_script_quotes_every_word_and_ends_with_the_marker() {
        let args = ["%s|".into(), "a b".into(), "it's \"q\"".into(), "$HOME".into()];
        let cmd = session_command(&command("printf", &args, &[])).unwrap();
        assert_eq!(decoded(&cmd), format!("'printf' '%s|' 'a b' 'it'\\''s \"q\"' '$HOME'{}", end("M")));
        assert_eq!(end("M"), "\ns=$?\nprintf '%s\\n' 'M'\nprintf '%s\\n' 'M' >&2\nexit $s\n");
    }

    #[test]
    fn env_is_exported_single_quoted_and_names_are_checked() {
        let env = vec![("A".to_string(), "x y\n".to_string()), ("_B2".to_string(), "'".to_string())];
        assert_eq!(script(&command("env", &[], &env)).unwrap(), format!("export A='x y\n'\nexport _B2=''\\'''\n'env'{}", end("M")));
        assert!(script(&command("env", &[], &[("1A".into(), "v".into())])).unwrap_err().contains("\"1A\""));
        assert!(script(&command("env", &[], &[("A-B".into(), "v".into())])).is_err());
        assert!(script(&command("echo", &["a\0b".into()], &[])).unwrap_err().contains("NUL"));
    }

    #[test]
    fn cwd_and_stdin_come_before_the_command() {
        let c = Command { cmd: "cat", args: &[], env: &[], cwd: Some("/tmp/a b"), stdin: Some(b"hi\n"), marker: "M" };
        assert_eq!(script(&c).unwrap(), format!("cd -- '/tmp/a b' || exit 1\nprintf %s aGkK | base64 -d | 'cat'{}", end("M")));
    }

    /// Runs a session command the way the daemon does: sourced by a shell whose stdin is a pipe.
    fn run(c: &Command) -> std::process::Output {
        use std::io::Write;
        let mut sh = std::process::Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let line = format!("{{ {}; }}; echo \"exit=$?\"\n", session_command(c).unwrap());
        sh.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
        sh.wait_with_output().unwrap()
    }

    #[test]
    fn quoting_round_trips_through_a_real_shell_and_the_session_shell_survives() {
        if !std::path::Path::new("/bin/sh").exists() {
            return;
        }
        let args: Vec<String> = vec!["a  b".into(), "'".into(), "\"".into(), "$(id)".into(), "*".into(), "\\n".into(), String::new()];
        let words: Vec<String> = std::iter::once("[%s]".to_string()).chain(args.iter().cloned()).collect();
        let out = run(&command("printf", &words, &[]));
        let expected: String = args.iter().map(|a| format!("[{a}]")).collect();
        // The marker follows the output at once (no newline of the command's own), and the
        // sourcing shell went on to print the status: the subshell kept it safe.
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{expected}M\nexit=0\n"));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "M\n");

        let stdin = Command { cmd: "wc", args: &["-c".into()], env: &[], cwd: Some("/"), stdin: Some(&[0, 1, 2, b'\n']), marker: "M" };
        assert_eq!(String::from_utf8_lossy(&run(&stdin).stdout).split_whitespace().collect::<Vec<_>>(), ["4", "M", "exit=0"]);
        let missing = Command { cmd: "true", args: &[], env: &[], cwd: Some("/no/such/dir"), stdin: None, marker: "M" };
        assert_eq!(String::from_utf8_lossy(&run(&missing).stdout), "exit=1\n");
        let seven = run(&command("sh", &["-c".into(), "exit 7".into()], &[]));
        assert_eq!(String::from_utf8_lossy(&seven.stdout), "M\nexit=7\n", "the command's own status");
        assert!(String::from_utf8_lossy(&run(&command("no-such-command-xyz", &[], &[])).stdout).ends_with("M\nexit=127\n"));
    }
}
