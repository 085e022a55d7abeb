//! The caller contract (`docs/contract.md`), implemented once for all plugins.

pub mod abandoned;
pub mod codes;
pub mod lifecycle;
pub mod schema;
pub mod shapes;
pub mod validate;
