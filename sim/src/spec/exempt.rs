//! Everything the simulators serve that the vendored specs do not describe, or describe
//! otherwise, in one list: each entry names the spec, the route in that spec's terms, what
//! is not checked and why. Nothing is exempted anywhere else; an entry with
//! `TODO(plugin)` is a plugin sending what the real API would reject, tolerated until the
//! plugin is fixed.

use crate::server::Reply;

pub struct Exemption {
    /// The document under `sim/specs/` (`e2b/openapi.yml`).
    pub spec: &'static str,
    /// `METHOD /path` relative to the spec's paths: `*` is one segment, `**` any rest, a
    /// method `*` any method.
    pub route: &'static str,
    pub what: What,
    pub why: &'static str,
}

pub enum What {
    /// The route is not in the spec: neither its requests nor its answers are checked.
    Route,
    /// The route is not in the spec, but the operation `METHOD /template` that is describes
    /// it: requests and answers are checked as that operation's.
    CheckedAs(&'static str),
    /// Violations whose message contains this text are accepted.
    Rule(&'static str),
    /// Error answers (status ≥ 400) with a status the operation does not document: the
    /// spec is silent on them, so neither status nor body can be checked.
    UndocumentedErrors,
    /// Answers the simulator marks with this knob ([`mark`]): it is modelling a server
    /// older than the spec, on a test's request.
    Knob(&'static str),
}

pub const EXEMPTIONS: &[Exemption] = &[
    // ---- E2B ----------------------------------------------------------------------------
    Exemption {
        spec: "e2b/openapi.yml",
        route: "POST /v2/sandboxes",
        what: What::CheckedAs("POST /sandboxes"),
        why: "SDK 2.63 creates sandboxes here (PyPI e2b 2.63.0 `api/client/api/sandboxes/post_v2_sandboxes.py`, body \
              `NewSandboxV2`; it marks POST /sandboxes 'Use POST /v2/sandboxes instead'); the vendored spec (b8029973) \
              lists only GET /v2/sandboxes. NewSandboxV2 has NewSandbox's properties less `secure` (always secure), and \
              answers 201 `Sandbox`, so it is checked as POST /sandboxes.",
    },
    Exemption {
        spec: "e2b/openapi.yml",
        route: "POST /v2/sandboxes",
        what: What::UndocumentedErrors,
        why: "POST /sandboxes documents 400, 401, 500, 503, 504; SDK 2.63's post_v2_sandboxes.py also reads 403, 404 \
              (unknown template, which the simulator answers), 409, 422 and 429 from the v2 route.",
    },
    Exemption {
        spec: "e2b/envd/envd.yaml",
        route: "POST /process.Process/*",
        what: What::Route,
        why: "envd's process service is Connect RPC over the protobuf service in spec/envd/process/process.proto \
              (vendored beside envd.yaml); no OpenAPI document describes it. e2b/process.rs follows the proto by hand.",
    },
    Exemption {
        spec: "e2b/envd/envd.yaml",
        route: "* /**",
        what: What::Knob("e2b:edge-proxy"),
        why: "E2B's edge proxy answers before envd does: 502 JSON for a sandbox that is not running, 400 text for a \
              request without E2b-Sandbox-Id/-Port. envd.yaml describes envd only.",
    },
    // ---- Morph --------------------------------------------------------------------------
    Exemption {
        spec: "morph/morph-3.1.0.json",
        route: "POST /instance/*/exec/sse",
        what: What::Route,
        why: "Streaming exec is not in the OpenAPI document; the SDKs call it (morph-python-sdk 7cba553d \
              `morphcloud/api.py:3412`, `_exec_streaming`) and morph.rs serves the events they read.",
    },
    Exemption {
        spec: "morph/morph-3.1.0.json",
        route: "* /**",
        what: What::UndocumentedErrors,
        why: "Morph's document lists only 200 and FastAPI's 422 for every operation: its error codes are not \
              specified. The simulator's 401 (bad key), 404 (unknown instance/snapshot/service), 409 (state \
              conflicts) and 500/504 (exec failures) are assumptions, each commented where morph.rs answers it.",
    },
    Exemption {
        spec: "morph/morph-3.1.0.json",
        route: "POST /instance/*/ttl",
        what: What::Rule("body.ttl_seconds must be integer, not null"),
        why: "The SDK removes a TTL with `{\"ttl_seconds\": null}` (morph-python-sdk 7cba553d `morphcloud/api.py:4617`, \
              `set_ttl(None)`: 'Pass None to remove TTL'); the vendored document (2025-07) has UpdateTTLRequest.ttl_seconds \
              a required integer, older than that SDK.",
    },
    // ---- Daytona ------------------------------------------------------------------------
    Exemption {
        spec: "daytona/api.json",
        route: "* /toolbox/*/toolbox/**",
        what: What::Route,
        why: "The API's own toolbox proxy (v0.190.0 `ToolboxController`, deprecated for toolboxProxyUrl) is no longer \
              in api.json; the simulator keeps it for plugins' fallback from servers without toolboxProxyUrl.",
    },
    Exemption {
        spec: "daytona/api.json",
        route: "* /**",
        what: What::UndocumentedErrors,
        why: "api.json documents success answers only (NestJS @ApiResponse); errors are NestJS's HttpException body \
              {statusCode, message, error} as v0.190.0 answers them.",
    },
    Exemption {
        spec: "daytona/api.json",
        route: "GET /sandbox",
        what: What::Knob("daytona:list-shape"),
        why: "ListShape::Array and ::Paged model servers older than api.json's ListSandboxesResponse (a bare array; \
              the deprecated paginated body on /sandbox), to test a plugin's fallbacks.",
    },
    Exemption {
        spec: "daytona/api.json",
        route: "* /sandbox/**",
        what: What::Knob("daytona:no-toolbox-proxy-url"),
        why: "`omit_toolbox_proxy_url` models servers before Sandbox.toolboxProxyUrl (required in api.json), to test \
              a plugin's fallback to GET /sandbox/{id}/toolbox-proxy-url and the API's toolbox routes.",
    },
    Exemption {
        spec: "daytona/toolbox.json",
        route: "POST /files/upload",
        what: What::Route,
        why: "The upload route of daemons before upload-v2 (v0.190.0 `apps/daemon/pkg/toolbox/fs`), gone from \
              toolbox.json; served for plugins' fallback when `no_upload_v2` models such a daemon.",
    },
    Exemption {
        spec: "daytona/toolbox.json",
        route: "POST /files/upload-v2",
        what: What::Knob("daytona:old-daemon"),
        why: "`no_upload_v2` models a daemon before upload-v2, which answers gin's plain-text 404.",
    },
    Exemption {
        spec: "daytona/toolbox.json",
        route: "* /**",
        what: What::UndocumentedErrors,
        why: "toolbox.json lists some error statuses per route, not all that the daemon answers (v0.190.0: 403 for a \
              permission error, 404 for an unknown session on routes that document only 400/500); the body is still \
              the daemon's ErrorResponse.",
    },
];

/// Whether `route` (`METHOD /a/*/b/**`) covers `method` `path`.
fn covers(route: &str, method: &str, path: &str) -> bool {
    let (m, pattern) = route.split_once(' ').unwrap_or(("*", route));
    if m != "*" && !m.eq_ignore_ascii_case(method) {
        return false;
    }
    let want: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let have: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut i = 0;
    for (j, w) in want.iter().enumerate() {
        if *w == "**" {
            return j == want.len() - 1;
        }
        match have.get(i) {
            Some(h) if *w == "*" || w == h => i += 1,
            _ => return false,
        }
    }
    i == have.len()
}

fn matching<'e>(spec: &'e str, method: &'e str, path: &'e str) -> impl Iterator<Item = &'static Exemption> + 'e {
    EXEMPTIONS.iter().filter(move |e| e.spec == spec && covers(e.route, method, path))
}

/// The entry exempting the whole route, if any.
pub fn route(spec: &str, method: &str, path: &str) -> Option<&'static Exemption> {
    matching(spec, method, path).find(|e| matches!(e.what, What::Route))
}

/// The operation (`METHOD /template`) a route missing from the spec is checked as.
pub fn checked_as(spec: &str, method: &str, path: &str) -> Option<(&'static str, &'static str)> {
    matching(spec, method, path).find_map(|e| match e.what {
        What::CheckedAs(op) => op.split_once(' '),
        _ => None,
    })
}

/// Whether an entry accepts this violation of a request or, with `status`, an answer.
pub fn accepts(spec: &str, method: &str, path: &str, status: Option<u16>, message: &str) -> bool {
    matching(spec, method, path).any(|e| match e.what {
        What::Rule(text) => message.contains(text),
        What::UndocumentedErrors => {
            status.is_some_and(|s| s >= 400) && message.starts_with("status ") && message.contains("is not documented")
        }
        _ => false,
    })
}

/// Whether `knob` is listed for this route.
pub fn knob(spec: &str, method: &str, path: &str, knob: &str) -> bool {
    matching(spec, method, path).any(|e| matches!(e.what, What::Knob(k) if k == knob))
}

/// A simulator's answer marked as modelling what the spec does not describe: `knob` must
/// be one of the [`What::Knob`]s above, or the answer is checked (and fails) as usual.
#[derive(Clone, Copy, Debug)]
pub struct OffSpec(pub &'static str);

pub fn mark(mut reply: Reply, knob: &'static str) -> Reply {
    assert!(EXEMPTIONS.iter().any(|e| matches!(e.what, What::Knob(k) if k == knob)), "knob {knob} is not in spec::exempt::EXEMPTIONS");
    reply.extensions_mut().insert(OffSpec(knob));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_segment_with_wildcards() {
        assert!(covers("POST /instance/*/exec/sse", "POST", "/instance/morphvm_1/exec/sse"));
        assert!(!covers("POST /instance/*/exec/sse", "POST", "/instance/morphvm_1/exec"));
        assert!(!covers("POST /instance/*/exec/sse", "GET", "/instance/morphvm_1/exec/sse"));
        assert!(covers("* /toolbox/*/toolbox/**", "GET", "/toolbox/abc/toolbox/files/download"));
        assert!(covers("* /**", "DELETE", "/anything/at/all"));
        assert!(!covers("POST /v2/sandboxes", "POST", "/v2/sandboxes/x"));
    }

    #[test]
    fn every_entry_says_why_and_names_a_vendored_spec() {
        let specs = ["e2b/openapi.yml", "e2b/envd/envd.yaml", "morph/morph-3.1.0.json", "daytona/api.json", "daytona/toolbox.json"];
        for e in EXEMPTIONS {
            assert!(specs.contains(&e.spec), "{}", e.spec);
            assert!(e.why.len() > 40, "{} {}: say why", e.spec, e.route);
            assert!(e.route.split_once(' ').is_some(), "{}: METHOD /path", e.route);
            if let What::CheckedAs(op) = e.what {
                let (method, template) = op.split_once(' ').unwrap();
                let spec = [
                    crate::spec::e2b_api(),
                    crate::spec::e2b_envd(),
                    crate::spec::morph_api(),
                    crate::spec::daytona_api(),
                    crate::spec::daytona_toolbox(),
                ]
                .into_iter()
                .find(|s| s.file == e.spec)
                .unwrap();
                assert!(spec.ops().iter().any(|o| o.method == method && o.template == template), "{op} is not in {}", e.spec);
            }
        }
    }
}
