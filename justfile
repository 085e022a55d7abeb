# Everyday tasks. `bash scripts/just <recipe>` runs them with a project-local `just`
# (or use any `just` on your PATH).

set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes.
default:
    @just --list

# Install what the build needs (the wasm32-wasip2 target).
setup:
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Build every provider plugin to plugins/<name>.wasm.
build-plugins: setup
    bash scripts/build-plugins.sh

# Build the hostile-plugin fixtures to tests/fixtures/<case>.wasm.
build-fixtures: setup
    bash scripts/build-fixtures.sh

# Build the host (release) and the plugins.
build: build-plugins
    cargo build --release -p sandbox-host -p provider-sims

# A full create → exec → fs → list → stop lifecycle through the host against a local E2B-shaped simulator.
demo: build
    bash scripts/demo.sh

# Everything CI runs: formatting and lints, plugins and fixtures built, then every test in the workspace.
test: fmt-check build-plugins build-fixtures lint
    cargo build -p sandbox-host
    cargo test --workspace --exclude e2b --exclude morph --exclude daytona
    # Guest crates: their logic tests, natively (their cdylib only links for wasm32-wasip2).
    cargo test --lib -p e2b -p morph -p daytona

# Benchmarks: plugin path vs native vs raw floor (ratios in one run).
bench: build-plugins
    cargo run --release -p sandbox-bench

# Lints as CI would see them.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Formatting as CI checks it (rustfmt.toml); `cargo fmt --all` fixes it.
fmt-check:
    cargo fmt --all --check
    cd tests/fixtures && cargo fmt --all --check
