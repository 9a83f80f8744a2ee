"""The daemon rows of the fault matrix (README "Reliability", rows 12-14), against a real
`dagster-daemon` process group (tests/processes.py) on Postgres and SeaweedFS.

The DAGSTER_HOME of each test holds the repository's dagster.yaml with faster timers only
(`fast_dagster_yaml`): run monitoring polls every 2 s instead of 30 s, and row 14 lowers
max_concurrent_runs so that the limit is reached. Everything else is what operators deploy.
"""

from __future__ import annotations

import pytest

from resources.object_store import ObjectStoreResource


def test_s3_request_limits__reach_boto3_and_gdal_options(monkeypatch):
    monkeypatch.setenv("MINIO_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "key")
    monkeypatch.setenv("MINIO_SECRET_KEY", "secret")
    defaults = ObjectStoreResource.from_env().store()
    assert defaults.gdal_options()["GDAL_HTTP_TIMEOUT"] == "120"
    assert defaults.gdal_options()["GDAL_HTTP_MAX_RETRY"] == "4"

    monkeypatch.setenv("IMAGERY_S3_READ_TIMEOUT_S", "7")
    monkeypatch.setenv("IMAGERY_S3_MAX_ATTEMPTS", "3")
    from pipeline.definitions import build_resources

    for resource in (ObjectStoreResource.from_env(), build_resources()["object_store"]):
        store = resource.store()
        options = store.gdal_options()
        assert options["GDAL_HTTP_TIMEOUT"] == "7"
        assert options["GDAL_HTTP_MAX_RETRY"] == "2"  # retries after the first of 3 attempts
        assert store.client.meta.config.read_timeout == 7
        assert store.client.meta.config.retries["total_max_attempts"] == 3


def test_s3_request_limits__nonsense_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MINIO_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "key")
    monkeypatch.setenv("MINIO_SECRET_KEY", "secret")
    monkeypatch.setenv("IMAGERY_S3_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="IMAGERY_S3_MAX_ATTEMPTS"):
        ObjectStoreResource.from_env().store()
