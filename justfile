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

# The dev profile, which `test` uses too (Cargo.toml says which dependencies are optimised
# there), and the kit is in the selection because `test` builds it: its wit-bindgen macros
# turn on features of crates the wasmtime macros also use, so without it `test` compiled
# wasmtime, WASI and the host a second time (about 2 min on 2 cores).
# Build the host, the simulators and the kit natively, and the plugins.
build: build-plugins
    @echo "building the host, the simulators and the kit (dev profile; the first time downloads and compiles wasmtime and Cranelift: about 7 min on 2 cores)"
    cargo build -p sandbox-host -p provider-sims -p provider-kit

# A full create → exec → fs → list → stop lifecycle through the host against a local E2B-shaped simulator.
demo: build
    bash scripts/demo.sh

# The official E2B SDK, unmodified, driving Morph, Daytona and E2B (simulators) through `sandbox-host e2b-api`.
e2b-demo: build python-deps
    bash scripts/e2b-demo.sh

# The tests' Python packages (the official E2B SDK, tests/e2b_sdk/requirements.txt) in .venv/.
# Fast when they are already there: only a missing or different version runs pip.
python-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=.venv
    if [ ! -x "$venv/bin/python" ]; then
      rm -rf "$venv"
      python=${PYTHON:-python3}
      if ! "$python" -m venv "$venv"; then
        echo "error: '$python -m venv' failed (Debian/Ubuntu: apt install python3-venv)" >&2
        exit 1
      fi
    fi
    check='import e2b, importlib.metadata as m; assert m.version("e2b") == "2.63.0", m.version("e2b")'
    if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/e2b_sdk/requirements.txt
      "$venv/bin/python" -c "$check"
    fi

# Not the lints: clippy type-checks every dependency again in check mode (wasmtime and
# Cranelift: 2 min on a fresh clone, on 2 cores), which a newcomer's first `test` need not
# wait for; CI runs `lint` after `test`.
# Every test in the workspace, after the formatting check, the build and the fixtures.
test: fmt-check python-deps build build-fixtures
    # The test binaries run side by side, each in its own process (most suites wait on
    # simulators, engines and deadlines, not on the CPU), and 8 tests at a time within
    # each; TEST_JOBS and RUST_TEST_THREADS override them. The guest crates' logic tests
    # run natively among them; the bench has no tests (`lint` still checks it).
    python3 scripts/run-tests.py

# Benchmarks: plugin path vs native vs raw floor (ratios in one run), the decomposition,
# footprints and one host at scale (the fixtures serve the decomposition and the scale rows).
bench: build-plugins build-fixtures
    cargo run --release -p sandbox-bench

# Bounded soak (a few minutes, not part of `test`): 200 000 mixed calls with faults; fails on RSS/fd/task growth.
soak: build-plugins
    cargo run --release -p sandbox-bench -- soak

# Lints as CI sees them (.ci/run runs them after `test`).
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Formatting as CI checks it (rustfmt.toml); `cargo fmt --all` fixes it.
fmt-check:
    cargo fmt --all --check
    cd tests/fixtures && cargo fmt --all --check
