"""A private PostgreSQL cluster for the console's live tests: started once per module, removed after."""

from __future__ import annotations

import pytest

from testkit.postgres import PostgresCluster


@pytest.fixture(scope="module")
def postgres():
    """The running cluster; `postgres.create_database(name)` gives each test its own database."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.cleanup()
