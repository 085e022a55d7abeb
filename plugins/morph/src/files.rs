//! `fs::read` and `fs::write` through exec. Morph has no file API (its REST paths have
//! none; files otherwise move over SFTP on `ssh.cloud.morph.so`, which a plugin cannot
//! reach), so the bytes travel as base64 inside shell scripts sent to the blocking
//! `POST /instance/{id}/exec`, quoted with [`shell::quote`]:
//!
//! - read: one script checks the file (missing → not-found, not a regular file or over
//!   the cap → bad input, each with its own exit status and message) and prints
//!   `base64 < file`; the plugin decodes stdout, ignoring the line breaks.
//! - write: the bytes go in pieces of [`CHUNK_BYTES`], each a here-document fed to
//!   `base64 -d >> tmp` (the server runs the command through the VM's shell, which gets
//!   it as one argument; Linux caps one argument at 128 KiB, so one piece stays well
//!   under that). The first script checks (or with `parents`, creates) the target's
//!   directory; the last copies the temporary file onto the target with `cat` (so an
//!   existing file keeps its inode and permissions, as an in-place write would), removes
//!   it and applies `mode`. A failed write leaves the target as it was.
//!
//! Both directions are capped at [`MAX_FILE_BYTES`] (1 MiB) of file content: a write
//! costs one exec per 64 KiB piece, and the cap keeps that at 16, inside the host's
//! default budget of 32 upstream requests per call; a larger write is S422 before any
//! request, a larger file read is S422 from the size check on the VM.

use crate::api;
use crate::shell::quote;
use base64::Engine as _;
use provider_kit::errors::{bad_input, not_found, unavailable};
use provider_kit::{Error, FsWriteRequest};

/// Largest file the fs leaves move (content bytes, before base64).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Content bytes per write script: 87 384 base64 characters with line breaks, under
/// Linux's 131 072-byte limit on one process argument with room for the script.
pub const CHUNK_BYTES: usize = 64 << 10;
/// Wait for one file script; they only copy bytes.
const SCRIPT_TIMEOUT_MS: u64 = 30_000;

/// Exit statuses the scripts use for their own verdicts, each with a message on stderr.
const GONE: i64 = 3;
const NOT_REGULAR: i64 = 4;
const TOO_LARGE: i64 = 5;
/// Here-document delimiter: `_` is not in the base64 alphabet, so no data line equals it.
const EOF_MARK: &str = "III_EOF";

/// The read script for `path`.
pub fn read_script(path: &str) -> Result<String, Error> {
    let f = quote(checked(path)?);
    Ok(format!(
        "if [ ! -e {f} ]; then printf '%s\\n' 'iii-sandbox: no such file' >&2; exit {GONE}; fi; \
         if [ ! -f {f} ]; then printf '%s\\n' 'iii-sandbox: not a regular file' >&2; exit {NOT_REGULAR}; fi; \
         n=$(( $(wc -c < {f}) )) || exit 1; \
         if [ \"$n\" -gt {MAX_FILE_BYTES} ]; then printf 'iii-sandbox: the file has %s bytes\\n' \"$n\" >&2; exit {TOO_LARGE}; fi; \
         base64 < {f}"
    ))
}

/// The write scripts for `req`, in order; `tag` names the temporary file (unique per call).
pub fn write_scripts(req: &FsWriteRequest, tag: &str) -> Result<Vec<String>, Error> {
    let f = quote(checked(&req.path)?);
    if req.bytes.len() > MAX_FILE_BYTES {
        return Err(over_cap("fs::write", req.bytes.len()));
    }
    let t = quote(&format!("/tmp/.iii-upload-{tag}"));
    let dir = format!("\"$(dirname -- {f})\"");
    let pieces: Vec<&[u8]> = if req.bytes.is_empty() { vec![&[]] } else { req.bytes.chunks(CHUNK_BYTES).collect() };
    let last = pieces.len() - 1;
    let mut scripts = Vec::with_capacity(pieces.len());
    for (i, piece) in pieces.into_iter().enumerate() {
        let mut s = String::new();
        if i == 0 {
            if req.parents {
                s.push_str(&format!("mkdir -p -- {dir} || exit 1; "));
            } else {
                s.push_str(&format!("[ -d {dir} ] || {{ printf '%s\\n' 'iii-sandbox: no such directory' >&2; exit {GONE}; }}; "));
            }
            // Private while it holds the caller's bytes.
            s.push_str(&format!("(umask 077 && : > {t}) || exit 1; "));
        }
        s.push_str(&format!("base64 -d >> {t} <<'{EOF_MARK}' || {{ rm -f -- {t}; exit 1; }}\n"));
        s.push_str(&wrapped(piece));
        s.push_str(EOF_MARK);
        s.push('\n');
        if i == last {
            s.push_str(&format!("cat -- {t} > {f} || {{ rm -f -- {t}; exit 1; }}; rm -f -- {t}"));
            if let Some(mode) = req.mode {
                s.push_str(&format!("; chmod {mode:o} -- {f}"));
            }
            s.push('\n');
        }
        scripts.push(s);
    }
    Ok(scripts)
}

