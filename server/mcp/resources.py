"""The database schema as an MCP resource: tables, columns and types, so an assistant asks good questions."""

from __future__ import annotations

from typing import Any

from server.bridge import Bridge
from server.jsonsafe import dumps
from server.ledger import TRACE_TABLE
from server.mcp.protocol import INVALID_PARAMS, MODERN_VERSIONS, RESOURCE_NOT_FOUND, RpcError

SCHEMA_URI = "voka://schema"
SCHEMA_MIME = "application/json"

SCHEMA_RESOURCE: dict[str, Any] = {
    "uri": SCHEMA_URI,
    "name": "database-schema",
    "title": "Database schema",
    "description": ("The tables of the connected business database with their columns, types, primary keys "
                    "and row counts. Read it to learn what data exists before asking for it."),
    "mimeType": SCHEMA_MIME,
}


def list_resources() -> dict[str, Any]:
    return {"resources": [SCHEMA_RESOURCE]}


async def read_resource(bridge: Bridge, params: dict[str, Any], version: str) -> dict[str, Any]:
    uri = params.get("uri")
    if not isinstance(uri, str) or not uri:
        raise RpcError(INVALID_PARAMS, "resources/read needs the resource's `uri`")
    if uri != SCHEMA_URI:
        code = INVALID_PARAMS if version in MODERN_VERSIONS else RESOURCE_NOT_FOUND
        # no `data.uri`: the caller's text is never quoted back (masked, it would confirm a guessed secret)
        raise RpcError(code, "Resource not found", audit_code="resource_not_found")
    db = await bridge.database()
    tables = await db.schema()
    document = {
        "engine": db.engine,
        "tables": [{"name": table.name, "row_count": table.row_count,
                    "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable,
                                 "primary_key": c.primary_key} for c in table.columns]}
                   for table in tables if table.name != TRACE_TABLE],  # ours, not the shop's
    }
    return {"contents": [{"uri": SCHEMA_URI, "mimeType": SCHEMA_MIME, "text": dumps(document)}]}
