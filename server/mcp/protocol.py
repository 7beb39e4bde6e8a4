"""JSON-RPC 2.0 as MCP uses it: message shapes, error codes, protocol versions and the per-request ladder.

The rules and codes follow the official MCP SDK (`mcp` 2.3: `mcp_types.jsonrpc`, `mcp.shared.inbound`) so
that its clients read our refusals exactly as they read its own server's. Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from server.jsonsafe import dumps_bytes

# ---- protocol versions -------------------------------------------------------------------------
HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: Final = ("2026-07-28",)
ALL_VERSIONS: Final = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[-1]
DEFAULT_HEADER_VERSION: Final = "2025-03-26"  # a handshake-era request without the header means this
BATCH_VERSIONS: Final = frozenset({"2024-11-05", "2025-03-26"})  # 2025-06-18 removed JSON-RPC batching
STRUCTURED_VERSIONS: Final = frozenset({"2025-06-18", "2025-11-25", "2026-07-28"})  # outputSchema exists

# ---- headers and reserved _meta keys -------------------------------------------------------------
VERSION_HEADER: Final = "MCP-Protocol-Version"
SESSION_HEADER: Final = "Mcp-Session-Id"
METHOD_HEADER: Final = "Mcp-Method"
NAME_HEADER: Final = "Mcp-Name"
META_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
NAME_BEARING: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

# ---- error codes -------------------------------------------------------------------------------
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
RESOURCE_NOT_FOUND: Final = -32002  # handshake era; 2026-07-28 retired it (INVALID_PARAMS there)
HEADER_MISMATCH: Final = -32020
MISSING_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_VERSION: Final = -32022

# The HTTP status a JSON-RPC error travels with on the per-request (2026-07-28) path.
MODERN_HTTP_STATUS: Final = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400,
                             HEADER_MISMATCH: 400, MISSING_CLIENT_CAPABILITY: 400, UNSUPPORTED_VERSION: 400,
                             METHOD_NOT_FOUND: 404}

# The machine code the audit log records for each JSON-RPC error.
AUDIT_CODES: Final = {PARSE_ERROR: "parse_error", INVALID_REQUEST: "invalid_request",
                      METHOD_NOT_FOUND: "method_not_found", INVALID_PARAMS: "invalid_params",
                      INTERNAL_ERROR: "internal_error", RESOURCE_NOT_FOUND: "resource_not_found",
                      HEADER_MISMATCH: "header_mismatch", MISSING_CLIENT_CAPABILITY: "missing_capability",
                      UNSUPPORTED_VERSION: "unsupported_protocol_version"}


class RpcError(Exception):
    """A JSON-RPC error for the caller; `audit_code` names it in the audit log."""

    def __init__(self, code: int, message: str, data: Any = None, *, audit_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.audit_code = audit_code or AUDIT_CODES.get(code, f"jsonrpc_{code}")


@dataclass(frozen=True)
class Message:
    """One decoded client message: a request (has `id`), a notification, or a response it posted."""

    kind: str  # "request" | "notification" | "response"
    method: str
    id: int | str | None
    params: dict[str, Any]


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_message(value: Any) -> Message:
    """Check one JSON-RPC object's envelope (the SDK's `jsonrpc_message_adapter` rules)."""
    if not isinstance(value, dict) or value.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Invalid request: expected a JSON-RPC 2.0 object")
    if "method" not in value:
        if "id" in value and ("result" in value or "error" in value) and (
                value["id"] is None or _valid_id(value["id"])):
            return Message("response", "", value["id"], {})
        raise RpcError(INVALID_REQUEST, "Invalid request: a JSON-RPC request needs a string `method`")
    method = value["method"]
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, "Invalid request: `method` must be a string")
    params = value.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, "Invalid request: `params` must be an object")
    if "id" not in value:
        return Message("notification", method, None, params)
    if not _valid_id(value["id"]):
        raise RpcError(INVALID_REQUEST, "Invalid request: `id` must be a string or an integer")
    return Message("request", method, value["id"], params)


def request_id_of(value: Any) -> int | str | None:
    """The id to answer a malformed request with, when one can be read at all."""
    if isinstance(value, dict) and _valid_id(value.get("id")):
        return value["id"]  # type: ignore[no-any-return]
    return None


def result(request_id: int | str | None, payload: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": payload}


def error(request_id: int | str | None, exc: RpcError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        body["data"] = exc.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def encode(payload: Any) -> bytes:
    return dumps_bytes(payload)


# ---- the per-request (2026-07-28) ladder ----------------------------------------------------------
_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")


def decode_header_value(value: str | None) -> str | None:
    """`=?base64?...?=` header values carry text that plain HTTP headers cannot; None when malformed."""
    if value is None or not value.startswith("=?base64?"):  # (the usual plain name skips the pattern)
        return value
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(decoded).decode("ascii") != payload:
        return None
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None


def unsupported_version(requested: Any) -> RpcError:
    return RpcError(UNSUPPORTED_VERSION, "Unsupported protocol version",
                    {"supported": list(MODERN_VERSIONS), "requested": requested})


def check_modern_envelope(message: Message, headers: Any) -> str:
    """Validate a 2026-07-28 request's `_meta` envelope against its routing headers; returns the version.

    Same rungs, order and codes as the SDK's `classify_inbound_request`: envelope keys present, headers
    agree with the body, then the version is one we serve.
    """
    meta = message.params.get("_meta")
    if not isinstance(meta, dict):
        raise RpcError(INVALID_PARAMS, "params._meta must be an object carrying the required "
                                       f"{META_VERSION!r} and {META_CAPABILITIES!r} envelope keys")
    missing = [key for key in (META_VERSION, META_CAPABILITIES) if key not in meta]
    if missing:
        raise RpcError(INVALID_PARAMS,
                       f"params._meta is missing the required envelope key(s): {', '.join(missing)}")
    version = meta[META_VERSION]
    header_version = headers.get(VERSION_HEADER)
    if header_version is None or header_version != version:
        raise RpcError(HEADER_MISMATCH,
                       "mcp-protocol-version header does not match the request envelope's protocol version")
    if headers.get(METHOD_HEADER) != message.method:
        raise RpcError(HEADER_MISMATCH, "mcp-method header does not match the request body's method")
    name_key = NAME_BEARING.get(message.method)
    if name_key is not None:
        body_value = message.params.get(name_key)
        if body_value is not None and decode_header_value(headers.get(NAME_HEADER)) != body_value:
            raise RpcError(HEADER_MISMATCH,
                           f"mcp-name header does not match the request body's {name_key!r} parameter")
    if not isinstance(version, str):
        raise RpcError(INVALID_PARAMS, "the protocol-version envelope value must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)
    return version


def duplicated_routing_header(headers: Any) -> str | None:
    """A routing header sent twice: first-copy and last-copy readers would disagree, so refuse it."""
    for name in ("mcp-protocol-version", "mcp-method", "mcp-name"):
        if len(headers.getall(name, ())) > 1:
            return name
    return None
