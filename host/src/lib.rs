//! `sandbox-host`: runs sandbox provider plugins (WebAssembly components of the
//! `iii:sandbox/provider-plugin` world) and serves the caller contract for them.
//!
//! Module map:
//! - [`contract`]: S-codes, JSON shapes and validation — pure data, the same for every plugin.
//! - [`calls`]: call semantics above it, one file per leaf family (slots, idempotent stop,
//!   reconciliation, exec output, lifecycle events).
//! - [`policy`]: one module per quota (egress, credentials, images, concurrency, memory, CPU).
//! - [`runtime`]: the wasmtime engine and precompiled cache, Store contents, the WIT edge, one call's run.
//! - [`plugin`]: loading `.wasm` + `.toml` into a checked plugin; the live registry.
//! - [`dispatch`]: [`dispatch::Host::call`], the entry point every front end uses.
//! - [`router`]: `sandbox::<leaf>` → the named (or default) provider, in-process.
//! - [`bridge`]: the host as an iii worker (registration, HTTP triggers, drain).
//! - [`e2b_api`]: the E2B-compatible API (control plane and envd) for the E2B SDKs.
//! - [`metrics`]: per-plugin counters and histograms (Prometheus text, JSON).
//! - [`cli`]: the `sandbox-host` subcommands.
//! - [`allocator`]: the binaries' allocator (mimalloc) and its setting.
//! - [`conformance`]: the contract's checks against one plugin (`sandbox-host conformance`, our suite).
//!
//! One call end to end: `Host::call("e2b", Leaf::Create, json)` → registry lookup (S600) →
//! capability gate (S404) → `validate::parse_request` (S422) → `calls::execute`:
//! image allowlist (S100), slot reservation (S400) → `invoke::run`: fresh Store from the
//! plugin's `InstancePre`, memory limiter, CPU budget, wall-clock deadline → the guest's
//! `create` export, whose HTTP leaves through `policy::egress` (allowlist, credential
//! injection) → outcome classified (S70x, or the plugin's error kind → S-code) →
//! reservation committed or rolled back → the contract's JSON answer.

pub mod allocator;
pub mod bridge;
pub mod calls;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod contract;
pub mod dispatch;
pub mod e2b_api;
pub mod in_flight;
pub mod metrics;
pub mod plugin;
pub mod policy;
pub mod router;
pub mod runtime;

pub use contract::codes::{CallError, Code};
pub use contract::shapes::Leaf;
pub use dispatch::Host;
