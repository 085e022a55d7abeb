//! How a simulator's server applies its specs: which document serves a request, the
//! exemptions, and the provider-shaped refusal.

use super::{exempt, Op, Spec, Violation};
use crate::server::{Recorded, Reply};

/// What one simulator's traffic is checked against.
pub struct Contract {
    /// The vendored spec serving `rec`, and `rec`'s path within that spec's paths (the
    /// server's base path and any proxy prefix removed); `Err` says why none does.
    pub locate: fn(&Recorded) -> Result<(&'static Spec, String), String>,
    /// The provider's error answer to `rec` with status and message.
    pub reject: fn(&Recorded, u16, &str) -> Reply,
}

/// A request that passed: what its answer is checked against.
pub enum Admitted {
    /// Exempted as a whole route ([`exempt::What::Route`]).
    Exempt,
    Op {
        spec: &'static Spec,
        op: &'static Op,
        path: String,
        method: String,
        /// How messages name the operation (`POST /v2/sandboxes (checked as POST /sandboxes)`).
        label: String,
    },
}

impl Contract {
    /// Checks `rec` against its spec.
    pub fn admit(&self, rec: &Recorded) -> Result<Admitted, Violation> {
        let (spec, path) =
            (self.locate)(rec).map_err(|why| Violation { status: 404, message: format!("{} {}: {why}", rec.method, rec.path) })?;
        if exempt::route(spec.file, &rec.method, &path).is_some() {
            return Ok(Admitted::Exempt);
        }
        let alias = exempt::checked_as(spec.file, &rec.method, &path);
        let found = match alias {
            Some((method, template)) => spec.ops().iter().find(|o| o.method == method && o.template == template).ok_or_else(|| Violation {
                status: 500,
                message: format!("spec::exempt checks {} {path} as {method} {template}, which sim/specs/{} lacks", rec.method, spec.file),
            }),
            None => spec.find(&rec.method, &path),
        };
        let op = match found {
            Ok(op) => op,
            Err(v) if exempt::accepts(spec.file, &rec.method, &path, None, &v.message) => return Ok(Admitted::Exempt),
            Err(v) => return Err(v),
        };
        let (errors, notes) = spec.check_request_with_notes(op, rec, if alias.is_some() { &op.template } else { &path });
        for note in notes {
            let line = format!("{} {}: {note} (the real API ignores it)", rec.method, rec.path);
            eprintln!("provider-sims: SPEC NOTE: {line}");
            crate::server::note(&line);
        }
        let errors: Vec<String> = errors.into_iter().filter(|m| !exempt::accepts(spec.file, &rec.method, &path, None, m)).collect();
        let label = match alias {
            Some(_) => format!("{} {path} (checked as {})", rec.method, op.route()),
            None => op.route(),
        };
        if errors.is_empty() {
            Ok(Admitted::Op { spec, op, path, method: rec.method.clone(), label })
        } else {
            Err(Violation { status: 400, message: format!("{label}: {}", errors.join("; ")) })
        }
    }

    /// Checks the simulator's answer to an admitted request; `Err` is the violation.
    pub fn answer(admitted: &Admitted, status: u16, content_type: Option<&str>, body: &[u8], knob: Option<&str>) -> Result<(), String> {
        let Admitted::Op { spec, op, path, method, label } = admitted else { return Ok(()) };
        if knob.is_some_and(|k| exempt::knob(spec.file, method, path, k)) {
            return Ok(());
        }
        let errors: Vec<String> = spec
            .check_response(op, status, content_type, body)
            .into_iter()
            .filter(|m| !exempt::accepts(spec.file, method, path, Some(status), m))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{label} → {status}: {}", errors.join("; ")))
        }
    }
}
