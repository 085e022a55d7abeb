"""Requests to Vercel's API through the host's whole-body `upstream` import.

The host sends each request through the plugin's egress policy (allowlist, the
credential it injects as `Authorization: Bearer …`, timeouts, body cap) and answers the
whole response at once: the token never enters the plugin, and one host call replaces
the dozens of `wasi:http` resource calls a streamed exchange takes, which matters more
in CPython than in Rust. Nothing here streams; exec reads a finished command's logs.
"""

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

from componentize_py_types import Err
from wit_world.imports import config, upstream
from wit_world.imports.types import ErrorKind

from . import errors

# The SDK's default (`@vercel/sandbox` APIClient: `baseUrl ?? "https://vercel.com/api"`).
DEFAULT_API_BASE = "https://vercel.com/api"


def setting(key: str) -> Optional[str]:
    """A non-empty `[config]` value of the plugin's policy file."""
    value = config.get(key)
    return value if value else None


def api_base() -> str:
    return (setting("api-base") or DEFAULT_API_BASE).rstrip("/")


def segment(s: str) -> str:
    """A path segment, percent-encoded (ids come from callers)."""
    return quote(s, safe="")


class Reply:
    def __init__(self, what: str, status: int, headers: List[Tuple[str, str]], body: bytes):
        self.what, self.status, self.headers, self.body = what, status, headers, body

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def ok(self) -> "Reply":
        """This reply when 2xx, else raises its error."""
        if 200 <= self.status < 300:
            return self
        raise self.error()

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise errors.unavailable(f"{self.what} answered a body that is not JSON ({e}): {snippet(self.body)}")

    def error(self) -> Err:
        detail = error_detail(self.body)
        message = f"{self.what} answered HTTP {self.status}" + (f": {detail}" if detail else "")
        return errors.fail(errors.kind_for_status(self.status), message, self.status, retry_after_ms(self.header("retry-after")))


def send(
    method: str,
    path: str,
    query: Optional[Dict[str, Any]] = None,
    body: Any = None,
    raw: Optional[bytes] = None,
    headers: Optional[List[Tuple[str, str]]] = None,
    timeout_ms: Optional[int] = None,
) -> Reply:
    """`method` on `api_base + path`: JSON `body`, or `raw` bytes with their own headers.

    `teamId` is added as every SDK request adds it, when the operator configured one."""
    params = dict(query or {})
    team = setting("team-id")
    if team:
        params.setdefault("teamId", team)
    pairs = [f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in params.items() if v is not None]
    url = api_base() + path + ("?" + "&".join(pairs) if pairs else "")
    what = f"{method} {path}"
    head = list(headers or [])
    payload = b""
    if raw is not None:
        payload = raw
    elif body is not None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head.append(("content-type", "application/json"))
    req = upstream.Request(method=method, url=url, headers=head, body=payload, timeout_ms=timeout_ms)
    try:
        resp = upstream.send(req)
    except Err as e:
        raise transport_error(what, e.value)
    return Reply(what, resp.status, resp.headers, resp.body)


class TimedOut(Exception):
    """The upstream did not answer within the request's `timeout_ms` (exec's deadline)."""


def transport_error(what: str, failure: Any) -> Exception:
    if isinstance(failure, upstream.Failure_TimedOut):
        return TimedOut(f"{what}: {failure.value}")
    if isinstance(failure, upstream.Failure_Refused):
        # The host already decided the call's outcome (S703/S704); this only names it.
        return errors.fail(ErrorKind.UNAVAILABLE, f"{what} was refused by the host: {failure.value}")
    return errors.unavailable(f"{what} failed: {failure.value}")


def error_detail(body: bytes) -> str:
    """Vercel's `{"error": {"code", "message"}}`, or another common shape, or a snippet."""
    try:
        v = json.loads(body)
    except ValueError:
        return snippet(body)
    if isinstance(v, dict):
        err = v.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            code = err.get("code")
            return f"{err['message']} ({code})" if isinstance(code, str) and code else err["message"]
        for key in ("message", "detail", "error"):
            if isinstance(v.get(key), str):
                return v[key]
    return snippet(body)


def snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return text + ("…" if len(body) > 200 else "")


def retry_after_ms(value: Optional[str], now: Optional[float] = None) -> Optional[int]:
    """`Retry-After` as delta-seconds or an HTTP date (RFC 9110 allows either)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        at = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0, int((at - (time.time() if now is None else now)) * 1000))
