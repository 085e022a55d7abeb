//! `filesystem.Filesystem/{Stat,ListDir,MakeDir,Remove,Move}` for every provider, as
//! one POSIX shell script run through the exec leaf: the contract has no directory
//! leaves, and every sandbox has `sh`, `od` and GNU `find`. Entries are `find -printf`
//! records, NUL-terminated so newlines in names survive, sent as hex through `od`
//! (Daytona's exec drops NUL bytes from output), and become envd's `EntryInfo`; the
//! script's exit status says not found / already exists / not a directory.

use super::super::errors::ConnectError;
use super::super::E2bApi;
use super::Target;
use crate::contract::shapes::Leaf;
use serde_json::{json, Value};

const NOT_FOUND: i64 = 44;
const EXISTS: i64 = 45;
const NOT_A_DIR: i64 = 46;
const FAILED: i64 = 47;

/// `$1` operation, `$2` path, `$3` depth or destination. Relative paths are taken from
/// the command's working directory, the sandbox user's home, as envd does.
const SCRIPT: &str = r#"
abs() { case "$1" in /*) printf '%s' "$1";; *) printf '%s/%s' "$PWD" "$1";; esac; }
fmt='%y\t%s\t%m\t%M\t%u\t%g\t%T@\t%l\t%p\0'
entry() { find "$1" -maxdepth 0 -printf "$fmt" | od -An -v -tx1; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }
p=$(abs "$2")
case "$1" in
  stat) exists "$p" || exit 44; entry "$p" ;;
  list) exists "$p" || exit 44; [ -d "$p" ] || exit 46
        find "$p" -mindepth 1 -maxdepth "$3" -printf "$fmt" | od -An -v -tx1 ;;
  mkdir) exists "$p" && exit 45; mkdir -p -- "$p" || exit 47; entry "$p" ;;
  remove) rm -rf -- "$p" || exit 47 ;;
  move) exists "$p" || exit 44; d=$(abs "$3"); mkdir -p -- "$(dirname -- "$d")" || exit 47
        mv -- "$p" "$d" || exit 47; entry "$d" ;;
esac
"#;

pub fn serves(method: &str) -> bool {
    matches!(method, "Stat" | "ListDir" | "MakeDir" | "Remove" | "Move")
}

pub async fn call(api: &E2bApi, t: &Target, method: &str, message: &Value) -> Result<Value, ConnectError> {
    let path = |field: &str| {
        message[field]
            .as_str()
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ConnectError::new("invalid_argument", format!("`{field}` is required")))
    };
    let (op, arg) = match method {
        "Stat" => ("stat", String::new()),
        "ListDir" => ("list", message["depth"].as_u64().filter(|d| *d > 0).unwrap_or(1).to_string()),
        "MakeDir" => ("mkdir", String::new()),
        "Remove" => ("remove", String::new()),
        _ => ("move", path("destination")?),
    };
    let target_path = if method == "Move" { path("source")? } else { path("path")? };
    let payload = json!({
        "sandbox_id": t.sandbox.upstream_id,
        "cmd": "/bin/sh",
        "args": ["-c", SCRIPT, "sh", op, target_path, arg],
    });
    let answer = api.host.call(&t.sandbox.provider, Leaf::Exec, &payload).await.map_err(|e| ConnectError::from_call(&e))?;
    let stdout = answer["stdout"].as_str().unwrap_or_default();
    let failed = |code, what: &str| ConnectError::new(code, format!("{what} {target_path:?} in sandbox {}", t.id));
    match answer["exit_code"].as_i64() {
        Some(0) => {}
        Some(NOT_FOUND) => return Err(failed("not_found", "no such file or directory:")),
        Some(EXISTS) => return Err(failed("already_exists", "already exists:")),
        Some(NOT_A_DIR) => return Err(failed("invalid_argument", "not a directory:")),
        Some(FAILED) => {
            let why = answer["stderr"].as_str().unwrap_or_default().trim().to_string();
            let code = if why.contains("Permission denied") { "permission_denied" } else { "internal" };
            return Err(ConnectError::new(code, format!("{method} {target_path:?} failed: {why}")));
        }
        other => {
            return Err(ConnectError::new(
                "internal",
                format!(
                    "{method} needs sh and GNU find in the sandbox; the script exited {other:?}: {}",
                    answer["stderr"].as_str().unwrap_or_default().trim()
                ),
            ))
        }
    }
    let entries: Vec<Value> = records(stdout)?.iter().filter_map(|r| entry_info(r)).collect();
    Ok(match method {
        "ListDir" => json!({ "entries": entries }),
        "Remove" => json!({}),
        _ => {
            json!({ "entry": entries.into_iter().next().ok_or_else(|| ConnectError::new("internal", format!("{method} printed no entry")))? })
        }
    })
}

/// The NUL-terminated records in `od`'s hex dump.
fn records(dump: &str) -> Result<Vec<String>, ConnectError> {
    let hex: String = dump.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = hex::decode(&hex).map_err(|_| ConnectError::new("internal", "the sandbox's od printed something other than hex"))?;
    Ok(bytes.split(|b| *b == 0).filter(|r| !r.is_empty()).map(|r| String::from_utf8_lossy(r).into_owned()).collect())
}

/// One `find -printf` record as envd's `EntryInfo`.
fn entry_info(record: &str) -> Option<Value> {
    let f: Vec<&str> = record.trim_start_matches('\n').splitn(9, '\t').collect();
    let [kind, size, mode, perms, owner, group, mtime, link, path] = f.as_slice() else { return None };
    let file_type = match *kind {
        "f" => "FILE_TYPE_FILE",
        "d" => "FILE_TYPE_DIRECTORY",
        "l" => "FILE_TYPE_SYMLINK",
        _ => "FILE_TYPE_UNSPECIFIED",
    };
    let modified = mtime
        .parse::<f64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s.trunc() as i64, (s.fract() * 1e9) as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut v = json!({
        "name": name,
        "type": file_type,
        "path": path,
        "size": size,
        "mode": u32::from_str_radix(mode, 8).unwrap_or(0),
        "permissions": perms,
        "owner": owner,
        "group": group,
        "modifiedTime": modified,
    });
    if *kind == "l" {
        v["symlinkTarget"] = json!(link);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_records_become_entry_infos() {
        let e = entry_info("f\t5\t644\t-rw-r--r--\tuser\tuser\t1704164645.5\t\t/tmp/a b.txt").unwrap();
        assert_eq!(e["type"], "FILE_TYPE_FILE");
        assert_eq!((e["name"].as_str(), e["path"].as_str()), (Some("a b.txt"), Some("/tmp/a b.txt")));
        assert_eq!((e["size"].as_str(), e["mode"].as_u64()), (Some("5"), Some(0o644)));
        assert_eq!(e["modifiedTime"], "2024-01-02T03:04:05Z");
        let l = entry_info("l\t3\t777\tlrwxrwxrwx\tu\tg\t0\t/etc\t/home/u/link").unwrap();
        assert_eq!((l["type"].as_str(), l["symlinkTarget"].as_str()), (Some("FILE_TYPE_SYMLINK"), Some("/etc")));
        assert!(entry_info("garbage").is_none());
    }

    /// The script itself, run here the way a sandbox runs it.
    #[test]
    fn the_script_stats_lists_makes_moves_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let run = |op: &str, path: &str, arg: &str| {
            let out =
                std::process::Command::new("/bin/sh").args(["-c", SCRIPT, "sh", op, path, arg]).current_dir(dir.path()).output().unwrap();
            (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        assert_eq!(run("stat", "nope", "").0, NOT_FOUND as i32);
        let (code, out) = run("mkdir", "d/e", "");
        assert_eq!(code, 0);
        let made = entry_info(&records(&out).unwrap()[0]).unwrap();
        assert_eq!(made["type"], "FILE_TYPE_DIRECTORY");
        assert!(made["path"].as_str().unwrap().ends_with("/d/e") && made["path"].as_str().unwrap().starts_with('/'));
        assert_eq!(run("mkdir", "d/e", "").0, EXISTS as i32);
        std::fs::write(dir.path().join("d/f.txt"), "hi").unwrap();
        std::fs::write(dir.path().join("d/two\nlines"), "").unwrap();
        let (code, out) = run("list", "d", "1");
        assert_eq!(code, 0);
        assert!(!out.contains('\0'), "no NUL byte in the output: Daytona's exec drops them");
        let mut names: Vec<String> =
            records(&out).unwrap().iter().map(|r| entry_info(r).unwrap()["name"].as_str().unwrap().into()).collect();
        names.sort();
        assert_eq!(names, ["e", "f.txt", "two\nlines"]);
        assert_eq!(run("list", "d/f.txt", "1").0, NOT_A_DIR as i32);
        assert_eq!(run("move", "d/f.txt", "g/h.txt").0, 0);
        assert!(dir.path().join("g/h.txt").exists());
        assert_eq!(run("remove", "g", "").0, 0);
        assert!(!dir.path().join("g").exists());
    }
}
