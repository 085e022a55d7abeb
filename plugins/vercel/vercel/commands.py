"""exec: Vercel runs a command detached and reports on it by id (SDK 1.10.2
`runCommand`, `getCommand`, `getLogs`, `killCommand`):

1. `POST /v1/sandboxes/{id}/cmd` `{command, args, cwd?, env}` → `{command: {id, …}}`;
2. `GET /v1/sandboxes/{id}/cmd/{cmdId}?wait=true` blocks until it exits → `exitCode`;
   its first byte *is* the end, so the request's `timeout_ms` is the exec's deadline;
3. `GET /v1/sandboxes/{id}/cmd/{cmdId}/logs` → NDJSON `{stream: stdout|stderr, data}`
   lines (or `{stream: "error", data: {code, message}}`), ending with the command.

Past the deadline the command is killed (`POST /v1/sandboxes/{id}/{cmdId}/kill`
`{signal: 9}`, the route as Vercel documents it, without `/cmd/`) and what it printed
until then is still reported. Output reaches the host when the command has ended, not
while it runs: the whole-body import does not stream (see `http`).
"""

import json
from typing import Any

from wit_world.imports.output import Channel, ExecOutput
from wit_world.imports.types import ExecRequest, ExecResult

from . import errors, http
from .shapes import field

SIGKILL = 9


def run(req: ExecRequest, output: ExecOutput) -> ExecResult:
    base = f"/v1/sandboxes/{http.segment(req.sandbox_id)}"
    body: dict = {"command": req.cmd, "args": list(req.args), "env": dict(req.env)}
    if req.cwd:
        body["cwd"] = req.cwd
    started = http.send("POST", f"{base}/cmd", body=body).ok()
    cmd_id = field(started.json(), "command", started.what).get("id")
    if not isinstance(cmd_id, str) or not cmd_id:
        raise errors.unavailable(f"{started.what} answered a command without an `id`")
    cmd = f"{base}/cmd/{http.segment(cmd_id)}"
    timed_out, exit_code = False, -1
    try:
        done = http.send("GET", cmd, query={"wait": "true"}, timeout_ms=req.timeout_ms).ok()
        code = field(done.json(), "command", done.what).get("exitCode")
        if not isinstance(code, int):
            raise errors.unavailable(f"{done.what} answered a finished command without an integer `exitCode`")
        exit_code = code
    except http.TimedOut:
        timed_out = True
        kill = http.send("POST", f"{base}/{http.segment(cmd_id)}/kill", body={"signal": SIGKILL})
        # 400/404: it ended on its own between the deadline and the kill; still timed out.
        if kill.status >= 300 and kill.status not in (400, 404):
            raise kill.error()
    logs = http.send("GET", f"{cmd}/logs").ok()
    copy_logs(logs, output)
    return ExecResult(exit_code=exit_code, timed_out=timed_out)


def copy_logs(logs: http.Reply, output: ExecOutput) -> None:
    """Writes each NDJSON log line into its stream, until the host says a stream is cut."""
    open_streams = {Channel.STDOUT: True, Channel.STDERR: True}
    for line in logs.body.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry: Any = json.loads(line)
        except ValueError:
            raise errors.unavailable(f"{logs.what} answered a log line that is not JSON: {http.snippet(line)}")
        stream = entry.get("stream") if isinstance(entry, dict) else None
        if stream == "error":
            data = entry.get("data") or {}
            raise errors.unavailable(f"{logs.what} ended with an error: {data.get('message', '')} ({data.get('code', '')})")
        channel = {"stdout": Channel.STDOUT, "stderr": Channel.STDERR}.get(stream)
        data = entry.get("data")
        if channel is None or not isinstance(data, str):
            raise errors.unavailable(f"{logs.what} answered a log line of unknown shape: {http.snippet(line)}")
        if open_streams[channel]:
            open_streams[channel] = output.write(channel, data.encode())
