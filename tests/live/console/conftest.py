"""The console's live tests: a private PostgreSQL cluster (started once per module, removed after) and a poll helper."""

from __future__ import annotations

import time

import pytest

from testkit.postgres import PostgresCluster


@pytest.fixture(scope="module")
def postgres():
    """The running cluster; `postgres.create_database(name)` gives each test its own database."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.cleanup()


def wait(predicate, timeout: float = 20.0, every: float = 0.1):
    """Poll `predicate` until it is truthy and return its value: a live console and agent answer when they are ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {predicate}")
