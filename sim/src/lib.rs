//! Provider-shaped upstream simulators, bound to loopback only.
//!
//! Each simulator keeps real state (sandboxes, files, processes) so a whole lifecycle
//! can run against it, records every request it receives (method, path, query, headers,
//! body) so tests can check exactly what a plugin sent, and takes injected faults
//! ("the next `POST /sandboxes` answers 500") to drive error mappings. Every request and
//! answer is checked against the provider's own API document, vendored under
//! `sim/specs/` ([`spec`]): a request the real API would refuse is refused with the
//! spec's words, an answer the spec does not allow is a simulator bug (answered 500).

pub mod daytona;
pub mod e2b;
pub mod files;
pub mod morph;
pub mod server;
pub mod spec;
pub mod vercel;

pub use server::{Fault, Recorded, Sim};
