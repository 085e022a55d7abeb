#!/usr/bin/env bash
# Builds every provider plugin (plugins/<name>/, except the kit) for wasm32-wasip2 and
# places the component at plugins/<name>.wasm (Python ones: build-python-plugins.sh).
# Installs the target when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
names=()
for dir in plugins/*/; do
  name=$(basename "$dir")
  [ "$name" = kit ] && continue
  [ -f "$dir/Cargo.toml" ] || continue
  names+=("$name")
done
args=()
for n in "${names[@]}"; do args+=(-p "$n"); done
cargo build --quiet --target wasm32-wasip2 --profile plugin "${args[@]}"
for n in "${names[@]}"; do
  cp "target/wasm32-wasip2/plugin/$n.wasm" "plugins/$n.wasm"
  echo "built plugins/$n.wasm ($(wc -c < "plugins/$n.wasm") bytes)"
done
# Python providers (plugins/<name>/app.py): componentize-py, cached by input hash.
bash scripts/build-python-plugins.sh
