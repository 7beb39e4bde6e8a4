"""JSON-lines logs (combined.log, error.log), size-rotated, with secrets redacted on the way out."""

from __future__ import annotations

import atexit
import json
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Sequence
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler, WatchedFileHandler
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from server.config import LogSettings
from server.jsonsafe import dumps

# (cheap substring that must be present, pattern, replacement): most lines skip every regex.
_RULES = [
    ("vbk_", r"vbk_[A-Za-z0-9]+_[A-Za-z0-9_-]+", "vbk_***", 0),
    ("://", r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", re.I),
    # `password=x`, `"password": "x"`, `passwd: x`, `?password=x&` (also in JSON and query strings)
    ("pass", r"(pass(?:word|wd)?['\"]?\s*[=:]\s*['\"]?)[^'\"\s,;&}]+", r"\1***", re.I),
    ("secret", r"(secret['\"]?\s*[=:]\s*['\"]?)[^'\"\s,;&}]+", r"\1***", re.I),
    ("api", r"(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,;&}]+", r"\1***", re.I),
    ("bearer", r"(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1***", re.I),
]
# Each pattern also compiled case-sensitively, to look for it in the lower-cased text first: a
# case-insensitive regex tests every position of a line, a case-sensitive one skips to its literal
# prefix (about 20x faster on a log batch), and most lines hold none of these.
_PATTERNS = [(needle, re.compile(source) if flags else None, re.compile(source, flags), replacement)
             for needle, source, replacement, flags in _RULES]
_known_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Remember a secret that has no recognisable shape (MCP_API_KEY, a password) to mask it, also as it
    looks inside a JSON string or a URL (escaped, percent-encoded)."""
    if secret and len(secret) >= 4:
        forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                 quote(secret, safe=""), quote_plus(secret)}
        with _lock:
            _known_secrets.update(forms)


def redact(text: str) -> str:
    """Mask API keys, passwords and known secrets in any text bound for a log, a screen or a file."""
    lowered = text.lower()
    ascii_only = text.isascii()  # then `lowered` matches a lower-case pattern exactly where re.I would
    for needle, lower_case, pattern, replacement in _PATTERNS:
        if needle in lowered and (lower_case is None or not ascii_only or lower_case.search(lowered)):
            text = pattern.sub(replacement, text)
    for secret in tuple(_known_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line; formatted once per record even when two files receive it."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        cached = getattr(record, "_voka_json", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        record._voka_json = redact(dumps(entry, default=str))
        return record._voka_json  # type: ignore[no-any-return]


_access = logging.getLogger("server.access")
_ACCESS_FIELDS = (("method", "method"), ("route", "route"), ("status", "status"), ("client", "client"),
                  ("key", "key_name"), ("tool", "tool"), ("ms", "duration_ms"), ("rows", "rows"),
                  ("code", "error_code"), ("reason", "detail"))


def log_requests(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
    """One JSON line per request in combined.log (5xx ones also in error.log), handed over as one
    record per batch: the request path only appends to the audit buffer, and the audit writer calls
    this with each batch it saves.

    `rows` are the audit rows as saved, `columns` their column names; their text is already masked (the
    audit writer masks each row once, for the table and for these lines), so it is not redacted again."""
    if not _access.isEnabledFor(logging.INFO):
        return
    (ts, method, route, status, client, key, tool, ms, count, code, reason) = (
        columns.index(name) for name in ("ts", *(attr for _, attr in _ACCESS_FIELDS)))
    name = _access.name
    ok: list[str] = []
    failed: list[str] = []
    for row in rows:  # a dict display per line: building it with dict(zip(...)) took twice as long
        error = row[status] >= 500
        (failed if error else ok).append(dumps({
            "time": row[ts].replace("+00:00", "Z"), "level": "error" if error else "info", "logger": name,
            "message": "request", "method": row[method], "route": row[route], "status": row[status],
            "client": row[client], "key": row[key], "tool": row[tool], "ms": row[ms], "rows": row[count],
            "code": row[code], "reason": row[reason]}))
    for level, lines in ((logging.INFO, ok), (logging.ERROR, failed)):
        if lines:
            text = "\n".join(lines)
            record = _access.makeRecord(_access.name, level, __file__, 0, text, None, None)
            record._voka_json = text
            _access.handle(record)


class _Human(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _Enqueue(QueueHandler):
    """Hands records to the writer thread as they are: formatting and file I/O happen off the loop."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listener: QueueListener | None = None


def stop_logging() -> None:
    """Flush and stop the writer thread (idempotent)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None


LOG_FILES = ("combined.log", "error.log")


def _rotating(path: Path, settings: LogSettings) -> RotatingFileHandler:
    return RotatingFileHandler(path, maxBytes=settings.max_bytes, backupCount=settings.backups,
                               encoding="utf-8", delay=True)


def _file_handler(path: Path, settings: LogSettings, rotate: bool) -> logging.FileHandler:
    return _rotating(path, settings) if rotate else WatchedFileHandler(path, encoding="utf-8", delay=True)


def setup_logging(log_dir: Path, settings: LogSettings, *, console: bool = False,
                  rotate: bool = True) -> None:
    """Attach the rotating JSON files (and optionally stderr) to the `server` logger tree.

    The request path only enqueues a record; a writer thread formats, redacts and writes it.
    `rotate=False` (the processes of `serve --workers N`): the files are appended to and reopened when
    renamed, and the supervisor alone rotates them (`rotate_logs`), so no two processes rotate one file.
    """
    global _listener
    log_dir.mkdir(parents=True, exist_ok=True)
    stop_logging()
    root = logging.getLogger("server")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.level)
    root.propagate = False
    combined = _file_handler(log_dir / LOG_FILES[0], settings, rotate)
    combined.setFormatter(JsonFormatter())
    errors = _file_handler(log_dir / LOG_FILES[1], settings, rotate)
    errors.setLevel(logging.ERROR)
    errors.setFormatter(JsonFormatter())
    handlers: list[logging.Handler] = [combined, errors]
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.WARNING)
        stream.setFormatter(_Human("%(levelname)s %(message)s"))
        handlers.append(stream)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = QueueListener(records, *handlers, respect_handler_level=True)
    _listener.start()
    root.addHandler(_Enqueue(records))
    atexit.register(stop_logging)


def rotate_logs(log_dir: Path, settings: LogSettings) -> None:
    """Rotate each log file past `max_bytes` as RotatingFileHandler does (file.1 ... file.N); the writers
    (WatchedFileHandler) notice the rename and reopen."""
    for name in LOG_FILES:
        path = log_dir / name
        try:
            if path.stat().st_size < settings.max_bytes:
                continue
        except FileNotFoundError:
            continue
        rotator = _rotating(path, settings)
        try:
            rotator.doRollover()
        finally:
            rotator.close()
