"""Masking of secrets on their way to logs, audit rows, screens and error messages, in every shape they
take there: bare, in JSON, in URLs and query strings, escaped or percent-encoded."""

from __future__ import annotations

import json

import pytest

from server.errors import BadRequest, UnknownTool
from server.logs import redact, register_secret

SHAPES = [
    ('{"password": "swordfish"}', "swordfish"),
    ("password=swordfish&user=x", "swordfish"),
    ("postgresql://shop@db/x?password=swordfish", "swordfish"),
    ("postgresql://shop:sw%40rdfish@db:5432/x", "sw%40rdfish"),
    ("passwd: swordfish", "swordfish"),
    ('{"client_secret":"s3cr3t-value"}', "s3cr3t-value"),
    ("apikey=abc123def", "abc123def"),
    ('{"api_key": "abc123def"}', "abc123def"),
    ("X-API-KEY: abc123def", "abc123def"),
    ("Authorization: Bearer abc.def-123", "abc.def-123"),
    ("curl -H 'x-api-key: vbk_0123456789ab_AbC-dEf_123'", "AbC-dEf_123"),
]


@pytest.mark.parametrize(("text", "secret"), SHAPES)
def test_recognisable_secret_shapes_are_masked(text: str, secret: str) -> None:
    masked = redact(text)
    assert secret not in masked and "***" in masked


def test_registered_secrets_are_masked_however_they_are_encoded() -> None:
    secret = 'p@ss "word"\\ü/with spaces'
    register_secret(secret)
    for text in (secret, json.dumps({"k": secret}), json.dumps({"k": secret}, ensure_ascii=False),
                 "postgresql://u:p%40ss%20%22word%22%5C%C3%BC%2Fwith%20spaces@h/db",
                 "q=p%40ss+%22word%22%5C%C3%BC%2Fwith+spaces"):
        masked = redact(text)
        assert "word" not in masked, (text, masked)


def test_ordinary_text_is_left_alone() -> None:
    for text in ("200 passed in 3 s", "password reset requested", "tokens left: 5", "the api is up",
                 '{"route": "/query", "status": 200, "ms": 1.5}'):
        assert redact(text) == text


def test_errors_shown_to_callers_never_echo_a_key_they_pasted() -> None:
    key = "vbk_0123456789ab_" + "Q" * 43
    register_secret("shop-env-secret-123")
    assert key not in UnknownTool(f"There is no tool named {key!r}.").message
    assert "shop-env-secret-123" not in BadRequest("phone 'shop-env-secret-123' is not a phone").message
