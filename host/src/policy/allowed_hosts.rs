//! The egress allowlist: which upstream authorities a plugin may reach.
//!
//! Accepted forms (anything else fails at load, quoting the bad entry):
//!
//! | entry              | matches                                             |
//! |--------------------|-----------------------------------------------------|
//! | `api.e2b.app`      | that host on the default ports 80 and 443 only       |
//! | `api.e2b.app:8443` | that host on port 8443 only                          |
//! | `*.e2b.app`        | any subdomain of `e2b.app` (not `e2b.app` itself), ports 80/443 |
//! | `*.e2b.app:49983`  | any subdomain, port 49983 only                       |
//! | `127.0.0.1:9000`   | an IP literal (`[::1]:9000` for IPv6) on that port   |
//!
//! An empty list denies everything (fail closed). Matching is on the request's real
//! destination authority, never on a guest-supplied `Host` header, and allocates nothing.

use std::fmt;
use std::str::FromStr;

/// One allowlist entry, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowedHost {
    /// An exact host (lower case), on `port` or the default ports.
    Exact { host: String, port: Option<u16> },
    /// `*.suffix`: `suffix` is stored with its leading dot, e.g. `.e2b.app`.
    Subdomains { suffix: String, port: Option<u16> },
}

impl AllowedHost {
    /// True when `host:port` (host lower-cased by the caller) is allowed by this entry.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let (ok_host, want_port) = match self {
            AllowedHost::Exact { host: h, port } => (h.eq_ignore_ascii_case(host), *port),
            AllowedHost::Subdomains { suffix, port } => {
                (host.len() > suffix.len() && host.as_bytes()[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes()), *port)
            }
        };
        ok_host
            && match want_port {
                Some(p) => p == port,
                None => port == 80 || port == 443,
            }
    }
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid allowed host {entry:?}: {reason}. Accepted: `host`, `host:port`, `*.suffix`, `*.suffix:port`, `127.0.0.1:port`, `[::1]:port`"
)]
pub struct AllowedHostError {
    pub entry: String,
    pub reason: &'static str,
}

impl FromStr for AllowedHost {
    type Err = AllowedHostError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let fail = |reason| AllowedHostError { entry: entry.to_string(), reason };
        let s = entry.trim();
        if s.is_empty() {
            return Err(fail("it is empty"));
        }
        if s.contains("://") {
            return Err(fail("drop the scheme; entries are host[:port]"));
        }
        if s.contains(['/', '?', '#', '@', ' ']) {
            return Err(fail("paths, queries, user info and spaces are not allowed"));
        }
        let (host, port) = split_port(s).map_err(fail)?;
        let host = host.to_ascii_lowercase();
        if let Some(rest) = host.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') || !rest.contains('.') && rest != "localhost" {
                return Err(fail("a wildcard needs a domain of at least two labels after `*.`"));
            }
            return Ok(AllowedHost::Subdomains { suffix: format!(".{rest}"), port });
        }
        if host.contains('*') {
            return Err(fail("`*` is only allowed as a leading `*.` label"));
        }
        if host.is_empty() || host.starts_with('.') || host.ends_with('.') {
            return Err(fail("the host name is malformed"));
        }
        Ok(AllowedHost::Exact { host, port })
    }
}

/// Splits `host[:port]`, with IPv6 literals in brackets.
fn split_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("an IPv6 literal needs a closing `]`")?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("unexpected text after `]`"),
        };
        (&s[..end + 2], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or("the port must be 1..=65535")?),
    };
    Ok((host, port))
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, port) = match self {
            AllowedHost::Exact { host, port } => (host.clone(), port),
            AllowedHost::Subdomains { suffix, port } => (format!("*{suffix}"), port),
        };
        match port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// A parsed allowlist. Empty denies everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<AllowedHost>);

impl AllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowedHostError> {
        entries.iter().map(|e| e.as_ref().parse()).collect::<Result<_, _>>().map(AllowList)
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.matching(host, port).is_some()
    }

    /// The first entry that admits `host:port`.
    pub fn matching(&self, host: &str, port: u16) -> Option<&AllowedHost> {
        self.0.iter().find(|h| h.matches(host, port))
    }

    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|h| h.to_string())
    }
}

/// The allowlist entry that would admit `host:port`, for operator hints.
pub fn entry_for(host: &str, port: u16) -> String {
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    if port == 80 || port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str], host: &str, port: u16) -> bool {
        AllowList::parse(list).unwrap().allows(host, port)
    }

    #[test]
    fn exact_hosts_match_default_ports_unless_a_port_is_given() {
        assert!(allow(&["api.e2b.app"], "api.e2b.app", 443));
        assert!(allow(&["API.e2b.app"], "api.e2b.app", 80));
        assert!(!allow(&["api.e2b.app"], "api.e2b.app", 8443));
        assert!(allow(&["127.0.0.1:9000"], "127.0.0.1", 9000));
        assert!(!allow(&["127.0.0.1:9000"], "127.0.0.1", 9001));
        assert!(allow(&["[::1]:9000"], "[::1]", 9000));
        assert!(!allow(&["api.e2b.app"], "evil.com", 443));
        assert!(!allow(&["api.e2b.app"], "api.e2b.app.evil.com", 443));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(allow(&["*.e2b.app"], "49983-abc.e2b.app", 443));
        assert!(!allow(&["*.e2b.app"], "e2b.app", 443));
        assert!(!allow(&["*.e2b.app"], "xe2b.app", 443));
        assert!(allow(&["*.e2b.app:49983"], "a.e2b.app", 49983));
        assert!(!allow(&["*.e2b.app:49983"], "a.e2b.app", 443));
    }

    #[test]
    fn an_empty_list_denies_everything() {
        assert!(!allow(&[], "api.e2b.app", 443));
    }

    #[test]
    fn footguns_fail_at_parse_time_quoting_the_entry() {
        for bad in ["", "https://api.e2b.app", "api.e2b.app/v1", "*", "*foo.com", "a.*.com", "*.com", "host:0", "host:99999", "[::1"] {
            let err = bad.parse::<AllowedHost>().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for e in ["api.e2b.app", "api.e2b.app:8443", "*.e2b.app", "*.e2b.app:49983", "127.0.0.1:9", "[::1]:9"] {
            assert_eq!(e.parse::<AllowedHost>().unwrap().to_string(), e);
        }
        assert_eq!(entry_for("127.0.0.1", 9000), "127.0.0.1:9000");
        assert_eq!(entry_for("api.e2b.app", 443), "api.e2b.app");
    }
}
