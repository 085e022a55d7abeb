//! Names the API hands out and takes back: a sandbox id carries its provider
//! (`<provider>_<upstream id>`; provider names have no `_`), and a template id names a
//! provider and image (`<provider>/<image>`, a `[e2b_api.templates]` entry, or a bare
//! image on `default_provider`).

use super::config::Settings;
use super::errors::ApiError;

/// A sandbox as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRef {
    pub provider: String,
    pub upstream_id: String,
}

impl SandboxRef {
    pub fn new(provider: &str, upstream_id: &str) -> SandboxRef {
        SandboxRef { provider: provider.into(), upstream_id: upstream_id.into() }
    }

    /// Parses an API sandbox id; `None` for anything this API did not hand out.
    pub fn parse(id: &str) -> Option<SandboxRef> {
        let (provider, upstream) = id.split_once('_')?;
        let provider_ok = !provider.is_empty() && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (provider_ok && !upstream.is_empty()).then(|| SandboxRef::new(provider, upstream))
    }

    pub fn id(&self) -> String {
        format!("{}_{}", self.provider, self.upstream_id)
    }
}

/// Where a template id leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As the caller wrote it; answers report this.
    pub id: String,
    pub provider: String,
    pub image: String,
}

/// Resolves a template id: `<provider>/<image>` first, then the templates table, then
/// the default provider with the name as its image.
pub fn resolve_template(settings: &Settings, id: &str) -> Result<Template, ApiError> {
    let (provider, image) = if let Some((provider, image)) = id.split_once('/') {
        (provider.to_string(), image.to_string())
    } else if let Some(t) = settings.templates.get(id) {
        (t.provider.clone(), t.image.clone())
    } else if let Some(p) = &settings.default_provider {
        (p.clone(), id.to_string())
    } else {
        return Err(ApiError::new(
            404,
            format!(
                "template {id:?} was not found: use <provider>/<image>, a name from [e2b_api.templates] ({}), \
                 or set [e2b_api] default_provider",
                if settings.templates.is_empty() {
                    "none".to_string()
                } else {
                    settings.templates.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        ));
    };
    if provider.is_empty() || image.is_empty() {
        return Err(ApiError::bad_request(format!("template {id:?} must name a provider and an image: <provider>/<image>")));
    }
    Ok(Template { id: id.to_string(), provider, image })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2b_api::config::TemplateTarget;

    #[test]
    fn a_sandbox_id_carries_its_provider_and_the_upstream_id_whole() {
        let r = SandboxRef::parse("morph_morphvm_a1b2").unwrap();
        assert_eq!((r.provider.as_str(), r.upstream_id.as_str()), ("morph", "morphvm_a1b2"));
        assert_eq!(r.id(), "morph_morphvm_a1b2");
        assert_eq!(SandboxRef::parse("cpu-spin_x").unwrap().provider, "cpu-spin");
        for bad in ["nounderscore", "_x", "morph_", "Morph_x", "a/b_c"] {
            assert_eq!(SandboxRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn templates_resolve_by_prefix_then_table_then_default_provider() {
        let mut s = Settings::default();
        s.templates.insert("base".into(), TemplateTarget { provider: "morph".into(), image: "snapshot_base".into() });
        let t = resolve_template(&s, "daytona/library/python:3.12").unwrap();
        assert_eq!((t.provider.as_str(), t.image.as_str()), ("daytona", "library/python:3.12"));
        let t = resolve_template(&s, "base").unwrap();
        assert_eq!((t.id.as_str(), t.provider.as_str(), t.image.as_str()), ("base", "morph", "snapshot_base"));
        assert_eq!(resolve_template(&s, "other").unwrap_err().status, 404);
        s.default_provider = Some("e2b".into());
        assert_eq!(resolve_template(&s, "other").unwrap().provider, "e2b");
        assert_eq!(resolve_template(&s, "/x").unwrap_err().status, 400);
    }
}
