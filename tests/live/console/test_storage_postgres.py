"""The console store's promises on a real PostgreSQL: every behaviour test of tests/unit/console/test_storage.py
(all but the SQLite-only ones) runs here again through this module's `backend` fixture, plus what only a shared
server can show."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import psycopg
import pytest

from pilot.console.storage import Retention, Sample, Storage, open_storage
from pilot.console.storage.postgres import MAINTAIN_LOCK, TABLES
from tests.unit.console import test_storage as shared

T0 = shared.T0

# the shared behaviour tests, collected again in this module (where `backend` below is PostgreSQL)
globals().update(
    {
        name: test
        for name, test in vars(shared).items()
        if name.startswith("test_") and not name.startswith("test_sqlite_")
    }
)


@dataclass
class PostgresBackend:
    url: str
    stores: list = field(default_factory=list)

    def make(self, retention: Retention = Retention(), now: float = T0) -> Storage:
        store = open_storage(self.url, retention, clock=lambda: now)
        self.stores.append(store)
        return store

    def rows(self, tier: str) -> list[tuple]:
        cols = "value" if tier == "raw" else "mean, min, max, count"
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                f"SELECT s.device, s.entity, t.ts, {cols} FROM pilot_{tier} t JOIN pilot_series s ON s.id = t.series "
                'ORDER BY s.device COLLATE "C", s.entity COLLATE "C", t.ts'
            ).fetchall()

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture(scope="module")
def database(postgres) -> str:
    return postgres.create_database("storage")


@pytest.fixture
def backend(database):
    """A store on an empty schema (the tables dropped: much quicker than a database per test)."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS " + ", ".join(TABLES))
    b = PostgresBackend(database)
    yield b
    b.close()


def test_two_instances_opening_a_new_database_at_once_both_work(postgres):
    url = postgres.create_database("race")
    stores: list = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(open_storage(url, clock=lambda: T0))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        stores[0].add([Sample("pc", "cpu", T0, 1.0)])
        assert [s.history("pc", "cpu", T0, T0).values for s in stores] == [[1.0]] * 4
    finally:
        for s in stores:
            s.close()


def test_maintenance_skips_while_another_instance_holds_the_lock(backend):
    store = backend.make()
    store.add(shared.minute_inputs())
    with psycopg.connect(backend.url) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTAIN_LOCK,))
        store.maintain(T0 + 3600 + 60)  # returns at once: another instance is maintaining
        assert backend.rows("1m") == []
    store.maintain(T0 + 3600 + 60)
    assert len(backend.rows("1m")) == 3
