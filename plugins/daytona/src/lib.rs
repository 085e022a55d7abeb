//! daytona provider plugin (being written).
