"""fs-read and fs-write (SDK 1.10.2 `readFile`, `writeFiles`):

- read: `POST /v1/sandboxes/{id}/fs/read` `{path}` → the bytes
  (`application/octet-stream`); 404 when the file (or sandbox) does not exist;
- write: `POST /v1/sandboxes/{id}/fs/write`, a gzip-compressed tar archive
  (`content-type: application/gzip`) extracted under the `x-cwd` directory. The SDK
  extracts at `/` with entry names relative to it; relative paths are resolved against
  the sandbox's working directory, `/vercel/sandbox`, as its `normalizePath` does.

Extraction creates missing parent directories whatever `parents` says: that is the
upstream's behaviour and the WIT asks only that `parents` creates them.
"""

import gzip
import io
import posixpath
import tarfile

from wit_world.imports.types import FsWriteRequest

from . import http

# `Sandbox.cwd` of every v1 sandbox; the SDK resolves relative paths against it.
SANDBOX_CWD = "/vercel/sandbox"
EXTRACT_DIR = "/"


def entry_name(path: str) -> str:
    """`path` relative to EXTRACT_DIR, as `normalizePath` makes it."""
    full = posixpath.normpath(path if path.startswith("/") else posixpath.join(SANDBOX_CWD, path))
    return posixpath.relpath(full, EXTRACT_DIR)


def tarball(name: str, data: bytes, mode: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    # mtime 0: the same bytes always make the same archive.
    return gzip.compress(buf.getvalue(), mtime=0)


def write(req: FsWriteRequest) -> None:
    # tar-stream's default mode for a file entry is 0644; so is ours when none is given.
    mode = req.mode if req.mode is not None else 0o644
    body = tarball(entry_name(req.path), bytes(req.bytes), mode)
    headers = [("content-type", "application/gzip"), ("x-cwd", EXTRACT_DIR)]
    http.send("POST", f"/v1/sandboxes/{http.segment(req.sandbox_id)}/fs/write", raw=body, headers=headers).ok()


def read(sandbox_id: str, path: str) -> bytes:
    return http.send("POST", f"/v1/sandboxes/{http.segment(sandbox_id)}/fs/read", body={"path": path}).ok().body
