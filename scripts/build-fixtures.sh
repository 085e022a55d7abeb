#!/usr/bin/env bash
# Builds the hostile-plugin fixtures (tests/fixtures/<case>/, one guest crate per
# misbehaviour) to tests/fixtures/<case>.wasm. They live in their own workspace so the
# product workspace never builds them by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f tests/fixtures/Cargo.toml ] || { echo "no fixtures workspace"; exit 0; }
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# The product workspace's target dir: the same locked guest dependencies (wit-bindgen, wstd,
# serde) in the same profile are then built once for both workspaces, not twice.
cargo build --quiet --manifest-path tests/fixtures/Cargo.toml --target wasm32-wasip2 --profile plugin --target-dir target
for dir in tests/fixtures/*/; do
  name=$(basename "$dir")
  [ -f "$dir/Cargo.toml" ] || continue
  grep -q cdylib "$dir/Cargo.toml" || continue  # a library the fixtures share (the 0.1.0 kit)
  crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)
  cp "target/wasm32-wasip2/plugin/${crate//-/_}.wasm" "tests/fixtures/$name.wasm"
done
echo "built $(ls tests/fixtures/*.wasm 2>/dev/null | wc -l) fixtures"