/// The cleanup after a write that failed part-way.
pub fn cleanup_script(tag: &str) -> String {
    format!("rm -f -- {}", quote(&format!("/tmp/.iii-upload-{tag}")))
}

/// The file's bytes from the read script's stdout.
pub fn decode(stdout: &str) -> Result<Vec<u8>, Error> {
    let text: String = stdout.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| unavailable(format!("fs::read: the sandbox's `base64` printed something that is not base64 ({e})")))
}

/// A script's failure as the caller's error: its own verdicts by status, a missing tool
/// as the image's problem, and anything else (permissions, a directory in the way, a
/// full disk) as the caller's, with the shell's message.
pub fn failure(leaf: &str, path: &str, exit_code: Option<i64>, stderr: &str) -> Error {
    let said = stderr.trim();
    let ours = said.starts_with("iii-sandbox: ");
    match exit_code {
        Some(GONE) if ours && leaf == "fs::write" => {
            not_found(format!("fs::write: the directory of {path:?} does not exist in the sandbox (send `parents: true` to create it)"))
        }
        Some(GONE) if ours => not_found(format!("fs::read: {path:?} does not exist in the sandbox")),
        Some(NOT_REGULAR) if ours => bad_input(format!("fs::read: {path:?} is not a regular file")),
        Some(TOO_LARGE) if ours => {
            let size = said.split_whitespace().find_map(|w| w.parse::<usize>().ok()).unwrap_or(MAX_FILE_BYTES + 1);
            over_cap("fs::read", size)
        }
        Some(127) => unavailable(format!("{leaf} {path:?}: the sandbox's image lacks a tool the plugin needs (exit 127): {said}")),
        code => bad_input(format!("{leaf} {path:?} failed in the sandbox (exit {code:?}): {said}")),
    }
}

fn over_cap(leaf: &str, size: usize) -> Error {
    bad_input(format!(
        "{leaf}: {size} bytes is over Morph's file cap of {MAX_FILE_BYTES} bytes (1 MiB): Morph has no file API, \
         so files move as base64 through exec, in at most 16 pieces"
    ))
}

fn checked(path: &str) -> Result<&str, Error> {
    if path.is_empty() {
        return Err(bad_input("`path` is empty"));
    }
    if path.contains('\0') {
        return Err(bad_input("`path` contains a NUL byte, which no file name can hold"));
    }
    Ok(path)
}

/// `bytes` as base64 in lines of 76 characters, each ending in a newline.
fn wrapped(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 + 1);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Runs one file script: the outer error is the request's (upstream, transport), the
/// inner one the script's own verdict; `Ok(Ok(stdout))` when it exited 0.
async fn run(id: &str, leaf: &str, path: &str, script: &str) -> Result<Result<String, Error>, Error> {
    let out = api::exec(id, script, SCRIPT_TIMEOUT_MS).await?;
    Ok(match out.exit_code {
        Some(0) => Ok(out.stdout.unwrap_or_default()),
        code => Err(failure(leaf, path, code, out.stderr.as_deref().unwrap_or_default())),
    })
}

/// `fs::read`: one script, its stdout decoded.
pub async fn read(id: &str, path: &str) -> Result<Vec<u8>, Error> {
    let script = read_script(path)?;
    match run(id, "fs::read", path, &script).await {
        Ok(Ok(stdout)) => decode(&stdout),
        Ok(Err(verdict)) => Err(verdict),
        Err(e) => Err(api::explain_refusal(id, e).await),
    }
}

