//! Conformance: every provider plugin, built to wasm, runs through the real host
//! against its own provider-shaped mock upstream, and must pass the same case list
//! (`cases.rs`). A provider joins with its `Upstream` impl and one `conformance_suite!`
//! line; provider-specific behaviour is tested in that provider's own module.

#[macro_use]
mod cases;
mod daytona;
mod e2b;
mod host_wide;
mod live_cases;
mod morph;
mod vercel;

conformance_suite!(e2b_conformance, crate::e2b::E2bUpstream);
// The same cases over the frozen build of the e2b plugin for world 0.1.0: old plugins
// keep loading and keep their contract (tests/fixtures/compat-e2b-v0-1-0).
conformance_suite!(e2b_v0_1_conformance, crate::e2b::E2bV01Upstream);
conformance_suite!(morph_conformance, crate::morph::MorphUpstream);
conformance_suite!(daytona_conformance, crate::daytona::DaytonaUpstream);
// The Python plugin (componentize-py), through the same host policy as the Rust ones.
conformance_suite!(vercel_conformance, crate::vercel::VercelUpstream);
