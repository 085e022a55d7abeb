#!/usr/bin/env bash
# The demo: a full sandbox lifecycle through `sandbox-host call`, with the real e2b.wasm
# plugin, against a local E2B-shaped simulator (no E2B account exists here). The plugin
# is pointed at the simulator by its policy file; the host injects the API key.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug  # the profile `just test` builds too (Cargo.toml optimises its dependencies)
work=$(mktemp -d)
sim_log="$work/sim.log"
trap 'kill $sim_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/e2b-sim" 0 e2b_demo_key > "$sim_log" &
sim_pid=$!
for _ in $(seq 50); do grep -q '^envd ' "$sim_log" 2>/dev/null && break; sleep 0.1; done
api=$(awk '/^api /{print $2}' "$sim_log")
envd=$(awk '/^envd /{print $2}' "$sim_log")
echo "E2B simulator: control plane $api, envd $envd"

mkdir -p "$work/plugins"
cp plugins/e2b.wasm "$work/plugins/"
cat > "$work/plugins/e2b.toml" <<TOML
api_base = "$api"
allowed_hosts = ["${api#http://}", "${envd#http://}"]
max_concurrent_sandboxes = 5
image_allowlist = ["base", "code-interpreter-v1"]
[credentials]
api-key = "E2B_API_KEY"
[config]
envd-url = "$envd"
TOML
export E2B_API_KEY=e2b_demo_key SANDBOX_PLUGINS_DIR="$work/plugins"
host="$bin/sandbox-host"

step() { echo; echo "\$ sandbox-host call $*"; "$host" call "$@"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

echo; echo "\$ sandbox-host plugins"; "$host" plugins
echo; echo "\$ sandbox-host check plugins/e2b.wasm"; "$host" check "$work/plugins/e2b.wasm"

step e2b create '{"image":"base","idle_timeout_secs":600,"env":{"GREETING":"hello from the sandbox"},"metadata":{"demo":"yes"}}' | tee "$work/created.json"
id=$(sed -n '/^{/,$p' "$work/created.json" | field sandbox_id)

step e2b get "{\"sandbox_id\":\"$id\"}"
step e2b exec "{\"sandbox_id\":\"$id\",\"cmd\":\"sh\",\"args\":[\"-c\",\"echo \$GREETING; uname -s; exit 7\"]}"
step e2b exec "{\"sandbox_id\":\"$id\",\"cmd\":\"pwd\",\"cwd\":\"/tmp\"}"
step e2b exec "{\"sandbox_id\":\"$id\",\"cmd\":\"sleep\",\"args\":[\"10\"],\"timeout_ms\":500}"
step e2b fs::write "{\"sandbox_id\":\"$id\",\"path\":\"notes/hello.txt\",\"bytes_base64\":\"$(printf 'written through wasm\n' | base64)\",\"mode\":384}"
step e2b fs::read "{\"sandbox_id\":\"$id\",\"path\":\"notes/hello.txt\"}"
step e2b exec "{\"sandbox_id\":\"$id\",\"cmd\":\"ls\",\"args\":[\"-l\",\"notes\"]}"
echo; echo "# streamed: each line is printed as the command produces it, then the answer"
step e2b exec "{\"sandbox_id\":\"$id\",\"argv\":[\"sh\",\"-c\",\"for i in 1 2 3; do echo line \$i; sleep 0.3; done\"]}" --stream
step e2b expose_port "{\"sandbox_id\":\"$id\",\"port\":8080}"
step e2b set_timeout "{\"sandbox_id\":\"$id\",\"timeout_secs\":1200}"
step e2b pause "{\"sandbox_id\":\"$id\"}"
step e2b resume "{\"sandbox_id\":\"$id\"}"
step e2b list
echo; echo "# a caller error, and an image outside the allowlist (exit status = code class):"
step e2b exec '{"sandbox_id":"x","cmd":"ls","args":["-l",5]}' || echo "(exit $?)"
step e2b create '{"image":"ubuntu-latest"}' || echo "(exit $?)"
step e2b stop "{\"sandbox_id\":\"$id\"}"
step e2b stop "{\"sandbox_id\":\"$id\"}"
step e2b list
echo; echo "demo finished: create, get, exec (exit code, cwd, timeout, streamed), fs write/read, expose_port, set_timeout, pause/resume, list, stop (twice) all went through the wasm plugin."
