//! Image allowlist: which templates/images/snapshots a provider may start from.
//! Empty allows every image; otherwise an exact, case-sensitive match is required.
//! Checked before any upstream call (S100).

use crate::contract::codes::{CallError, Code};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageAllowlist(pub Vec<String>);

impl ImageAllowlist {
    pub fn check(&self, plugin: &str, image: &str) -> Result<(), CallError> {
        if self.0.is_empty() || self.0.iter().any(|i| i == image) {
            return Ok(());
        }
        Err(CallError::new(
            Code::ImageNotAllowed,
            format!(
                "image {} is not in provider `{plugin}`'s image allowlist ({}); use one of those or add it to image_allowlist in plugins/{plugin}.toml.",
                crate::policy::plugin_text::bounded_debug(&image, 80),
                self.0.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_allows_all_and_a_list_requires_an_exact_match() {
        assert!(ImageAllowlist::default().check("e2b", "anything").is_ok());
        let list = ImageAllowlist(vec!["base".into()]);
        assert!(list.check("e2b", "base").is_ok());
        let e = list.check("e2b", "Base").unwrap_err();
        assert_eq!(e.code, Code::ImageNotAllowed);
        assert!(e.message().starts_with("[S100] image \"Base\" is not in provider `e2b`'s image allowlist (\"base\")"));
    }
}