/// `fs::write`: the pieces in order. A script that fails removes its temporary file
/// itself; after a failed request past the first piece the plugin asks for that once
/// more (best effort), as the file may hold earlier pieces.
pub async fn write(req: &FsWriteRequest, tag: &str) -> Result<(), Error> {
    let (id, path) = (&req.sandbox_id, &req.path);
    for (i, script) in write_scripts(req, tag)?.into_iter().enumerate() {
        match run(id, "fs::write", path, &script).await {
            Ok(Ok(_)) => {}
            Ok(Err(verdict)) => return Err(verdict),
            Err(e) => {
                if i > 0 {
                    let _ = api::exec(id, &cleanup_script(tag), SCRIPT_TIMEOUT_MS).await;
                }
                return Err(api::explain_refusal(id, e).await);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use provider_kit::ErrorKind;
    use std::process::Command;

    fn req(path: &str, bytes: Vec<u8>, mode: Option<u32>, parents: bool) -> FsWriteRequest {
        FsWriteRequest { sandbox_id: "morphvm_x".into(), path: path.into(), bytes, mode, parents }
    }

    /// Runs `script` as the VM's shell does (`sh -c`, one argument) in `dir`.
    fn sh(script: &str, dir: &std::path::Path) -> std::process::Output {
        Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("morph-files-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn binary_bytes_round_trip_in_pieces_with_mode_and_parents() {
        let dir = scratch("roundtrip");
        // Every byte value, over three pieces, and a here-document delimiter in the data.
        let bytes: Vec<u8> = (0..=255u8).cycle().take(2 * CHUNK_BYTES + 100).chain(b"\nIII_EOF\n".iter().copied()).collect();
        let scripts = write_scripts(&req("a b/it's/data.bin", bytes.clone(), Some(0o640), true), "t1").unwrap();
        assert_eq!(scripts.len(), 3);
        for s in &scripts {
            assert!(s.len() < 100_000, "one piece stays far under the 128 KiB argument limit: {}", s.len());
            let out = sh(s, &dir);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let target = dir.join("a b/it's/data.bin");
        assert_eq!(std::fs::read(&target).unwrap(), bytes);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777, 0o640);
        assert!(!std::path::Path::new("/tmp/.iii-upload-t1").exists(), "the temporary file is gone");

        let out = sh(&read_script("a b/it's/data.bin").unwrap(), &dir);
        assert!(out.status.success());
        assert_eq!(decode(&String::from_utf8(out.stdout).unwrap()).unwrap(), bytes);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_files_and_overwrites_keep_the_existing_mode() {
        let dir = scratch("overwrite");
        std::fs::write(dir.join("x"), b"old contents").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.join("x"), std::fs::Permissions::from_mode(0o751)).unwrap();
        for s in write_scripts(&req("x", Vec::new(), None, false), "t2").unwrap() {
            assert!(sh(&s, &dir).status.success());
        }
        assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"");
        assert_eq!(std::fs::metadata(dir.join("x")).unwrap().permissions().mode() & 0o7777, 0o751);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failures_are_classified() {
        let dir = scratch("failures");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let verdict = |script: &str, leaf: &str, path: &str| {
            let out = sh(script, &dir);
            failure(leaf, path, out.status.code().map(i64::from), &String::from_utf8_lossy(&out.stderr))
        };
        assert_eq!(verdict(&read_script("nope.txt").unwrap(), "fs::read", "nope.txt").kind, ErrorKind::NotFound);
        assert_eq!(verdict(&read_script("sub").unwrap(), "fs::read", "sub").kind, ErrorKind::BadInput);
        let no_dir = &write_scripts(&req("missing/x", vec![1], None, false), "t3").unwrap()[0];
        let e = verdict(no_dir, "fs::write", "missing/x");
        assert!(e.kind == ErrorKind::NotFound && e.message.contains("parents"), "{e:?}");
        let onto_dir = &write_scripts(&req("sub", vec![1], None, false), "t4").unwrap()[0];
        assert_eq!(verdict(onto_dir, "fs::write", "sub").kind, ErrorKind::BadInput);
        assert!(!std::path::Path::new("/tmp/.iii-upload-t4").exists());

        std::fs::write(dir.join("big"), vec![0u8; MAX_FILE_BYTES + 1]).unwrap();
        let e = verdict(&read_script("big").unwrap(), "fs::read", "big");
        assert!(e.kind == ErrorKind::BadInput && e.message.contains(&format!("{} bytes is over", MAX_FILE_BYTES + 1)), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_input_is_refused_before_any_script() {
        let e = write_scripts(&req("x", vec![0; MAX_FILE_BYTES + 1], None, false), "t").unwrap_err();
        assert!(e.kind == ErrorKind::BadInput && e.message.contains("1048576 bytes"), "{e:?}");
        assert!(write_scripts(&req("", vec![], None, false), "t").is_err());
        assert!(read_script("a\0b").is_err());
        assert_eq!(write_scripts(&req("x", vec![0; MAX_FILE_BYTES], None, false), "t").unwrap().len(), 16);
    }
}
