"""Shared fixtures: test servers (tests/servers.py), a Postgres database (tests/pg.py) and the
installed wheel (tests/installed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.installed import InstalledVenv, build_and_install
from tests.pg import temporary_database
from tests.realdata import absent_reason, real_data_dir
from tests.servers import S3Server, design_buckets, moto_server, seaweedfs



@pytest.fixture(scope="session")
def seaweed(tmp_path_factory) -> S3Server:
    """A SeaweedFS S3 server shared by the session; create buckets with `.create_bucket()`."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def seaweed_buckets(seaweed) -> dict[str, str]:
    """Fresh, uniquely named imagery/heatmap/report buckets: {"imagery": …, "heatmap": …, "report": …}."""
    return design_buckets(seaweed)


@pytest.fixture(scope="session")
def moto() -> S3Server:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def processed(tmp_path_factory):
    """The demo batch processed and one batch refused, on the embedded default
    (tests/api_world.py); built once per session for every API test module."""
    from tests.api_world import process_world

    return process_world(tmp_path_factory)


@pytest.fixture(scope="module")
def pg():
    """A throwaway Postgres database per test module (tests/pg.py), dropped afterwards."""
    with temporary_database() as database:
        yield database


@pytest.fixture(scope="session")
def installed_venv(tmp_path_factory) -> InstalledVenv:
    """The wheel built as the Dockerfile builds it, installed with requirements.lock into a fresh
    venv (tests/installed.py); built once per session, shared by the wheel and compose tests."""
    return build_and_install(tmp_path_factory.mktemp("installed"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real imagery in ../shared/data/real next to the checkout (IMAGERY_TEST_REAL_DATA names
    another folder). Tests that need it skip, saying why, when it is absent."""
    folder = real_data_dir()
    if not folder.is_dir():
        pytest.skip(absent_reason(folder))
    return folder
