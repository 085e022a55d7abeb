//! The precompiled-component cache, and why its entries may be run.
//!
//! A `.cwasm` is native code: deserializing it runs whatever it contains, outside every
//! plugin limit. So an entry is used only when this host can prove it wrote it, from
//! exactly these component bytes, for exactly this engine:
//!
//! | what | where | rule |
//! |---|---|---|
//! | folder | outside the plugins folder; default from [`default_dir`] | created 0700; not used (warning) when another user owns it or group/others may write it |
//! | key | `<dir>/key`, 32 bytes from `/dev/urandom` | made 0600 on first use; not used (warning) when it is not ours, others may read or write it, or it is not 32 bytes |
//! | entry | `<dir>/<sha256(wasm)>-<compat>.cwasm` | [`MAGIC`] ‖ tag (32) ‖ artifact, written 0600 to a temp file and renamed into place |
//! | lock | `<dir>/.<entry>.lock`, while a missing entry is compiled | `flock`ed so hosts sharing the folder compile a component once; removed before it is unlocked |
//!
//! tag = HMAC-SHA256(key, [`DOMAIN`] ‖ sha256(wasm) ‖ len(engine id) as u64 LE ‖ engine id
//! ‖ artifact), the engine id naming the wasmtime version and the engine's compatibility
//! hash. Fields are fixed-size or length-prefixed, so no two inputs share a tag input.
//!
//! Loading reads the whole entry into memory, checks the magic and the tag (in constant
//! time) and hands those same bytes to `Component::deserialize`: nothing is mapped from
//! the file after the check, so a file changed in between is never what runs. An entry
//! that fails is refused with its path and the reason, compiled again and rewritten.
//! Only the folder's owner can write entries or read the key, so dropping a `.wasm` into
//! the plugins folder grants no way to plant native code. The tag costs one hash pass
//! over the artifact; that is the whole price of a cache hit beyond the deserialize.
//!
//! Unix only: ownership and modes are what the checks are about.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// First bytes of every entry; a file without them was not written by this format.
pub const MAGIC: [u8; 8] = *b"sbhcwv1\n";

/// Separates this MAC's inputs from any other use of the same key.
pub const DOMAIN: &[u8] = b"sandbox-host precompiled component cache v1\0";

/// The wasmtime version this host is built with (pinned `=` in host/Cargo.toml; a unit
/// test keeps the two equal). wasmtime only records its major version in an artifact.
pub const WASMTIME_VERSION: &str = "48.0.8";

const TAG_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN;
const KEY_LEN: usize = 32;
const KEY_FILE: &str = "key";

/// Where the cache goes when none is configured: `$SANDBOX_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/sandbox-host`, else `$HOME/.cache/sandbox-host`; `None` (no cache)
/// when none of them is set. Never derived from the plugins folder. `var` reads the
/// environment (a parameter so tests need not change the process's).
pub fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("SANDBOX_CACHE_DIR") {
        return Some(dir);
    }
    // The XDG spec says to ignore a relative value; a relative HOME is as meaningless.
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("sandbox-host"));
    }
    set("HOME").filter(|p| p.is_absolute()).map(|home| home.join(".cache").join("sandbox-host"))
}

/// Refuses a cache folder inside (or equal to) the plugins folder: whoever may drop a
/// plugin there could then plant entries or read the key. Decided on the real paths
/// (symlinks resolved as far as they exist), so `plugins/../plugins/.cache` or a link
/// into `plugins/` does not slip through.
pub fn check_outside_plugins(cache_dir: &Path, plugins_dir: &Path) -> anyhow::Result<()> {
    if resolved(cache_dir).starts_with(resolved(plugins_dir)) {
        anyhow::bail!(
            "refusing the cache directory {}: it is inside the plugins directory {}, so whoever may drop a plugin there could plant native code in the host; \
             choose one outside it (--cache-dir, SANDBOX_CACHE_DIR or cache_dir in the host config; the default is $XDG_CACHE_HOME/sandbox-host or ~/.cache/sandbox-host) or pass --no-cache",
            cache_dir.display(),
            plugins_dir.display()
        );
    }
    Ok(())
}

/// `path` made absolute, symlinks resolved for the part that exists and `.`/`..`
/// applied to the rest.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf());
    let parts: Vec<Component> = absolute.components().collect();
    for existing in (1..=parts.len()).rev() {
        let Ok(mut out) = parts[..existing].iter().collect::<PathBuf>().canonicalize() else { continue };
        for part in &parts[existing..] {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                _ => {}
            }
        }
        return out;
    }
    absolute
}

