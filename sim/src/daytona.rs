//! daytona-shaped simulator (being written).
