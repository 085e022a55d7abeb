//! Morph's exec takes only `{"command": [..]}` — no env, cwd or timeout fields (OpenAPI
//! `ExecRequest`, BloopAI/morph-rs-sdk `morph-3.1.0.json`) — and the server hands the
//! command to the VM's shell over SSH: the SDKs send `exec("uname -a")` as
//! `{"command": ["uname -a"]}` and it runs, so the elements are joined into one shell
//! line, not exec'd as argv (morph-labs/morph-python-sdk `morphcloud/api.py`).
//!
//! So the plugin sends ONE element: a POSIX shell script it built and quoted itself,
//! which reads the same whether the server joins elements with spaces or runs the first
//! element as is. The script
//! 1. sources the sandbox's create-time environment file, when there is one;
//! 2. `cd`s to `cwd` (a missing directory prints [`CWD_MISSING`] and exits 1, which the
//!    plugin turns into a bad-input error);
//! 3. runs `env -- K=V… timeout -s KILL <secs> <cmd> <args…>` with every word
//!    single-quoted, so argv reaches the program unchanged (no word splitting, no
//!    globbing, no expansion); a missing command exits 127, a non-executable one 126
//!    (GNU `timeout`'s own codes, the shell's as well);
//! 4. ends with `; exit $?` so the shell stays the parent of `timeout`: with `-s KILL`
//!    GNU `timeout` kills its own process group (itself included), and the shell then
//!    reports a plain exit status of 137 instead of the SSH session ending by a signal.
//!
//! Exit-code semantics ([`interpret`]): 137 (or 124, other `timeout` builds) once at
//! least the deadline has elapsed means the deadline fired: `timed_out = true` and
//! `exit_code = -1` (the WIT's "did not exit"). A 137 that comes back before the
//! deadline is the command's own status (e.g. the OOM killer) and is passed through.
//! The elapsed time is measured around the HTTP call, which can only be longer than
//! the time the command ran on the VM, so a real timeout is never missed.

use provider_kit::errors::bad_input;
use provider_kit::{Error, ExecRequest, ExecResult};

/// Where `create`'s `env` is kept on the VM (inside double quotes: `$HOME` expands).
pub const ENV_FILE: &str = "$HOME/.iii_sandbox_env";
/// What the script prints on stderr, alone, when `cwd` does not exist.
pub const CWD_MISSING: &str = "iii-sandbox: cwd does not exist";
/// Deadline when the caller gives none. Below the host's default 60 s first-byte
/// timeout, so a hung command reports `timed_out` rather than a transport timeout.
pub const DEFAULT_EXEC_TIMEOUT_MS: u64 = 50_000;

/// POSIX single-quoting: everything between single quotes is literal; a `'` inside is
/// written as `'\''` (close, escaped quote, reopen). Always quoted, so a word can never
/// be read as an assignment (`A=B cmd`), a keyword or a glob.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A script ready to send and the deadline it enforces.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub script: String,
    pub deadline_ms: u64,
}

/// The script for one exec request (see the module docs).
pub fn exec_plan(req: &ExecRequest) -> Result<Plan, Error> {
    no_nul("cmd", &req.cmd)?;
    if req.cmd.is_empty() {
        return Err(bad_input("`cmd` is empty"));
    }
    for a in &req.args {
        no_nul("an element of `args`", a)?;
    }
    let deadline_ms = req.timeout_ms.unwrap_or(DEFAULT_EXEC_TIMEOUT_MS).max(1);
    let mut s = format!("[ -r \"{ENV_FILE}\" ] && . \"{ENV_FILE}\"; ");
    if let Some(cwd) = &req.cwd {
        no_nul("cwd", cwd)?;
        s.push_str(&format!("cd -- {} 2>/dev/null || {{ printf '%s\\n' {} >&2; exit 1; }}; ", quote(cwd), quote(CWD_MISSING)));
    }
    if !req.env.is_empty() {
        s.push_str("env --");
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') {
                return Err(bad_input(format!("environment variable name {k:?} is empty or contains '='")));
            }
            no_nul("an environment value", v)?;
            no_nul("an environment variable name", k)?;
            s.push(' ');
            s.push_str(&quote(&format!("{k}={v}")));
        }
        s.push(' ');
    }
    s.push_str(&format!("timeout -s KILL {} {}", seconds(deadline_ms), quote(&req.cmd)));
    for a in &req.args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s.push_str("; exit $?");
    Ok(Plan { script: s, deadline_ms })
}

