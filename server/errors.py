"""Every failure a caller can see, with its HTTP status and machine code.

Adapters (REST, MCP) turn these into their own wire format; nothing else decides a status code.
"""

from __future__ import annotations

from typing import Any

from server.logs import redact


class BridgeError(Exception):
    """A failure meant for the caller: the message is safe to show (no secrets, no internals)."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        message = redact(message)  # a caller's pasted key or password is never echoed back (or logged)
        super().__init__(message)
        self.message = message
        self.detail = message  # for the owner (log, audit row, app); `message` is what the caller reads
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(BridgeError):
    status, code = 400, "bad_request"


class InvalidParams(BadRequest):
    code = "invalid_params"


class ReadOnlyViolation(BadRequest):
    code = "read_only"


class ResponseTooLarge(BadRequest):
    """The answer would exceed `[limits] max_response_bytes`; found while the rows arrive, never after
    building the whole answer."""

    code = "response_too_large"

    def __init__(self, limit: int, *, single_value: bool = False) -> None:
        what = ("one value in it (or computed on the way to it) is larger" if single_value
                else "it would be larger")
        super().__init__(f"The answer is too large to send: {what} than the server's limit of "
                         f"{_size(limit)} ([limits] max_response_bytes). Select fewer rows or columns "
                         "(a narrower WHERE, a LIMIT, or only the columns you need).")
        self.limit = limit


def _size(count: int) -> str:
    if count >= 1024 * 1024 and count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MB"
    if count >= 1024 and count % 1024 == 0:
        return f"{count // 1024} KB"
    return f"{count:,} bytes"


class Unauthorized(BridgeError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "Unauthorized", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class Forbidden(BridgeError):
    status, code = 403, "forbidden"


class NotFound(BridgeError):
    status, code = 404, "not_found"


class UnknownTool(NotFound):
    code = "unknown_tool"


class Conflict(BridgeError):
    """The request is well formed but the data says no (duplicate phone, short stock, idempotency)."""

    status, code = 409, "conflict"


class PayloadTooLarge(BridgeError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(BridgeError):
    status, code = 415, "unsupported_media_type"


class RateLimited(BridgeError):
    status, code = 429, "rate_limited"


class ClientClosed(BridgeError):
    """The caller hung up before its request body arrived: nothing ran, and nobody is left to answer.
    Audited as 499, nginx's "client closed request", rather than as a server fault."""

    status, code = 499, "client_closed"


class InternalError(BridgeError):
    status, code = 500, "internal_error"


class DatabaseUnavailable(BridgeError):
    """The caller reads one plain sentence; the cause (a driver's words, a file path) is for the owner
    only: `detail` goes to the log, the audit row and the app."""

    status, code = 503, "database_unavailable"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if self.code == DatabaseUnavailable.code:  # other codes (database_busy) say only our own words
            self.message = "The database is unavailable; try again shortly."


class QueryTimeout(BridgeError):
    status, code = 504, "query_timeout"
