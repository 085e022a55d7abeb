#!/usr/bin/env bash
# Builds every Python provider plugin (a folder plugins/<name>/ with an app.py and no
# Cargo.toml) into a component with componentize-py against wit/sandbox.wit, and places
# it at plugins/<name>.wasm.
#
# componentize-py (pinned below) is installed from PyPI into the project's .venv/ (made
# here if missing, as `just python-deps` makes it); nothing is installed system-wide.
# A component is rebuilt only when its inputs change: the hash of its .py files, the WIT,
# the componentize-py version and this script is kept beside the cached build in
# target/python-plugins/, so a second run only compares hashes (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.25.1
venv=.venv
cache=target/python-plugins
dirs=()
for dir in plugins/*/; do
  [ -f "$dir/app.py" ] && [ ! -f "$dir/Cargo.toml" ] && dirs+=("${dir%/}")
done
[ ${#dirs[@]} -eq 0 ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  python=${PYTHON:-python3}
  if ! "$python" -m venv "$venv"; then
    echo "error: '$python -m venv' failed (Debian/Ubuntu: apt install python3-venv)" >&2
    exit 1
  fi
fi
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $version" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi

mkdir -p "$cache"
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  stamp=$( { echo "componentize-py $version"; sha256sum "$0" wit/sandbox.wit;
             find "$dir" -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)
  built="$cache/$name.wasm"
  if [ ! -f "$built" ] || [ "$(cat "$cache/$name.stamp" 2>/dev/null)" != "$stamp" ]; then
    # -d the WIT file, not wit/: the frozen since_v*/ copies beside it are other packages.
    "$venv/bin/componentize-py" -d wit/sandbox.wit -w provider-plugin componentize -p "$dir" app -o "$built.tmp" >/dev/null
    mv "$built.tmp" "$built"
    echo "$stamp" > "$cache/$name.stamp"
  fi
  if ! cmp -s "$built" "plugins/$name.wasm"; then
    cp "$built" "plugins/.$name.wasm.tmp" && mv "plugins/.$name.wasm.tmp" "plugins/$name.wasm"
  fi
  echo "built plugins/$name.wasm ($(wc -c < "plugins/$name.wasm") bytes, componentize-py $version)"
done
