#!/usr/bin/env bash
# Unit tests of the guest crates (pure logic: framing, quoting, mapping), run natively.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-p provider-kit)
for dir in plugins/*/; do
  name=$(basename "$dir")
  [ "$name" = kit ] || [ ! -f "$dir/Cargo.toml" ] || args+=(-p "$name")
done
cargo test --lib "${args[@]}"
