"""The PostgreSQL store (psycopg 3): the SQLite store's schema and promises, for several console instances."""

from __future__ import annotations

try:
    import psycopg
except ImportError as exc:  # the extra is optional: say which one to install
    raise ImportError("the PostgreSQL store needs psycopg: install pilot-agent[postgres]") from exc


class PostgresStorage:
    def __init__(self, url: str, retention, *, clock) -> None:
        raise NotImplementedError("PostgreSQL store: in progress")
