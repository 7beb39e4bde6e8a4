"""One rule for a test whose outside tool or service is missing here: a failure under CI (CI=true, set
by .ci/run), where it must always be present; elsewhere a skip that says what is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
