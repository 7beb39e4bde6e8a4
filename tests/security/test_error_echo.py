"""Raw SQL that makes the engine quote the caller's own words: the answer never quotes them back, so a
masked echo cannot confirm a guess of a secret (the database password, another key), on both engines."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.conftest import RunningServer
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)
from tests.security.conftest import audit_rows


def _shapes(word: str) -> list[dict[str, object]]:
    """Statements whose engine message names `word` (a column, a table, a function, a value, a token)."""
    return [
        {"query": f'SELECT customers."{word}" FROM customers'},
        {"query": f'SELECT * FROM "{word}"'},
        {"query": f"SELEC '{word}'"},
        {"query": f"SELECT '{word}'::int"},
        {"query": f'SELECT "{word}"(1)'},
    ]


async def _answers(server: RunningServer, word: str, args: bool) -> list[tuple[int, str]]:
    bodies = _shapes(word)
    if args:  # PostgreSQL checks an argument against its parameter's type and names the value
        bodies.append({"query": "SELECT * FROM customers WHERE id = $1 + 1", "args": [word]})
    answers = []
    for body in bodies:
        status, answer, _ = await server.post("/query", body, key=server.keys["analyst"])
        answers.append((status, json.dumps(answer)[:300]))
    return answers


async def _no_oracle(server: RunningServer, secret: str, *, args: bool = False) -> None:
    guess = f"x{secret}x"
    decoy = "x" + "".join(secrets.choice("qz") if c.isalnum() else c for c in secret) + "x"  # same shape
    with_secret, without = await _answers(server, guess, args), await _answers(server, decoy, args)
    assert with_secret == without  # the answer does not depend on whether the guess held a secret
    for status, text in with_secret:
        assert status == 400, text
        assert secret not in text and "***" not in text and guess not in text, text
        assert "not accepted" in text or "not a valid" in text, text  # still says what kind of problem
    # The owner still reads the engine's own words (masked) in the audit row.
    details = " ".join(str(row.get("detail") or "") for row in await audit_rows(server.bridge))
    assert "***" in details and ("no such table" in details or "does not exist" in details), details


async def test_sqlite_raw_sql_errors_never_quote_the_caller(server: RunningServer) -> None:
    await _no_oracle(server, server.keys["writer"])


@pytest.fixture
async def pg_api(pg_server: PgServer, pg_db: str, make_server) -> RunningServer:  # noqa: F811
    running: RunningServer = await make_server({"database": {"allow_privileged_role": True}},
                                               database_url=pg_server.url(pg_db))
    await running.create_key("writer", ("query", "action"))
    await running.create_key("analyst", ("query", "action", "sql"))
    return running


async def test_postgresql_errors_never_quote_the_caller_nor_the_password(pg_api: RunningServer,
                                                                       pg_server: PgServer) -> None:  # noqa: F811
    await _no_oracle(pg_api, pg_server.password, args=True)
    await _no_oracle(pg_api, pg_api.keys["writer"], args=True)


MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "echo-test", "version": "1"}}


async def _mcp(server: RunningServer, method: str, params: dict[str, object]) -> str:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    headers = {"Content-Type": "application/json", "x-api-key": server.keys["analyst"],
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": method}
    name = params.get("name") or params.get("uri")
    if name:
        headers["Mcp-Name"] = str(name)
    async with server.session.post(server.url + "/mcp", data=json.dumps(body), headers=headers) as response:
        return await response.text()


async def test_unknown_names_are_refused_without_quoting_them(server: RunningServer) -> None:
    secret = server.keys["writer"]
    for word in (f"x{secret}x", "x" + "q" * len(secret) + "x"):
        answers = [
            (await server.post("/query", {"name": word, "params": {}}, key=server.keys["analyst"]))[1],
            (await server.post("/", {"method": "query", "params": {"name": word}},
                               key=server.keys["analyst"]))[1],
            await _mcp(server, "tools/call", {"name": word, "arguments": {}}),
            await _mcp(server, "resources/read", {"uri": f"voka://{word}"}),
            await _mcp(server, word, {}),
        ]
        text = json.dumps(answers)
        assert word not in text and "***" not in text and "qqqq" not in text, text
        assert text.count("no tool by that name") == 2 and "Unknown tool" in text, text
        assert "Resource not found" in text and "Method not found" in text, text
