"""An ordinary E2B SDK program: nothing in it knows which provider runs the sandbox.

Point it at sandbox-host's E2B-compatible API with two variables (plus the API key):
    E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3000 \
    E2B_API_KEY=... TEMPLATE=morph/snapshot_base python examples/e2b_sdk_any_provider.py
TEMPLATE is `<provider>/<image>` or a name from the host config's [e2b_api.templates].
"""

import os

from e2b import CommandExitException, Sandbox

template = os.environ.get("TEMPLATE", "base")
sbx = Sandbox.create(template, timeout=120, metadata={"example": "any-provider"}, envs={"GREETING": "hello"})
try:
    print(f"sandbox {sbx.sandbox_id} from template {template}")
    result = sbx.commands.run("echo $GREETING from $(uname -s)")
    print("stdout:", result.stdout.strip())
    sbx.commands.run("for i in 1 2 3; do echo tick $i; sleep 0.2; done", on_stdout=lambda chunk: print("  streamed:", chunk.strip()))
    try:
        sbx.commands.run("echo failing >&2; exit 3")
    except CommandExitException as e:
        print(f"exit code {e.exit_code}, stderr {e.stderr.strip()!r}")
    sbx.files.write("example/notes.txt", "written through the E2B SDK\n")
    print("read back:", sbx.files.read("example/notes.txt").strip())
    print("listed:", [e.name for e in sbx.files.list("example")])
    sbx.set_timeout(300)
    info = sbx.get_info()
    print(f"state {info.state.value}, ends {info.end_at:%H:%M:%S}, metadata {info.metadata}")
    sbx.pause()
    print("paused:", sbx.get_info().state.value)
    resumed = Sandbox.connect(sbx.sandbox_id)
    print("resumed:", resumed.commands.run("echo back").stdout.strip())
finally:
    print("killed:", sbx.kill())
