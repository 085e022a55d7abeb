#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py {{componentize_py}} (installed from PyPI into
# ${VENV:-.venv}, made here when missing; nothing system-wide).
set -euo pipefail
cd "$(dirname "$0")"
version={{componentize_py}}
venv=${VENV:-.venv}
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
"$venv/bin/componentize-py" -d wit/sandbox.wit -w provider-plugin componentize -p . app -o {{name}}.wasm.tmp >/dev/null
mv {{name}}.wasm.tmp {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(wc -c < {{name}}.wasm) bytes, componentize-py $version)"
