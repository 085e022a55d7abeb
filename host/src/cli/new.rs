//! `sandbox-host new NAME --lang rust|python [--dir DIR]`: writes a provider skeleton that
//! builds as it is and passes `sandbox-host check`: the world's WIT, a README, a build
//! script, an example policy, and leaves that answer `unsupported` ("not implemented
//! yet") until the author writes them — never a made-up success.
//!
//! The files are templates under `host/templates/` and the WIT is `wit/sandbox.wit`, all
//! compiled in with `include_str!`, so the binary writes the world it runs. A Rust
//! skeleton depends on the guest kit by path: `--kit DIR`, else the kit of the source
//! tree this binary was built from (`plugins/kit`), when it is there.

use super::out::{errln, outln};
use super::GlobalArgs;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// componentize-py as the project's own Python plugins are built (scripts/build-python-plugins.sh).
pub const COMPONENTIZE_PY: &str = "0.25.1";

const WIT: &str = include_str!("../../../wit/sandbox.wit");
/// The example policy, the same for both languages.
const POLICY: &str = include_str!("../../templates/policy.toml");

/// (path in the skeleton, template, executable).
const RUST: &[(&str, &str, bool)] = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml"), false),
    ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs"), false),
    ("build.sh", include_str!("../../templates/rust/build.sh"), true),
    ("README.md", include_str!("../../templates/rust/README.md"), false),
    ("{{name}}.toml", POLICY, false),
    (".gitignore", include_str!("../../templates/rust/gitignore"), false),
    ("wit/sandbox.wit", WIT, false),
];

