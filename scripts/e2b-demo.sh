#!/usr/bin/env bash
# The E2B SDK, unmodified, driving every provider through `sandbox-host e2b-api`: the
# Morph, Daytona and E2B plugins each against their local simulator, one host, one API
# key, and examples/e2b_sdk_any_provider.py run once per provider with only TEMPLATE
# changed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SANDBOX_BIN_DIR:-target/debug}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

start_sim() { # name key → the sim's stdout in $work/<name>.log
  "$bin/$1-sim" 0 "$2" > "$work/$1.log" &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$work/$1.log" ] && [ "$(wc -l < "$work/$1.log")" -ge 2 ] && break; sleep 0.1; done
}
line() { awk -v k="$2" '$1==k {print $2}' "$work/$1.log"; }
hostport() { local u=${1#http://}; echo "${u%%/*}"; }

start_sim e2b e2b_key
start_sim morph morph_key
start_sim daytona daytona_key
mkdir -p "$work/plugins"
cp plugins/e2b.wasm plugins/morph.wasm plugins/daytona.wasm "$work/plugins/"
e2b_api=$(line e2b api) e2b_envd=$(line e2b envd)
cat > "$work/plugins/e2b.toml" <<TOML
api_base = "$e2b_api"
allowed_hosts = ["$(hostport "$e2b_api")", "$(hostport "$e2b_envd")"]
[credentials]
api-key = "E2B_API_KEY"
[config]
envd-url = "$e2b_envd"
TOML
morph_api=$(line morph api)
printf 'api_base = "%s"\nallowed_hosts = ["%s"]\n[credentials]\napi-key = "MORPH_API_KEY"\n' \
  "$morph_api" "$(hostport "$morph_api")" > "$work/plugins/morph.toml"
daytona_api=$(line daytona api)
printf 'api_base = "%s"\nallowed_hosts = ["%s"]\n[credentials]\napi-key = "DAYTONA_API_KEY"\n' \
  "$daytona_api" "$(hostport "$daytona_api")" > "$work/plugins/daytona.toml"

cat > "$work/sandbox-host.toml" <<TOML
plugins_dir = "$work/plugins"
[e2b_api]
listen = "127.0.0.1:0"
[e2b_api.templates.base]
provider = "morph"
image = "snapshot_base"
[[e2b_api.keys]]
name = "demo"
env = "DEMO_E2B_KEY"
TOML
export E2B_API_KEY=e2b_key MORPH_API_KEY=morph_key DAYTONA_API_KEY=daytona_key DEMO_E2B_KEY=e2b_demo_caller_key
"$bin/sandbox-host" --config "$work/sandbox-host.toml" --no-cache e2b-api 2> "$work/host.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^e2b api on ' "$work/host.log" && break; sleep 0.1; done
url=$(awk '/^e2b api on /{print $4}' "$work/host.log")
[ -n "$url" ] || { cat "$work/host.log"; exit 1; }
echo "sandbox-host e2b-api on $url"

for template in morph/snapshot_base daytona/daytona-small e2b/base base; do
  echo; echo "\$ TEMPLATE=$template E2B_API_URL=$url E2B_SANDBOX_URL=$url python examples/e2b_sdk_any_provider.py"
  E2B_API_KEY=$DEMO_E2B_KEY E2B_API_URL=$url E2B_SANDBOX_URL=$url TEMPLATE=$template \
    .venv/bin/python examples/e2b_sdk_any_provider.py
done
