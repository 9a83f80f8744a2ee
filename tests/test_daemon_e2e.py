"""The production path, nothing called in-process: a real `dagster-daemon` (on the repo's
dagster.yaml over Postgres) loads workspace.yaml, its sensor notices an upload to SeaweedFS, the
queued run is launched through the code server and the report appears in the bucket. Then the
daemon's whole session is stopped and no process of it may survive."""

from __future__ import annotations

import os
import time

import dagster as dg
import pytest

from pipeline.sample import write_sample_batch
from tests.harness import configure_s3, load_definitions, object_store, upload_batch
from tests.pg import dagster_home, temporary_database
from tests.processes import dagster_daemon

pytestmark = pytest.mark.slow
SENSOR_INTERVAL_S = 5
REPORT_TIMEOUT_S = 100


def wait_for_objects(store, bucket: str, keys: set[str], *, timeout_s: float, service) -> float:
    """Poll until every key exists; returns the monotonic time they were first all seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(store.head(bucket, k) is not None for k in keys):
            return time.monotonic()
        if not service.alive():
            raise AssertionError(f"{service.name} exited:\n{service.tail()}")
        time.sleep(0.5)
    raise AssertionError(f"{sorted(keys)} did not appear in {bucket!r} within {timeout_s} s; "
                         f"daemon log tail:\n{service.tail()}")


def test_daemon__upload_becomes_report_without_any_call_into_dagster(tmp_path, monkeypatch, seaweed,
                                                                    seaweed_buckets):
    configure_s3(monkeypatch, seaweed, seaweed_buckets)
    monkeypatch.setenv("IMAGERY_SENSOR_INTERVAL_S", str(SENSOR_INTERVAL_S))
    with temporary_database() as pg, dagster_home(pg, tmp_path):
        definitions = load_definitions()
        store = object_store(definitions).store()
        with dagster_daemon(env=dict(os.environ), workdir=tmp_path / "daemon") as daemon:
            sample = write_sample_batch(tmp_path / "upload", batch_id="daemon-e2e", size=128)
            uploaded = time.monotonic()
            upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
            bid = sample.batch_id
            done = wait_for_objects(
                store, seaweed_buckets["report"],
                {f"{bid}/report.pdf", f"{bid}/summary.json", f"{bid}/distribution.json"},
                timeout_s=REPORT_TIMEOUT_S, service=daemon)
            latency = done - uploaded
            print(f"\nupload -> report through the daemon: {latency:.1f} s "
                  f"(sensor interval {SENSOR_INTERVAL_S} s)")
            with dg.DagsterInstance.get() as instance:
                runs = instance.get_runs(dg.RunsFilter(job_name="process_imagery_batch"))
                assert [r.tags.get("dagster/partition") for r in runs] == [bid]
                deadline = time.monotonic() + 30
                while (status := instance.get_run_by_id(runs[0].run_id).status) not in (
                        dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
                    assert time.monotonic() < deadline, status
                    time.sleep(0.5)
                assert status == dg.DagsterRunStatus.SUCCESS
                assert instance.get_dynamic_partitions("imagery_batches") == [bid]
            assert store.head(seaweed_buckets["heatmap"], f"{bid}/ndvi.tif") is not None
        assert daemon.proc.returncode is not None
        assert daemon.leftovers == [], f"processes left of the daemon's session: {daemon.leftovers}"