const PYTHON: &[(&str, &str, bool)] = &[
    ("app.py", include_str!("../../templates/python/app.py"), false),
    ("build.sh", include_str!("../../templates/python/build.sh"), true),
    ("README.md", include_str!("../../templates/python/README.md"), false),
    ("{{name}}.toml", POLICY, false),
    (".gitignore", include_str!("../../templates/python/gitignore"), false),
    ("wit/sandbox.wit", WIT, false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Provider name: a-z, 0-9 and -, as the plugin file will be named (<name>.wasm).
    pub name: String,
    /// The skeleton's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write it (default: ./<name>); must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust only: the guest kit's directory (default: plugins/kit of this binary's source tree).
    #[arg(long, value_name = "DIR")]
    pub kit: Option<PathBuf>,
}

pub async fn run(_global: &GlobalArgs, args: NewArgs) -> anyhow::Result<u8> {
    match write(&args) {
        Ok(dir) => {
            outln!("created {} ({:?} provider `{}`)", dir.display(), args.lang, args.name)?;
            outln!("build it: {}/build.sh, then: sandbox-host check {}/{}.wasm", dir.display(), dir.display(), args.name)?;
            Ok(0)
        }
        Err(e) => {
            errln!("error: {e:#}");
            Ok(1)
        }
    }
}

/// Writes the skeleton; returns its directory.
pub fn write(args: &NewArgs) -> anyhow::Result<PathBuf> {
    let name = &args.name;
    if !crate::plugin::loader::valid_name(name) || name.starts_with('-') || name.starts_with(|c: char| c.is_ascii_digit()) {
        anyhow::bail!("{name:?} is not a provider name: use a-z, 0-9 and -, starting with a letter (it names the crate and <name>.wasm)");
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!("{} exists and is not empty; choose another --dir", dir.display());
    }
    let (files, kit) = match args.lang {
        Lang::Rust => (RUST, Some(kit_dependency(args.kit.as_deref())?)),
        Lang::Python => (PYTHON, None),
    };
    let vars = Vars::new(name, kit);
    for (path, template, executable) in files {
        let target = dir.join(vars.fill(path));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = if *path == "wit/sandbox.wit" { template.to_string() } else { vars.fill(template) };
        std::fs::write(&target, text)?;
        if *executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(dir)
}

/// The `provider-kit` dependency's table body, a path to the kit.
fn kit_dependency(kit: Option<&Path>) -> anyhow::Result<String> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/kit");
    let dir = kit.map(Path::to_path_buf).unwrap_or(built_from);
    if !dir.join("Cargo.toml").is_file() {
        anyhow::bail!("the guest kit is not at {}: pass --kit DIR with the plugins/kit folder of a sandbox-host checkout", dir.display());
    }
    let dir = dir.canonicalize()?;
    let path = dir.to_str().ok_or_else(|| anyhow::anyhow!("the kit's path {} is not UTF-8", dir.display()))?;
    Ok(format!("path = {}", toml::Value::String(path.to_string())))
}

/// What the templates' `{{…}}` placeholders become.
struct Vars {
    pairs: Vec<(&'static str, String)>,
}

impl Vars {
    fn new(name: &str, kit: Option<String>) -> Vars {
        let type_name: String =
            name.split('-').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect::<Vec<_>>().concat();
        let env = format!("{}_API_KEY", name.replace('-', "_").to_ascii_uppercase());
        let mut pairs = vec![
            ("{{name}}", name.to_string()),
            ("{{lib}}", name.replace('-', "_")),
            ("{{type}}", type_name),
            ("{{env}}", env),
            ("{{componentize_py}}", COMPONENTIZE_PY.to_string()),
        ];
        if let Some(kit) = kit {
            pairs.push(("{{kit}}", kit));
        }
        Vars { pairs }
    }

    fn fill(&self, template: &str) -> String {
        self.pairs.iter().fold(template.to_string(), |text, (key, value)| text.replace(key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, lang: Lang, dir: &Path) -> NewArgs {
        NewArgs { name: name.into(), lang, dir: Some(dir.to_path_buf()), kit: None }
    }

    #[test]
    fn every_placeholder_is_filled_and_the_wit_is_the_hosts() {
        for lang in [Lang::Rust, Lang::Python] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("skeleton");
            write(&args("acme-cloud", lang, &dir)).unwrap();
            assert_eq!(std::fs::read_to_string(dir.join("wit/sandbox.wit")).unwrap(), WIT);
            assert!(std::fs::metadata(dir.join("build.sh")).unwrap().permissions().mode() & 0o111 != 0);
            let policy = std::fs::read_to_string(dir.join("acme-cloud.toml")).unwrap();
            assert!(policy.contains("api-key = \"ACME_CLOUD_API_KEY\""), "{policy}");
            crate::policy::RawPolicy::from_toml(&policy).expect("the example policy is one the host accepts");
            for entry in walk(&dir) {
                let text = std::fs::read_to_string(&entry).unwrap();
                assert!(!text.contains("{{name}}") && !text.contains("{{kit}}") && !text.contains("{{env}}"), "{}", entry.display());
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        write(&args("acme-cloud", Lang::Rust, tmp.path())).unwrap();
        let lib = std::fs::read_to_string(tmp.path().join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct AcmeCloud;") && lib.contains("name: \"acme-cloud\".into()"), "{lib}");
        let build = std::fs::read_to_string(tmp.path().join("build.sh")).unwrap();
        assert!(build.contains("plugin/acme_cloud.wasm"), "the cdylib's file name has underscores: {build}");
        let cargo: toml::Table = std::fs::read_to_string(tmp.path().join("Cargo.toml")).unwrap().parse().unwrap();
        let kit = cargo["dependencies"]["provider-kit"]["path"].as_str().unwrap();
        assert!(Path::new(kit).join("src/lib.rs").is_file(), "{kit}");
    }

    #[test]
    fn a_bad_name_or_a_used_folder_is_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["Acme", "acme_cloud", "", "9lives", "-x"] {
            let e = write(&args(bad, Lang::Python, &tmp.path().join("x"))).unwrap_err();
            assert!(e.to_string().contains("is not a provider name"), "{bad}: {e}");
        }
        assert!(!tmp.path().join("x").exists());
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        let e = write(&args("acme", Lang::Rust, tmp.path())).unwrap_err();
        assert!(e.to_string().contains("is not empty"), "{e}");
        let e = write(&NewArgs { kit: Some(tmp.path().join("nowhere")), ..args("acme", Lang::Rust, &tmp.path().join("y")) }).unwrap_err();
        assert!(e.to_string().contains("--kit DIR"), "{e}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    use std::os::unix::fs::PermissionsExt as _;
}
