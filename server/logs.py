"""JSON-lines logs (combined.log, error.log), size-rotated, with secrets redacted on the way out."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

from server.config import LogSettings

_PATTERNS = [
    (re.compile(r"vbk_[A-Za-z0-9]+_[A-Za-z0-9_-]+"), "vbk_***"),
    (re.compile(r"(?i)(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@"), r"\1***@"),
    (re.compile(r"(?i)(password\s*[=:]\s*)\S+"), r"\1***"),
    (re.compile(r"(?i)(x-api-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
]
_known_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Remember a secret that has no recognisable shape (MCP_API_KEY, a password) to mask it."""
    if secret and len(secret) >= 4:
        with _lock:
            _known_secrets.add(secret)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in tuple(_known_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
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
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class _Human(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(log_dir: Path, settings: LogSettings, *, console: bool = False) -> None:
    """Attach the rotating JSON files (and optionally stderr) to the `server` logger tree."""
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("server")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.level)
    root.propagate = False
    combined = RotatingFileHandler(log_dir / "combined.log", maxBytes=settings.max_bytes,
                                   backupCount=settings.backups, encoding="utf-8", delay=True)
    combined.setFormatter(JsonFormatter())
    errors = RotatingFileHandler(log_dir / "error.log", maxBytes=settings.max_bytes,
                                 backupCount=settings.backups, encoding="utf-8", delay=True)
    errors.setLevel(logging.ERROR)
    errors.setFormatter(JsonFormatter())
    root.addHandler(combined)
    root.addHandler(errors)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.WARNING)
        stream.setFormatter(_Human("%(levelname)s %(message)s"))
        root.addHandler(stream)
