"""Session-wide test servers (see tests/servers.py). Others add their fixtures below."""

from __future__ import annotations

import pytest

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
