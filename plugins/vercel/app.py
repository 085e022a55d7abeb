"""The exported `provider` interface of the Vercel Sandbox plugin (world
`iii:sandbox/provider-plugin@0.2.0`). Each leaf translates; the work is in `vercel/`.

Errors are raised as `componentize_py_types.Err(types.Error)`, which componentize-py
returns as the WIT `err`; any other exception is a bug and traps (the host's S700)."""

import functools
from typing import List, Optional

from wit_world import exports
from wit_world.imports.output import ExecOutput
from wit_world.imports.types import (
    Capability,
    CreateRequest,
    CredentialSpec,
    Descriptor,
    ExecRequest,
    ExecResult,
    ExposedPort,
    FsWriteRequest,
    Sandbox,
)

from vercel import commands, errors, files, http, lifecycle

VERSION = "0.1.0"
API_HOST = "vercel.com"


def leaf(fn):
    """A request that timed out outside exec's wait is the upstream being unavailable."""

    @functools.wraps(fn)
    def wrapped(*args):
        try:
            return fn(*args)
        except http.TimedOut as e:
            raise errors.unavailable(f"no answer in time: {e}")

    return wrapped


class Provider(exports.Provider):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="vercel",
            version=VERSION,
            capabilities=[
                Capability.FS,
                Capability.GET,
                Capability.SET_TIMEOUT,
                Capability.SNAPSHOT,
                Capability.EXPOSE_PORT,
                Capability.SIZING,
                Capability.NETWORK_OFF,
            ],
            default_egress_hosts=[API_HOST],
            # The host sets `Authorization: Bearer <token>` on requests to vercel.com only.
            credentials=[CredentialSpec(name="token", header="authorization", value_prefix="Bearer ", hosts=[API_HOST])],
        )

    @leaf
    def create(self, req: CreateRequest) -> Sandbox:
        return lifecycle.create(req)

    @leaf
    def exec(self, req: ExecRequest, output: ExecOutput) -> ExecResult:
        return commands.run(req, output)

    @leaf
    def stop(self, sandbox_id: str) -> None:
        lifecycle.stop(sandbox_id)

    @leaf
    def list_sandboxes(self) -> List[Sandbox]:
        return lifecycle.list_sandboxes()

    @leaf
    def get(self, sandbox_id: str) -> Sandbox:
        return lifecycle.get(sandbox_id)

    @leaf
    def set_timeout(self, sandbox_id: str, timeout_secs: int) -> None:
        lifecycle.set_timeout(sandbox_id, timeout_secs)

    def pause(self, sandbox_id: str) -> None:
        raise errors.unsupported("pause")

    def resume(self, sandbox_id: str, timeout_secs: Optional[int]) -> None:
        raise errors.unsupported("resume")

    @leaf
    def snapshot(self, sandbox_id: str) -> str:
        return lifecycle.snapshot(sandbox_id)

    def branch(self, sandbox_id: str, count: int) -> List[str]:
        raise errors.unsupported("branch")

    @leaf
    def expose_port(self, sandbox_id: str, port: int) -> ExposedPort:
        return lifecycle.expose_port(sandbox_id, port)

    @leaf
    def fs_read(self, sandbox_id: str, path: str) -> bytes:
        return files.read(sandbox_id, path)

    @leaf
    def fs_write(self, req: FsWriteRequest) -> None:
        files.write(req)