/// The script that stores `create`'s env on the VM, for every later exec to source.
/// Names must be shell identifiers: the file is `export 'NAME'='value'` lines.
pub fn env_file_script(env: &[(String, String)]) -> Result<String, Error> {
    let mut content = String::new();
    for (k, v) in env {
        let ident = k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ident {
            return Err(bad_input(format!(
                "environment variable name {k:?} is not a shell identifier ([A-Za-z_][A-Za-z0-9_]*); Morph applies create-time env through the VM's shell"
            )));
        }
        no_nul("an environment value", v)?;
        content.push_str(&format!("export {}={}\n", quote(k), quote(v)));
    }
    Ok(format!("umask 077 && printf '%s' {} > \"{ENV_FILE}\"", quote(&content)))
}

/// What the plugin remembers of a command's output after passing it on: whether
/// stdout had anything, and stderr while it is short enough to be [`CWD_MISSING`].
#[derive(Debug, Default)]
pub struct Seen {
    stdout_any: bool,
    stderr: Vec<u8>,
    stderr_long: bool,
}

impl Seen {
    pub fn stdout(&mut self, bytes: &[u8]) {
        self.stdout_any |= !bytes.is_empty();
    }

    pub fn stderr(&mut self, bytes: &[u8]) {
        if self.stderr.len() + bytes.len() > CWD_MISSING.len() + 2 {
            self.stderr_long = true;
            self.stderr.clear();
        } else if !self.stderr_long {
            self.stderr.extend_from_slice(bytes);
        }
    }

    fn only_cwd_missing(&self) -> bool {
        !self.stdout_any && !self.stderr_long && self.stderr.trim_ascii_end() == CWD_MISSING.as_bytes()
    }
}

/// How the command ended, read from its exit status (`None`: it reported none).
pub fn interpret(plan: &Plan, cwd: Option<&str>, exit_code: Option<i64>, seen: &Seen, elapsed_ms: u64) -> Result<ExecResult, Error> {
    if exit_code == Some(1) && seen.only_cwd_missing() {
        return Err(bad_input(format!("cwd {:?} does not exist in the sandbox", cwd.unwrap_or_default())));
    }
    let timed_out = matches!(exit_code, Some(124 | 137)) && elapsed_ms >= plan.deadline_ms;
    let exit_code = match exit_code {
        // A session ended by a signal has no exit status (SSH `exit-signal`).
        None => -1,
        Some(_) if timed_out => -1,
        Some(c) => i32::try_from(c).unwrap_or(-1),
    };
    Ok(ExecResult { exit_code, timed_out })
}

/// `timeout`'s duration operand: whole seconds, or seconds with milliseconds.
fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

