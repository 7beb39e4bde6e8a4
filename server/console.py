"""The app's test console: turn form input into a real request, send it over HTTP, and say it as curl.

The request goes through the running server's real HTTP port (auth, limits, audit and all), so what the
owner sees is exactly what Voka would get.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from server.catalog import Tool
from server.errors import InvalidParams


def coerce_form(tool: Tool, raw: dict[str, Any]) -> dict[str, Any]:
    """Form fields (text, or a bool from a checkbox) to typed arguments; empty optional fields are left out.

    The result is then validated by the tool's own schema (`Tool.bind`), the same check the server runs.
    """
    args: dict[str, Any] = {}
    problems = []
    for name, spec in tool.params.items():
        value = raw.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value in (None, ""):
            if spec.required and spec.default is None:
                problems.append(f"{name} is required")
            continue
        try:
            if spec.type == "integer" and isinstance(value, str):
                value = int(value)
            elif spec.type == "number" and isinstance(value, str):
                value = float(value)
            elif spec.type == "boolean" and isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError
                value = value.lower() == "true"
            elif spec.type == "json" and isinstance(value, str):
                value = json.loads(value)
        except ValueError:
            problems.append(f"{name} must be {'valid JSON' if spec.type == 'json' else 'a ' + spec.type}")
            continue
        args[name] = value
    if problems:
        raise InvalidParams(f"{tool.name}: " + "; ".join(problems))
    tool.bind(args)
    return args


def tool_request(tool: Tool, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Path and body of the Voka request that calls this tool."""
    if tool.kind == "query":
        return "/query", {"name": tool.name, "params": args}
    return "/action", {"action": tool.name, "params": args}


def sql_request(sql: str, args: list[Any]) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"query": sql}
    if args:
        body["args"] = args
    return "/query", body


def curl_command(base_url: str, path: str, key: str, body: dict[str, Any]) -> str:
    """The exact command that sends the same request (for support tickets and docs)."""
    parts = ["curl", "-sS", "-X", "POST", base_url.rstrip("/") + path, "-H", "Content-Type: application/json",
             "-H", f"x-api-key: {key}", "-d", json.dumps(body, ensure_ascii=False)]
    if base_url.startswith("https://") and _is_local(base_url):
        parts.insert(1, "-k")  # our own self-signed certificate, on this PC
    return " ".join(shlex.quote(p) for p in parts)


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class ConsoleResult:
    status: int
    elapsed_ms: float
    text: str
    payload: Any

    @property
    def pretty(self) -> str:
        if self.payload is None:
            return self.text
        return json.dumps(self.payload, indent=2, ensure_ascii=False)


async def send(base_url: str, path: str, key: str, body: dict[str, Any], *, timeout: float = 30
               ) -> ConsoleResult:
    """POST like Voka does and report status, time and the answer."""
    ssl = not (base_url.startswith("https://") and _is_local(base_url))
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.post(base_url.rstrip("/") + path, json=body, headers={"x-api-key": key},
                         ssl=ssl) as response:
        text = await response.text()
    elapsed = (time.perf_counter() - started) * 1000
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    return ConsoleResult(response.status, elapsed, text, payload)
