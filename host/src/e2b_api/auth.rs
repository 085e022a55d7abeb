//! Who is calling: the `X-API-KEY` of the control plane, matched in constant time, and
//! the per-sandbox `envdAccessToken` the envd half requires.
//!
//! A token is an HMAC of the sandbox id under its owner's key, so it needs no storage,
//! survives a host restart and names its owner: only the key that created a sandbox
//! was ever given its token.

use super::config::{ApiKey, Settings};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One caller, by position in [`Keys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(usize);

impl Caller {
    /// Its position among the configured keys.
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug)]
pub struct Keys {
    keys: Vec<ApiKey>,
    digests: Vec<[u8; 32]>,
    /// No keys configured (loopback, insecure): every request is this one caller.
    anonymous: bool,
}

/// The caller of an insecure API: its secret only signs envd tokens, fresh per process.
const ANONYMOUS: &str = "anonymous";

impl Keys {
    pub fn new(settings: &Settings) -> Keys {
        if settings.insecure_no_auth && settings.keys.is_empty() {
            let key = ApiKey {
                name: ANONYMOUS.into(),
                secret: hex::encode(random_bytes()),
                providers: None,
                templates: None,
                rate_per_minute: None,
                max_sandboxes: None,
            };
            return Keys { digests: vec![digest(&key.secret)], keys: vec![key], anonymous: true };
        }
        let digests = settings.keys.iter().map(|k| digest(&k.secret)).collect();
        Keys { keys: settings.keys.clone(), digests, anonymous: false }
    }

    /// The caller whose key is `presented`. Every key is compared, in constant time, so
    /// the time taken says nothing about how close a guess was or which key it matched.
    pub fn identify(&self, presented: Option<&str>) -> Option<Caller> {
        if self.anonymous {
            return Some(Caller(0));
        }
        let presented = digest(presented?);
        let mut found = None;
        for (i, d) in self.digests.iter().enumerate() {
            if constant_time_eq(d, &presented) {
                found = Some(Caller(i));
            }
        }
        found
    }

    pub fn key(&self, caller: Caller) -> &ApiKey {
        &self.keys[caller.0]
    }

    pub fn all(&self) -> impl Iterator<Item = Caller> + '_ {
        (0..self.keys.len()).map(Caller)
    }

    /// The envd access token of `sandbox_id` for its owner `caller`.
    pub fn envd_token(&self, caller: Caller, sandbox_id: &str) -> String {
        hex::encode(self.token_mac(caller, sandbox_id))
    }

    /// The owner of `sandbox_id` whose token `presented` is, if any.
    pub fn envd_caller(&self, sandbox_id: &str, presented: Option<&str>) -> Option<Caller> {
        let presented = hex::decode(presented?).ok()?;
        let mut found = None;
        for caller in self.all() {
            if constant_time_eq(&self.token_mac(caller, sandbox_id), &presented) {
                found = Some(caller);
            }
        }
        found
    }

    fn token_mac(&self, caller: Caller, sandbox_id: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.keys[caller.0].secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"e2b-api envd token\0");
        mac.update(sandbox_id.as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes() -> [u8; 32] {
    use std::io::Read as _;
    let mut buf = [0u8; 32];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_err() {
        // No urandom: the process's own state, which nobody outside can predict well
        // enough to forge a token for a loopback-only API.
        let seed = format!("{:?}{:?}{}", std::time::SystemTime::now(), std::thread::current().id(), std::process::id());
        buf = Sha256::digest(seed.as_bytes()).into();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str) -> ApiKey {
        ApiKey { name: name.into(), secret: secret.into(), providers: None, templates: None, rate_per_minute: None, max_sandboxes: None }
    }

    fn keys() -> Keys {
        Keys::new(&Settings { keys: vec![key("alice", "ka"), key("bob", "kb")], ..Settings::default() })
    }

    #[test]
    fn a_key_identifies_its_caller_and_nothing_else_does() {
        let k = keys();
        assert_eq!(k.identify(Some("kb")).map(|c| k.key(c).name.clone()), Some("bob".into()));
        assert_eq!(k.identify(Some("k")), None);
        assert_eq!(k.identify(Some("")), None);
        assert_eq!(k.identify(None), None);
    }

    #[test]
    fn an_envd_token_opens_one_sandbox_for_its_owner_only() {
        let k = keys();
        let alice = k.identify(Some("ka")).unwrap();
        let token = k.envd_token(alice, "morph_vm1");
        assert_eq!(k.envd_caller("morph_vm1", Some(&token)), Some(alice));
        assert_eq!(k.envd_caller("morph_vm2", Some(&token)), None, "another sandbox");
        assert_eq!(k.envd_caller("morph_vm1", Some("00")), None);
        assert_eq!(k.envd_caller("morph_vm1", Some("not hex")), None);
        assert_eq!(k.envd_caller("morph_vm1", None), None);
    }

    #[test]
    fn without_keys_every_caller_is_the_anonymous_one() {
        let k = Keys::new(&Settings { insecure_no_auth: true, ..Settings::default() });
        let c = k.identify(None).unwrap();
        assert_eq!(k.key(c).name, "anonymous");
        assert_eq!(k.envd_caller("x", Some(&k.envd_token(c, "x"))), Some(c));
    }
}
