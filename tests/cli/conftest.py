"""Fixtures for the CLI tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llama3med.cli.common import set_debug


@pytest.fixture(autouse=True)
def no_debug() -> Iterator[None]:
    """Each test starts without --debug (the flag is process state set by the main command)."""
    set_debug(False)
    yield
    set_debug(False)