fn no_nul(what: &str, s: &str) -> Result<(), Error> {
    if s.contains('\0') {
        return Err(bad_input(format!("{what} contains a NUL byte, which no process argument can carry")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn req(cmd: &str, args: &[&str]) -> ExecRequest {
        ExecRequest {
            sandbox_id: "morphvm_x".into(),
            cmd: cmd.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cwd: None,
            timeout_ms: Some(5_000),
            stdin: None,
        }
    }

    /// Runs a script the way the VM's SSH server does (`sh -c`), with HOME set to `home`.
    fn run(script: &str, home: &std::path::Path) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).env("HOME", home).output().unwrap()
    }

    #[test]
    fn quoting_is_single_quote_escaping() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME `x` \"y\""), "'$HOME `x` \"y\"'");
    }

    #[test]
    fn the_script_has_the_expected_shape() {
        let mut r = req("echo", &["a b"]);
        r.env = vec![("K".into(), "v'1".into())];
        r.cwd = Some("/tmp".into());
        r.timeout_ms = Some(1500);
        let p = exec_plan(&r).unwrap();
        assert_eq!(p.deadline_ms, 1500);
        assert_eq!(
            p.script,
            r#"[ -r "$HOME/.iii_sandbox_env" ] && . "$HOME/.iii_sandbox_env"; cd -- '/tmp' 2>/dev/null || { printf '%s\n' 'iii-sandbox: cwd does not exist' >&2; exit 1; }; env -- 'K=v'\''1' timeout -s KILL 1.500 'echo' 'a b'; exit $?"#
        );
        assert_eq!(exec_plan(&req("true", &[])).unwrap().script.matches("timeout -s KILL 5 'true'").count(), 1);
    }

    #[test]
    fn argv_survives_the_shell_unchanged() {
        let home = tempfile_dir();
        let tricky = ["a b", "it's", "\"dq\"", "$HOME", "`id`", "*", "x;y", "new\nline", "", "-n", "A=B", "\\"];
        let p = exec_plan(&req(
            "printf",
            &[
                "%s\\0", tricky[0], tricky[1], tricky[2], tricky[3], tricky[4], tricky[5], tricky[6], tricky[7], tricky[8], tricky[9],
                tricky[10], tricky[11],
            ],
        ))
        .unwrap();
        // Through `sh` and through `bash` (the usual login shell on Morph's images).
        for shell in ["sh", "bash"] {
            let out = Command::new(shell).arg("-c").arg(&p.script).env("HOME", &*home).output().unwrap();
            assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
            let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
            let want: Vec<&[u8]> = tricky.iter().map(|s| s.as_bytes()).chain([&b""[..]]).collect();
            assert_eq!(got, want, "{shell}");
        }
    }

    #[test]
    fn env_cwd_and_create_env_apply() {
        let home = tempfile_dir();
        let create = env_file_script(&[("BOOT".into(), "from create".into()), ("OVER".into(), "create".into())]).unwrap();
        assert!(run(&create, &home).status.success());
        let mut r = req("sh", &["-c", "printf '%s|%s|%s|%s' \"$BOOT\" \"$OVER\" \"$E\" \"$PWD\""]);
        r.env = vec![("OVER".into(), "exec".into()), ("E".into(), "x y'z".into())];
        r.cwd = Some("/".into());
        let out = run(&exec_plan(&r).unwrap().script, &home);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from create|exec|x y'z|/");
    }

    #[test]
    fn exit_codes_missing_command_missing_cwd_and_timeout() {
        let home = tempfile_dir();
        let p = exec_plan(&req("sh", &["-c", "exit 7"])).unwrap();
        assert_eq!(run(&p.script, &home).status.code(), Some(7));

        let p = exec_plan(&req("no-such-command-iii", &[])).unwrap();
        assert_eq!(run(&p.script, &home).status.code(), Some(127));

        let mut r = req("true", &[]);
        r.cwd = Some("/no/such/dir".into());
        let p = exec_plan(&r).unwrap();
        let out = run(&p.script, &home);
        let e = interpret(&p, r.cwd.as_deref(), out.status.code().map(i64::from), &seen(&out.stdout, &out.stderr), 5).unwrap_err();
        assert_eq!(e.kind, provider_kit::ErrorKind::BadInput);
        // The same status with other output is the command's own failure.
        let other = interpret(&p, None, Some(1), &seen(b"", b"iii-sandbox: cwd does not exist\nand more"), 5).unwrap();
        assert_eq!(other.exit_code, 1);
        let mut split = Seen::default();
        split.stderr(b"iii-sandbox: cwd ");
        split.stderr(b"does not exist\n");
        assert!(interpret(&p, None, Some(1), &split, 5).is_err(), "a message written in pieces is still recognised");

        let mut r = req("sleep", &["5"]);
        r.timeout_ms = Some(300);
        let p = exec_plan(&r).unwrap();
        let started = std::time::Instant::now();
        let out = run(&p.script, &home);
        let elapsed = started.elapsed().as_millis() as u64;
        assert!(elapsed < 3000);
        let res = interpret(&p, None, out.status.code().map(i64::from), &Seen::default(), elapsed).unwrap();
        assert!(res.timed_out && res.exit_code == -1, "{res:?} status {:?}", out.status);
    }

    #[test]
    fn an_early_137_is_the_commands_own_status() {
        let p = exec_plan(&req("x", &[])).unwrap();
        let r = interpret(&p, None, Some(137), &Seen::default(), 10).unwrap();
        assert_eq!((r.exit_code, r.timed_out), (137, false));
        let r = interpret(&p, None, None, &Seen::default(), 10).unwrap();
        assert_eq!(r.exit_code, -1);
    }

    #[test]
    fn bad_names_are_caller_errors() {
        assert!(env_file_script(&[("1X".into(), "v".into())]).is_err());
        assert!(env_file_script(&[("A-B".into(), "v".into())]).is_err());
        let mut r = req("true", &[]);
        r.env = vec![("A=B".into(), "v".into())];
        assert!(exec_plan(&r).is_err());
        assert!(exec_plan(&req("a\0b", &[])).is_err());
        assert!(exec_plan(&req("", &[])).is_err());
    }

    fn seen(stdout: &[u8], stderr: &[u8]) -> Seen {
        let mut s = Seen::default();
        s.stdout(stdout);
        s.stderr(stderr);
        s
    }

    /// A private HOME, removed when dropped.
    struct Home(std::path::PathBuf);
    impl std::ops::Deref for Home {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Home {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempfile_dir() -> Home {
        let d = std::env::temp_dir().join(format!("morph-shell-test-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&d).unwrap();
        Home(d)
    }
}