/// Why a cache folder is not used at all.
#[derive(Debug)]
pub struct CacheRefused {
    pub dir: PathBuf,
    pub reason: String,
    pub fix: String,
}

impl fmt::Display for CacheRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not using the precompiled cache {}: {}; {} (until then every plugin is compiled on every start)",
            self.dir.display(),
            self.reason,
            self.fix
        )
    }
}

/// Why one entry is not run.
#[derive(Debug)]
pub struct EntryRefused {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for EntryRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refusing precompiled cache entry {}: {}; compiling the component again", self.path.display(), self.reason)
    }
}

/// An entry whose tag checked out: the artifact bytes, in memory.
pub struct Verified {
    entry: Vec<u8>,
}

impl Verified {
    pub fn artifact(&self) -> &[u8] {
        &self.entry[HEADER_LEN..]
    }
}

/// An opened, checked cache folder and its key.
pub struct Cache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    compat: String,
    engine_id: String,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Cache").field("dir", &self.dir).field("engine_id", &self.engine_id).finish_non_exhaustive()
    }
}

impl Cache {
    /// Creates `dir` (0700) when missing, checks that only this user can write it, and
    /// reads or makes its key. `compat` is the engine's compatibility hash.
    pub fn open(dir: &Path, compat: &str) -> Result<Cache, CacheRefused> {
        let refuse = |reason: String, fix: String| CacheRefused { dir: dir.to_path_buf(), reason, fix };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| refuse(format!("cannot create it: {e}"), "create it (mode 700) or choose another --cache-dir".into()))?;
        let meta = std::fs::metadata(dir).map_err(|e| refuse(format!("cannot inspect it: {e}"), "choose another --cache-dir".into()))?;
        check_private(&meta, "it", dir).map_err(|(reason, fix)| refuse(reason, fix))?;
        let key = read_or_make_key(dir).map_err(|(reason, fix)| refuse(reason, fix))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            key,
            compat: compat.to_string(),
            engine_id: format!("wasmtime {WASMTIME_VERSION}; compat {compat}"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for the component with this SHA-256 lives.
    pub fn entry_path(&self, component_sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}-{}.cwasm", hex::encode(component_sha256), self.compat))
    }

