"""create, get, list, stop, set-timeout, snapshot and expose-port over Vercel's v1
sandbox routes (SDK 1.10.2 `createSandbox`, `getSandbox`, `listSandboxes`,
`stopSandbox`, `extendTimeout`, `createSnapshot`; answers `{sandbox, routes?}`)."""

import math
import time
from typing import List, Optional

from wit_world.imports.types import CreateRequest, ExposedPort, Sandbox

from . import errors, http, shapes

# Vercel gives each vCPU 2048 MB of memory; a size is asked for in vCPUs only.
MB_PER_VCPU = 2048
# The longest a Vercel sandbox can run (Pro and Enterprise plans: 5 hours). A listed
# sandbox created before that cannot be running, so older pages are not read.
MAX_LIFETIME_MS = 5 * 3600 * 1000
PAGE_LIMIT = 100


def sandbox_path(sandbox_id: str) -> str:
    return f"/v1/sandboxes/{http.segment(sandbox_id)}"


def now_ms() -> int:
    return int(time.time() * 1000)


def create(req: CreateRequest) -> Sandbox:
    body: dict = {"timeout": req.idle_timeout_secs * 1000}
    # A snapshot id (`snap_…`, as `createSnapshot` answers them) starts from that
    # snapshot; anything else names a runtime (`node22`, `node24`, `python3.13`, …), which
    # Vercel itself checks (400 → S422), so a new runtime needs no plugin release.
    if req.image.startswith("snap_"):
        body["source"] = {"type": "snapshot", "snapshotId": req.image}
    else:
        body["runtime"] = req.image
    if req.cpus is not None or req.memory_mb is not None:
        vcpus = max(req.cpus or 0, math.ceil((req.memory_mb or 0) / MB_PER_VCPU), 1)
        body["resources"] = {"vcpus": vcpus}
    if not req.network:
        body["networkPolicy"] = {"mode": "deny-all"}
    if req.env:
        body["env"] = dict(req.env)
    ports = configured_ports()
    if ports:
        body["ports"] = ports
    project = http.setting("project-id")
    if project:
        body["projectId"] = project
    reply = http.send("POST", "/v1/sandboxes", body=body)
    if reply.status == 404 and "source" in body:
        # Not the sandbox (there is none yet): the image named a snapshot that is gone.
        raise errors.bad_input(f"snapshot {req.image} does not exist: {reply.error().value.message}")
    reply.ok()
    return shapes.sandbox(shapes.field(reply.json(), "sandbox", reply.what), reply.what)


def configured_ports() -> List[int]:
    """`[config] ports = "3000,8080"`: the ports Vercel publishes (at most 4, at create)."""
    text = http.setting("ports") or ""
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise errors.bad_input(f"[config] ports must be a comma-separated list of port numbers, not {text!r}")


def lookup(sandbox_id: str):
    """`GET /v1/sandboxes/{id}` → (sandbox JSON, routes); a stopped one is not found."""
    reply = http.send("GET", sandbox_path(sandbox_id)).ok()
    body = reply.json()
    sb = shapes.field(body, "sandbox", reply.what)
    if not shapes.is_live(sb):
        raise errors.not_found(f"{reply.what}: sandbox {sandbox_id} is {sb.get('status')}")
    routes = body.get("routes") if isinstance(body.get("routes"), list) else []
    return sb, routes


def get(sandbox_id: str) -> Sandbox:
    sb, _ = lookup(sandbox_id)
    return shapes.sandbox(sb, "GET /v1/sandboxes/{id}")


def list_sandboxes() -> List[Sandbox]:
    """Every live sandbox, newest first, following `pagination.next` (the `until` of the
    next page) until a page reaches back past the longest possible lifetime."""
    found: List[Sandbox] = []
    until: Optional[int] = None
    horizon = now_ms() - MAX_LIFETIME_MS
    while True:
        query = {"project": http.setting("project-id"), "limit": PAGE_LIMIT, "until": until}
        reply = http.send("GET", "/v1/sandboxes", query=query).ok()
        body = reply.json()
        rows = body.get("sandboxes") if isinstance(body, dict) else None
        page = body.get("pagination") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not isinstance(page, dict):
            raise errors.unavailable(f"{reply.what} answered without `sandboxes` and `pagination`")
        found.extend(shapes.sandbox(sb, reply.what) for sb in rows if isinstance(sb, dict) and shapes.is_live(sb))
        nxt = page.get("next")
        oldest = min((sb.get("createdAt", 0) for sb in rows if isinstance(sb, dict)), default=0)
        if not isinstance(nxt, int) or not rows or oldest < horizon:
            return found
        until = nxt


def stop(sandbox_id: str) -> None:
    reply = http.send("POST", f"{sandbox_path(sandbox_id)}/stop")
    if reply.status == 409:
        # The WIT asks for 404 and 409 as not-found; the host counts both as success.
        raise errors.not_found(f"{reply.what} answered HTTP 409")
    reply.ok()


def set_timeout(sandbox_id: str, timeout_secs: int) -> None:
    """Vercel can only lengthen a sandbox (`extend-timeout` adds `duration` ms to its
    timeout), so the extension is the difference between the end asked for and the
    current one; an end earlier than the current one cannot be had (S422)."""
    sb, _ = lookup(sandbox_id)
    current = shapes.ends_ms(sb)
    wanted = now_ms() + timeout_secs * 1000
    if current is None:
        raise errors.unavailable(f"GET /v1/sandboxes/{sandbox_id} answered a sandbox without `timeout`")
    if wanted <= current:
        raise errors.bad_input(
            f"Vercel can only extend a sandbox's lifetime: {sandbox_id} already runs until {shapes.rfc3339(current)}, "
            f"past the {timeout_secs} s asked; ask for a longer timeout or stop it"
        )
    http.send("POST", f"{sandbox_path(sandbox_id)}/extend-timeout", body={"duration": wanted - current}).ok()


def snapshot(sandbox_id: str) -> str:
    """Vercel stops the sandbox once its snapshot is taken (`createSnapshot`'s answer has
    the stopped sandbox); its slot is released by the next list."""
    reply = http.send("POST", f"{sandbox_path(sandbox_id)}/snapshot").ok()
    snap = shapes.field(reply.json(), "snapshot", reply.what)
    if not isinstance(snap.get("id"), str) or not snap["id"]:
        raise errors.unavailable(f"{reply.what} answered a snapshot without an `id`")
    return snap["id"]


def expose_port(sandbox_id: str, port: int) -> ExposedPort:
    """The route Vercel made for `port` at create (`routes: [{url, subdomain, port}]`).
    Public: Vercel's sandbox URLs need no token."""
    _, routes = lookup(sandbox_id)
    for r in routes:
        if isinstance(r, dict) and r.get("port") == port and isinstance(r.get("url"), str):
            return ExposedPort(url=r["url"], headers=[])
    published = sorted(r.get("port") for r in routes if isinstance(r, dict) and isinstance(r.get("port"), int))
    raise errors.bad_input(
        f"port {port} of {sandbox_id} is not published: Vercel publishes only the ports listed at create "
        f"(this sandbox: {published or 'none'}); add it to `[config] ports` in plugins/vercel.toml"
    )
