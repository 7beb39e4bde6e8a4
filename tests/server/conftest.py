"""Fixtures shared by the server tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.sharedstate import SharedState


@pytest.fixture
def shared() -> Iterator[SharedState]:
    """A small shared-memory segment, as `serve --workers N` makes for the limiters' tables."""
    state = SharedState(slots=64)
    yield state
    state.close()
