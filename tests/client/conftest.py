"""Fixtures of the client's fast tests: a scripted local HTTP server (local_api.py)."""

from collections.abc import Iterator

import pytest
from local_api import LocalServer, local_server


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with local_server() as started:
        yield started


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Client or AsyncClient: the tests that take it run once with each."""
    return request.param
