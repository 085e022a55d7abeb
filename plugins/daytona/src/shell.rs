//! The command string sent to Daytona's `process/execute`.
//!
//! Daytona's daemon does not run a shell: it splits `command` on spaces, honouring `'…'`
//! and `"…"` (no escapes, quotes only toggle), and execs the first word
//! (daytonaio/daytona `apps/daemon/pkg/toolbox/process/execute/execute.go`,
//! `parseCommand`). The request has no env field either. The official SDK therefore
//! base64-encodes the user's command and wraps it as `sh -c "…"` with `export` lines
//! (`libs/sdk-typescript/src/Process.ts`, `executeCommand`). We do the same, with two
//! deliberate differences, both so that argv and env arrive byte for byte:
//!
//! - the decoded script is `eval`ed (`sh -c 'eval "$(echo B64 | base64 -d)"'`) instead of
//!   piped into a second `sh`, so the command's stdin is not the script pipe, and the outer
//!   quote is `'` so the payload may use `"` (the daemon treats both quote kinds alike);
//! - env values are single-quoted inside the encoded script rather than produced by
//!   `$(… | base64 -d)`, which would strip trailing newlines.
//!
//! The script ends in `exec 'cmd' 'arg'…`: every word is single-quoted, so there is no
//! word splitting or expansion, the exit status is the command's own, and a missing
//! command exits 127 like any shell.

use base64::Engine as _;

/// Builds the daemon `command` for `cmd args…` with `env` exported, or explains why the
/// input cannot be passed through a POSIX shell unchanged.
pub fn wrap(cmd: &str, args: &[String], env: &[(String, String)]) -> Result<String, String> {
    let mut script = String::new();
    for (key, value) in env {
        if !is_env_name(key) {
            return Err(format!("env name {key:?} is not a valid shell variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        if value.contains('\0') {
            return Err(format!("env value of {key} contains a NUL byte, which no process environment can hold"));
        }
        script.push_str(&format!("export {key}={}\n", quote(value)));
    }
    if cmd.is_empty() {
        return Err("cmd is empty".into());
    }
    script.push_str("exec ");
    for (i, word) in std::iter::once(cmd).chain(args.iter().map(String::as_str)).enumerate() {
        if word.contains('\0') {
            return Err(format!("argument {i} contains a NUL byte, which no argv can hold"));
        }
        if i > 0 {
            script.push(' ');
        }
        script.push_str(&quote(word));
    }
    script.push('\n');
    let b64 = base64::engine::general_purpose::STANDARD.encode(script.as_bytes());
    // The base64 alphabet has no space or quote, so the daemon's splitter leaves it whole.
    Ok(format!("sh -c 'eval \"$(echo {b64} | base64 -d)\"'"))
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

    /// The daemon's splitter (execute.go `parseCommand`), as the simulator implements it.
    use provider_sims::daytona::parse_command as daemon_split;

    fn decoded_script(command: &str) -> String {
        let argv = daemon_split(command);
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert_eq!(argv.len(), 3, "{argv:?}");
        let b64 = argv[2].strip_prefix("eval \"$(echo ").and_then(|s| s.strip_suffix(" | base64 -d)\"")).unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn the_daemon_sees_exactly_sh_dash_c_and_one_script() {
        let cmd = wrap("printf", &["%s|".into(), "a b".into(), "it's \"q\"".into(), "$HOME".into()], &[]).unwrap();
        assert_eq!(decoded_script(&cmd), "exec 'printf' '%s|' 'a b' 'it'\\''s \"q\"' '$HOME'\n");
    }

    #[test]
    fn env_is_exported_single_quoted_and_names_are_checked() {
        let env = vec![("A".to_string(), "x y\n".to_string()), ("_B2".to_string(), "'".to_string())];
        let cmd = wrap("env", &[], &env).unwrap();
        assert_eq!(decoded_script(&cmd), "export A='x y\n'\nexport _B2=''\\'''\nexec 'env'\n");
        assert!(wrap("env", &[], &[("1A".into(), "v".into())]).unwrap_err().contains("\"1A\""));
        assert!(wrap("env", &[], &[("A-B".into(), "v".into())]).is_err());
        assert!(wrap("echo", &["a\0b".into()], &[]).unwrap_err().contains("NUL"));
    }

    #[test]
    fn quoting_round_trips_through_a_real_shell() {
        if !std::path::Path::new("/bin/sh").exists() {
            return;
        }
        let args: Vec<String> = vec!["a  b".into(), "'".into(), "\"".into(), "$(id)".into(), "*".into(), "\\n".into(), String::new()];
        let script_cmd = wrap("printf", &std::iter::once("[%s]".to_string()).chain(args.iter().cloned()).collect::<Vec<_>>(), &[]).unwrap();
        let argv = daemon_split(&script_cmd);
        let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        let expected: String = args.iter().map(|a| format!("[{a}]")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
}
