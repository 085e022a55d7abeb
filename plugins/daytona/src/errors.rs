//! Daytona's statuses where the kit's table would misread them (issue 16, row D5, from
//! the v0.190 server and daemon): quota exhaustion is a 400 ("Total CPU/memory/disk/GPU
//! limit exceeded", `sandbox.service.ts`), a suspended organisation is a 403
//! (`organization.service.ts`), and a file the sandbox user may not read is a 403 from
//! the daemon (`toolbox/fs/download_file.go`). Neither 403 is a rejected credential.

use provider_kit::upstream::Reply;
use provider_kit::{Error, ErrorKind};

/// `Ok(reply)` for 2xx, otherwise Daytona's error with the kind its body means.
pub trait Checked: Sized {
    fn checked(self) -> Result<Reply, Error>;
}

impl Checked for Reply {
    fn checked(self) -> Result<Reply, Error> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(classify(&self))
        }
    }
}

/// This answer as an error, its kind read from the body where the status is ambiguous.
pub fn classify(reply: &Reply) -> Error {
    let mut e = reply.error();
    e.kind = refined(e.kind, e.upstream_status, &e.message);
    e
}

fn refined(kind: ErrorKind, status: Option<u16>, message: &str) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    let quota = m.contains("limit exceeded") && ["cpu", "memory", "disk", "gpu"].iter().any(|r| m.contains(r));
    match status {
        Some(400) if quota => ErrorKind::QuotaExhausted,
        Some(403) if m.contains("suspended") => ErrorKind::QuotaExhausted,
        Some(403) if m.contains("permission denied") => ErrorKind::BadInput,
        _ => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daytonas_ambiguous_statuses_are_read_from_the_body() {
        let bad = ErrorKind::BadInput;
        let auth = ErrorKind::AuthInvalid;
        let total = "POST /sandbox answered HTTP 400: Total CPU limit exceeded. Maximum allowed: 4";
        assert_eq!(refined(bad, Some(400), total), ErrorKind::QuotaExhausted);
        assert_eq!(refined(bad, Some(400), "Total disk limit exceeded"), ErrorKind::QuotaExhausted);
        assert_eq!(refined(bad, Some(400), "invalid target"), bad, "other 400s stay caller errors");
        assert_eq!(refined(auth, Some(403), "Organization is suspended: payment required"), ErrorKind::QuotaExhausted);
        assert_eq!(refined(auth, Some(403), "open /root/x: permission denied"), ErrorKind::BadInput);
        assert_eq!(refined(auth, Some(403), "Forbidden"), auth, "a plain 403 is still the credential");
    }
}
