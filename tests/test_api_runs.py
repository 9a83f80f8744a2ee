"""`POST /analysis-runs` through a real `dagster-webserver`: the run is created from the code
location for the batch's partition and queued for the daemon (none runs here, so it stays
QUEUED and nothing is computed)."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from pipeline.storage import LocalObjectStore
from tests.api_world import AUTH, make_app
from tests.processes import dagster_webserver

pytestmark = pytest.mark.slow
BATCH = "rerun-me-2026-06-14"


@pytest.fixture
def dagster_url(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MINIO_", "DAGSTER_PG_", "DASK_"))}
    env.update(DAGSTER_HOME=str(home), IMAGERY_DATA_DIR=str(tmp_path / "data"))
    with dagster_webserver(env=env, workdir=tmp_path) as url:
        yield url, home, tmp_path / "data"


def test_api_runs__reprocessing_queues_a_run_of_the_partition(dagster_url):
    url, home, data = dagster_url
    store = LocalObjectStore(root=data)
    store.ensure_bucket("imagery-uploads")
    store.put_bytes("imagery-uploads", f"{BATCH}/manifest.json", b"{}")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        with TestClient(make_app(store, instance=instance, dagster_url=url)) as client:
            early = client.post("/analysis-runs", json={"batch_id": BATCH}, headers=AUTH)
            assert early.status_code == 409 and "not registered" in early.json()["detail"]
            instance.add_dynamic_partitions("imagery_batches", [BATCH])
            response = client.post("/analysis-runs", json={"batch_id": BATCH}, headers=AUTH)
            assert response.status_code == 202, response.text
            run = instance.get_run_by_id(response.json()["run_id"])
            assert run.job_name == "process_imagery_batch"
            assert run.tags["dagster/partition"] == BATCH
            assert run.status == dg.DagsterRunStatus.QUEUED
            state = client.get(f"/imagery/{BATCH}", headers=AUTH).json()
            assert state["state"] == "queued"
            assert [r["run_id"] for r in state["runs"]] == [run.run_id]
    finally:
        instance.dispose()
