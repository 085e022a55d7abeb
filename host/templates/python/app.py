"""{{name}}: a sandbox provider plugin for `sandbox-host` (world
`iii:sandbox/provider-plugin@0.2.0`), built with componentize-py by `./build.sh`.

Each leaf translates one contract call into {{name}}'s HTTP API and back; the host does the
rest (validation, caps, idempotent stop, reconciliation, credentials, egress, budgets: see
wit/README.md). A leaf not written yet raises `unsupported` (S404 to the caller) naming
what is missing, never a made-up success.

Errors are raised as `componentize_py_types.Err(types.Error)`, which componentize-py
returns as the WIT `err`; any other exception traps (the host's S700).

An upstream call (the host injects the credential; the plugin never sees it):

    from wit_world.imports import upstream
    reply = upstream.send(upstream.Request(method="GET", url=api_base() + "/sandboxes",
                                           headers=[], body=b"", timeout_ms=None))
    if not 200 <= reply.status < 300:
        raise fail(kind_for_status(reply.status), f"GET /sandboxes answered HTTP {reply.status}", reply.status)
"""

from typing import List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config
from wit_world.imports.output import ExecOutput
from wit_world.imports.types import (
    CreateRequest,
    CredentialSpec,
    Descriptor,
    Error,
    ErrorKind,
    ExecRequest,
    ExecResult,
    ExposedPort,
    FsWriteRequest,
    Sandbox,
)

VERSION = "0.1.0"
# The upstream's host: the default egress allowlist and where the credential goes.
API_HOST = "api.{{name}}.example"


def api_base() -> str:
    """`api_base` from the policy file (`[config] api-base`), else the real upstream."""
    return (config.get("api-base") or f"https://{API_HOST}").rstrip("/")


def fail(kind: ErrorKind, message: str, status: Optional[int] = None, retry_after_ms: Optional[int] = None) -> Err:
    """An exception carrying the world's error; componentize-py returns it as `err`."""
    return Err(Error(kind=kind, message=message, upstream_status=status, retry_after_ms=retry_after_ms))


def kind_for_status(status: int) -> ErrorKind:
    """The kind an upstream's non-2xx status maps to, as every provider maps it."""
    kinds = {400: ErrorKind.BAD_INPUT, 422: ErrorKind.BAD_INPUT, 401: ErrorKind.AUTH_INVALID, 403: ErrorKind.AUTH_INVALID}
    kinds.update({402: ErrorKind.QUOTA_EXHAUSTED, 404: ErrorKind.NOT_FOUND, 429: ErrorKind.RATE_LIMITED})
    return kinds.get(status, ErrorKind.UNAVAILABLE)


def not_implemented(leaf: str) -> Err:
    return fail(ErrorKind.UNSUPPORTED, f"{{name}}: `{leaf}` is not implemented yet (app.py); its upstream at {api_base()} is not called")


class Provider(exports.Provider):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="{{name}}",
            version=VERSION,
            # Add each optional leaf as you write it (Capability.GET, Capability.FS, …):
            # the host registers exactly these and never calls the others.
            capabilities=[],
            default_egress_hosts=[API_HOST],
            # The operator grants it in {{name}}.toml: [credentials] api-key = "{{env}}".
            credentials=[CredentialSpec(name="api-key", header="authorization", value_prefix="Bearer ", hosts=[API_HOST])],
        )

    def create(self, req: CreateRequest) -> Sandbox:
        raise not_implemented("create")

    def exec(self, req: ExecRequest, output: ExecOutput) -> ExecResult:
        """Write the command's output with `output.write(Channel.STDOUT, data)` as it arrives."""
        raise not_implemented("exec")

    def stop(self, sandbox_id: str) -> None:
        """Upstream 404/409 should be NOT_FOUND: the host counts both as success."""
        raise not_implemented("stop")

    def list_sandboxes(self) -> List[Sandbox]:
        raise not_implemented("list")

    def get(self, sandbox_id: str) -> Sandbox:
        raise not_implemented("get")

    def set_timeout(self, sandbox_id: str, timeout_secs: int) -> None:
        raise not_implemented("set_timeout")

    def pause(self, sandbox_id: str) -> None:
        raise not_implemented("pause")

    def resume(self, sandbox_id: str, timeout_secs: Optional[int]) -> None:
        raise not_implemented("resume")

    def snapshot(self, sandbox_id: str) -> str:
        raise not_implemented("snapshot")

    def branch(self, sandbox_id: str, count: int) -> List[str]:
        raise not_implemented("branch")

    def expose_port(self, sandbox_id: str, port: int) -> ExposedPort:
        raise not_implemented("expose_port")

    def fs_read(self, sandbox_id: str, path: str) -> bytes:
        raise not_implemented("fs::read")

    def fs_write(self, req: FsWriteRequest) -> None:
        raise not_implemented("fs::write")
