"""The world's `error` record, built one way everywhere, and the mapping from an
upstream HTTP status to an error kind that every provider shares (docs/contract.md):
400/422 → bad-input, 401/403 → auth-invalid, 402 → quota-exhausted, 404 → not-found,
429 → rate-limited (with `Retry-After`), anything else → unavailable."""

from typing import Optional

from componentize_py_types import Err
from wit_world.imports.types import Error, ErrorKind


def fail(kind: ErrorKind, message: str, status: Optional[int] = None, retry_after_ms: Optional[int] = None) -> Err:
    """An exception carrying the world's error; componentize-py returns it as `err`."""
    return Err(Error(kind=kind, message=message, upstream_status=status, retry_after_ms=retry_after_ms))


def bad_input(message: str) -> Err:
    return fail(ErrorKind.BAD_INPUT, message)


def unavailable(message: str) -> Err:
    return fail(ErrorKind.UNAVAILABLE, message)


def not_found(message: str) -> Err:
    return fail(ErrorKind.NOT_FOUND, message)


def unsupported(leaf: str) -> Err:
    return fail(ErrorKind.UNSUPPORTED, f"this provider does not implement `{leaf}`")


def kind_for_status(status: int) -> ErrorKind:
    if status in (400, 422):
        return ErrorKind.BAD_INPUT
    if status in (401, 403):
        return ErrorKind.AUTH_INVALID
    if status == 402:
        return ErrorKind.QUOTA_EXHAUSTED
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 429:
        return ErrorKind.RATE_LIMITED
    return ErrorKind.UNAVAILABLE
