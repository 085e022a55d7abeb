//! Provider-shaped upstream simulators, bound to loopback only.
//!
//! Each simulator keeps real state (sandboxes, files, processes) so a whole lifecycle
//! can run against it, records every request it receives (method, path, query, headers,
//! body) so tests can check exactly what a plugin sent, and takes injected faults
//! ("the next `POST /sandboxes` answers 500") to drive error mappings.

pub mod daytona;
pub mod e2b;
pub mod files;
pub mod morph;
pub mod server;

pub use server::{Fault, Recorded, Sim};
