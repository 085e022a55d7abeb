//! The caller contract (`docs/contract.md`) as pure data: leaves and shapes, input
//! validation, S-codes, schemas. No wasmtime, no plugin: call semantics live in `calls/`.

pub mod codes;
pub mod schema;
pub mod shapes;
pub mod validate;
