"""What a database's own error message may tell the caller: never the caller's own words back.

An engine quotes the statement or a value in its message (`near "xshopx": syntax error`,
`relation "xshopx" does not exist`). Echoed, and masked where it holds a secret, that told a caller
whether a guess was the database password or another key (the masked echo is the answer). So every
fragment the caller sent is cut from the message before it leaves, whether or not it holds a secret; the
owner keeps the engine's whole message (BridgeError.detail: the log and the app).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from server.errors import BridgeError
from server.logs import redact

_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')
_WORD = re.compile(r"\w+")
_CUT = "…"
# The engines' own words: a caller's SQL uses them too, and they carry no secret (a password that is one
# of them would be masked in every message anyway). Cutting them would leave messages unreadable.
_ENGINE_WORDS = frozenset({
    "all", "and", "any", "as", "at", "by", "column", "columns", "does", "error", "exist", "exists", "for",
    "from", "function", "in", "into", "is", "near", "no", "not", "null", "of", "on", "or", "relation",
    "select", "such", "syntax", "table", "type", "value", "where", "with"
})


def _caller_words(caller: Iterable[object]) -> frozenset[str]:
    words: set[str] = set()
    for item in caller:
        if item is not None:
            words.update(word.lower() for word in _WORD.findall(str(item)))
    return frozenset(words - _ENGINE_WORDS)


def for_caller(message: str, caller: Iterable[object] = ()) -> str:
    """The engine's first message line with every quoted fragment, and every word the caller sent
    (`caller`: the SQL and the values), replaced by "…"."""
    text = _QUOTED.sub(_CUT, message.splitlines()[0] if message else "")
    words = _caller_words(caller)
    if words:
        text = _WORD.sub(lambda m: _CUT if m.group(0).lower() in words else m.group(0), text)
    text = re.sub(rf"{_CUT}(?:\W*?{_CUT})+", _CUT, text)
    if redact(text) != text:  # a secret no rule above caught: say nothing of the message
        return "the database did not accept it"
    return text


def refusal(error: type[BridgeError], lead: str, exc: BaseException, caller: Iterable[object] = (),
            **kwargs: object) -> BridgeError:
    """`error(f"{lead}: <the engine's message, cut>")`, with the whole message kept for the owner."""
    message = str(exc)
    refused = error(f"{lead}: {for_caller(message, caller)}", **kwargs)  # type: ignore[arg-type]
    refused.detail = f"{lead}: {redact(message)}"
    return refused
