"""A real Postgres for Dagster's run, event-log and schedule storage in tests.

The server comes from TEST_PG_HOST / TEST_PG_PORT / TEST_PG_USER / TEST_PG_PASSWORD (`.ci/run`
sets them, starting a throwaway cluster when none is running), defaulting to the machine's
127.0.0.1:5432 with trust auth. Each test session creates a uniquely named database and drops
it afterwards. The Dagster instance is built from the repository's own dagster.yaml, so the test
exercises exactly what operators deploy.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PgDatabase:
    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def connect(self):
        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                password=self.password, dbname=self.db)

    def count(self, table: str) -> int:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")  # table names are ours, not input
            return int(cur.fetchone()[0])


def _server() -> dict:
    return {
        "host": os.environ.get("TEST_PG_HOST", "127.0.0.1"),
        "port": int(os.environ.get("TEST_PG_PORT", "5432")),
        "user": os.environ.get("TEST_PG_USER", "postgres"),
        "password": os.environ.get("TEST_PG_PASSWORD", ""),
    }


@contextmanager
def temporary_database() -> Iterator[PgDatabase]:
    server = _server()
    name = f"imagery_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(dbname="postgres", **server)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield PgDatabase(db=name, **server)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def dagster_home(database: PgDatabase, root: Path) -> Iterator[Path]:
    """A DAGSTER_HOME holding the repository's dagster.yaml, with DAGSTER_PG_* exported."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    saved = {k: os.environ.get(k) for k in [*database.env(), "DAGSTER_HOME"]}
    os.environ.update(database.env())
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
