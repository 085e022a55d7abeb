"""Vercel's `Sandbox` JSON (SDK 1.10.2 `api-client/validators.ts`: times in Unix
milliseconds, `timeout` in milliseconds, `status` one of pending, running, stopping,
stopped, failed, aborted, snapshotting) → the world's `sandbox` record."""

import time
from typing import Any, Optional

from wit_world.imports.types import Sandbox, SandboxState

from . import errors

# Statuses of a sandbox that still runs (or is about to). `snapshotting` ends in
# `stopped`, but until then the VM exists and holds its slot.
LIVE = ("pending", "running", "snapshotting")


def rfc3339(ms: int) -> str:
    secs, rem = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rem:03d}Z"


def started_ms(sb: Any) -> int:
    """When the sandbox's clock started: `startedAt`, or `createdAt` while it boots."""
    v = sb.get("startedAt")
    return int(v) if isinstance(v, (int, float)) else int(sb["createdAt"])


def ends_ms(sb: Any) -> Optional[int]:
    """Vercel stops a sandbox `timeout` ms after it started (extend-timeout adds to it)."""
    t = sb.get("timeout")
    return started_ms(sb) + int(t) if isinstance(t, (int, float)) else None


def is_live(sb: Any) -> bool:
    return sb.get("status") in LIVE


def sandbox(sb: Any, what: str) -> Sandbox:
    """The record for `sb`; a body without the fields every answer has is S502."""
    if not isinstance(sb, dict) or not isinstance(sb.get("id"), str) or not isinstance(sb.get("createdAt"), (int, float)):
        raise errors.unavailable(f"{what} answered a sandbox without `id` and `createdAt`")
    image = sb.get("sourceSnapshotId") or sb.get("runtime") or ""
    ends = ends_ms(sb)
    return Sandbox(
        sandbox_id=sb["id"],
        image=image,
        started_at=rfc3339(started_ms(sb)),
        state=SandboxState.RUNNING,
        ends_at=rfc3339(ends) if ends is not None else None,
        # Vercel's v1 sandboxes keep no metadata; the host keeps the caller's `name`.
        metadata=[],
    )


def field(body: Any, key: str, what: str) -> Any:
    """`body[key]` as a JSON object, or S502 naming what was missing."""
    v = body.get(key) if isinstance(body, dict) else None
    if not isinstance(v, dict):
        raise errors.unavailable(f"{what} answered without `{key}`")
    return v
