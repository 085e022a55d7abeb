#!/usr/bin/env bash
# Builds {{name}}.wasm, a wasm32-wasip2 component of iii:sandbox/provider-plugin@0.2.0.
# Extra arguments go to cargo (e.g. `./build.sh --offline`); CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --target wasm32-wasip2 --profile plugin "$@"
target=${CARGO_TARGET_DIR:-target}
cp "$target/wasm32-wasip2/plugin/{{lib}}.wasm" {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(wc -c < {{name}}.wasm) bytes)"
