//! morph-shaped simulator (being written).
