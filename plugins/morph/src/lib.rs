//! morph provider plugin (being written).
