//! Running plugins: the shared engine and its precompiled cache, per-call Store state, the WIT edge and one call's run.

pub mod cache;
pub mod engine;
pub mod invoke;
pub mod output;
pub mod store;
pub mod upstream;
pub mod whole_body;
pub mod wit;