    /// The verified artifact for this component, `Ok(None)` when there is no entry.
    pub fn load(&self, component_sha256: &[u8; 32]) -> Result<Option<Verified>, EntryRefused> {
        let path = self.entry_path(component_sha256);
        let refuse = |reason: String| EntryRefused { path: path.clone(), reason };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(refuse(format!("cannot open it: {e}"))),
        };
        let meta = file.metadata().map_err(|e| refuse(format!("cannot inspect it: {e}")))?;
        if !meta.is_file() {
            return Err(refuse("it is not a regular file".into()));
        }
        let mut entry = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut entry).map_err(|e| refuse(format!("cannot read it: {e}")))?;
        if entry.len() < HEADER_LEN || entry[..MAGIC.len()] != MAGIC {
            return Err(refuse("it has no sandbox-host header (written by an older host, or not by this host)".into()));
        }
        let (tag, artifact) = entry[MAGIC.len()..].split_at(TAG_LEN);
        self.mac(component_sha256, artifact)
            .verify_slice(tag)
            .map_err(|_| refuse("its MAC does not match: this host did not write it for this component and engine".into()))?;
        Ok(Some(Verified { entry }))
    }

    /// Holds this component's entry across processes while it is compiled and stored
    /// (an advisory `flock` on `.<entry>.lock`): hosts sharing this cache that miss it
    /// together compile it once, and the others then load what was stored. `None` when
    /// the lock cannot be had; the caller then goes on without it.
    pub fn lock_entry(&self, component_sha256: &[u8; 32]) -> Option<EntryLock> {
        let path = self.dir.join(format!(".{}-{}.lock", hex::encode(component_sha256), self.compat));
        // The holder removes the file before it unlocks, so a waiter may wake on a file
        // no longer at `path`: it then locks whatever is there now.
        for _ in 0..8 {
            let opened = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path);
            let file = match opened.and_then(|f| f.lock().map(|()| f)) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("compiling without the cache entry's lock {}: {e}", path.display());
                    return None;
                }
            };
            let (Ok(at_path), Ok(held)) = (std::fs::metadata(&path), file.metadata()) else { continue };
            if (at_path.dev(), at_path.ino()) == (held.dev(), held.ino()) {
                return Some(EntryLock { path, _file: file });
            }
        }
        None
    }

    /// Writes the entry for this component: whole or not at all (temp file + rename).
    pub fn store(&self, component_sha256: &[u8; 32], artifact: &[u8]) -> std::io::Result<()> {
        let path = self.entry_path(component_sha256);
        let tag = self.mac(component_sha256, artifact).finalize().into_bytes();
        let tmp = temp_path(&self.dir, &path);
        let written = (|| {
            let mut f = create_private(&tmp)?;
            f.write_all(&MAGIC)?;
            f.write_all(&tag)?;
            f.write_all(artifact)?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn mac(&self, component_sha256: &[u8; 32], artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        mac.update(component_sha256);
        mac.update(&(self.engine_id.len() as u64).to_le_bytes());
        mac.update(self.engine_id.as_bytes());
        mac.update(artifact);
        mac
    }
}

/// `Err((reason, fix))` unless this user owns `what` and nobody else may write it.
/// A cache entry's lock ([`Cache::lock_entry`]): dropping it removes the lock file,
/// then unlocks it, so the cache folder holds no lock files between compiles.
pub struct EntryLock {
    path: PathBuf,
    _file: File,
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn check_private(meta: &std::fs::Metadata, what: &str, path: &Path) -> Result<(), (String, String)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err((
            format!("{what} is owned by uid {}, not by this user (uid {me})", meta.uid()),
            format!("`chown {me} {}` or choose another --cache-dir", path.display()),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err((format!("{what} is writable by group or others (mode {mode:03o})"), format!("`chmod go-w {}`", path.display())));
    }
    Ok(())
}

/// The folder's key; made on first use. Racing hosts agree: the key is linked into
/// place only if none exists, and the loser reads the winner's.
fn read_or_make_key(dir: &Path) -> Result<[u8; KEY_LEN], (String, String)> {
    let path = dir.join(KEY_FILE);
    let cannot = |doing: &str, e: std::io::Error| {
        (format!("cannot {doing} its key {}: {e}", path.display()), "fix the folder or choose another --cache-dir".to_string())
    };
    if !path.exists() {
        let mut key = [0u8; KEY_LEN];
        File::open("/dev/urandom").and_then(|mut r| r.read_exact(&mut key)).map_err(|e| cannot("make", e))?;
        let tmp = temp_path(dir, &path);
        let made =
            create_private(&tmp).and_then(|mut f| f.write_all(&key).and_then(|_| f.sync_all())).and_then(|_| {
                match std::fs::hard_link(&tmp, &path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    other => other,
                }
            });
        let _ = std::fs::remove_file(&tmp);
        made.map_err(|e| cannot("make", e))?;
    }
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path).map_err(|e| cannot("open", e))?;
    let meta = file.metadata().map_err(|e| cannot("inspect", e))?;
    let replace = format!("delete {} (a new key is made and every entry is compiled again)", path.display());
    check_private(&meta, "its key", &path).map_err(|(reason, _)| (reason, replace.clone()))?;
    if meta.mode() & 0o077 != 0 {
        return Err((
            format!("its key {} is readable by group or others (mode {:03o})", path.display(), meta.mode() & 0o777),
            format!("`chmod 600 {}`, or {replace}", path.display()),
        ));
    }
    let mut key = [0u8; KEY_LEN];
    let mut extra = [0u8; 1];
    if !meta.is_file() || file.read_exact(&mut key).is_err() || file.read(&mut extra).map_or(true, |n| n != 0) {
        return Err((format!("its key {} is not a file of {KEY_LEN} bytes", path.display()), replace));
    }
    Ok(key)
}

/// A fresh file only this user can read and write; never an existing one.
fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Unique per process and per write, so concurrent writers never share a temp file.
fn temp_path(dir: &Path, target: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".{}.tmp{}-{seq}", target.file_name().unwrap_or_default().to_string_lossy(), std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const COMPONENT: [u8; 32] = [7; 32];
    const OTHER_COMPONENT: [u8; 32] = [9; 32];

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_default_dir_is_sandbox_cache_dir_then_xdg_then_home_then_none() {
        let all = [("SANDBOX_CACHE_DIR", "/srv/cache"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")];
        assert_eq!(default_dir(env(&all)), Some(PathBuf::from("/srv/cache")));
        assert_eq!(default_dir(env(&all[1..])), Some(PathBuf::from("/x/sandbox-host")));
        assert_eq!(default_dir(env(&all[2..])), Some(PathBuf::from("/home/u/.cache/sandbox-host")));
        assert_eq!(
            default_dir(env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/home/u/.cache/sandbox-host"))
        );
        assert_eq!(default_dir(env(&[("SANDBOX_CACHE_DIR", ""), ("HOME", "")])), None);
        assert_eq!(default_dir(env(&[])), None);
    }

    #[test]
    fn a_cache_dir_inside_or_equal_to_the_plugins_dir_is_refused_and_a_sibling_is_not() {
        let root = tempfile::tempdir().unwrap();
        let plugins = root.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::os::unix::fs::symlink(&plugins, root.path().join("link")).unwrap();
        for inside in
            [plugins.join(".cache"), plugins.clone(), root.path().join("link/.cache"), root.path().join("other/../plugins/new/.cache")]
        {
            let e = check_outside_plugins(&inside, &plugins).expect_err(&inside.display().to_string()).to_string();
            assert!(e.contains("is inside the plugins directory"), "{e}");
        }
        check_outside_plugins(&root.path().join("cache"), &plugins).unwrap();
        check_outside_plugins(&root.path().join("plugins-cache"), &plugins).unwrap();
    }

    #[test]
    fn the_folder_is_made_0700_and_the_key_and_entries_0600() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let cache = Cache::open(&dir, "c0").unwrap();
        cache.store(&COMPONENT, b"artifact").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&cache.entry_path(&COMPONENT)), 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "key and entry, no temp files");
    }

    #[test]
    fn an_entry_round_trips_and_a_second_open_reuses_the_key() {
        let root = tempfile::tempdir().unwrap();
        Cache::open(root.path(), "c0").unwrap().store(&COMPONENT, b"artifact").unwrap();
        let again = Cache::open(root.path(), "c0").unwrap();
        assert_eq!(again.load(&COMPONENT).unwrap().unwrap().artifact(), b"artifact");
        assert!(again.load(&OTHER_COMPONENT).unwrap().is_none(), "no entry is a miss, not a refusal");
    }

    fn refusal(cache: &Cache, component: &[u8; 32]) -> String {
        match cache.load(component) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("should be refused, got {:?}", v.map(|v| v.artifact().to_vec())),
        }
    }

    #[test]
    fn an_entry_copied_under_another_components_name_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path(), "c0").unwrap();
        cache.store(&OTHER_COMPONENT, b"other code").unwrap();
        std::fs::copy(cache.entry_path(&OTHER_COMPONENT), cache.entry_path(&COMPONENT)).unwrap();
        assert!(refusal(&cache, &COMPONENT).contains("its MAC does not match"));
    }

    #[test]
    fn an_entry_written_for_another_engine_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let old = Cache::open(root.path(), "c0").unwrap();
        let new = Cache::open(root.path(), "c1").unwrap();
        old.store(&COMPONENT, b"artifact").unwrap();
        std::fs::copy(old.entry_path(&COMPONENT), new.entry_path(&COMPONENT)).unwrap();
        assert!(refusal(&new, &COMPONENT).contains("its MAC does not match"));
    }

    #[test]
    fn a_changed_truncated_or_headerless_entry_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path(), "c0").unwrap();
        cache.store(&COMPONENT, b"artifact").unwrap();
        let path = cache.entry_path(&COMPONENT);
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(refusal(&cache, &COMPONENT).contains("its MAC does not match"));
        std::fs::write(&path, &good[..HEADER_LEN - 1]).unwrap();
        assert!(refusal(&cache, &COMPONENT).contains("no sandbox-host header"));
        std::fs::write(&path, b"artifact").unwrap();
        assert!(refusal(&cache, &COMPONENT).contains("no sandbox-host header"));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(refusal(&cache, &COMPONENT).contains(&path.display().to_string()));
    }

    #[test]
    fn a_folder_others_may_write_is_not_used() {
        for mode in [0o770, 0o707, 0o777] {
            let root = tempfile::tempdir().unwrap();
            chmod(root.path(), mode);
            let e = Cache::open(root.path(), "c0").unwrap_err().to_string();
            assert!(e.contains("writable by group or others") && e.contains("chmod go-w"), "{e}");
            assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing written, not even a key");
        }
    }

    #[test]
    fn a_key_others_may_read_or_of_the_wrong_size_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        Cache::open(root.path(), "c0").unwrap();
        let key = root.path().join(KEY_FILE);
        chmod(&key, 0o644);
        assert!(Cache::open(root.path(), "c0").unwrap_err().to_string().contains("readable by group or others"));
        chmod(&key, 0o600);
        std::fs::write(&key, b"short").unwrap();
        assert!(Cache::open(root.path(), "c0").unwrap_err().to_string().contains("not a file of 32 bytes"));
    }

    #[test]
    fn the_wasmtime_version_matches_the_pinned_dependency() {
        let manifest = include_str!("../../Cargo.toml");
        assert!(
            manifest.contains(&format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"")),
            "update WASMTIME_VERSION with host/Cargo.toml"
        );
    }
}
