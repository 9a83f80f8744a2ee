"""Scale-out: the same batch on SeaweedFS run once on local threads and once on a real
`distributed` cluster (a scheduler and two `dask worker` processes started from the command line
on free loopback ports), each worker in its own mount namespace with a private /tmp: the workers
share no filesystem with the run worker (this process) or with each other, only the object store
(DESIGN.md §5). They read the inputs from S3 themselves; the outputs must be identical, the
scheduler must have seen the work, and both workers must have done some."""

from __future__ import annotations

import json
import os
import shutil

import dagster as dg
import numpy as np
import pytest
import rasterio

from pipeline.sample import write_sample_batch
from tests.harness import (
    configure_s3,
    failure_text,
    launch_requested_runs,
    load_definitions,
    object_store,
    sensor_tick,
    upload_batch,
)
from tests.processes import dask_cluster

pytestmark = pytest.mark.slow
RASTERS = ["ndvi.tif", "evi.tif", "thermal_c.tif"]


def _outputs(definitions, buckets: dict[str, str], bid: str, folder) -> tuple[dict, dict]:
    store = object_store(definitions).store()
    summary = json.loads(store.get_bytes(buckets["report"], f"{bid}/summary.json"))
    arrays = {}
    for name in RASTERS:
        path = folder / name
        store.download_file(buckets["heatmap"], f"{bid}/{name}", path)
        with rasterio.open(path) as ds:
            arrays[name] = (ds.read(1), ds.transform, ds.crs)
    return summary, arrays


def _scheduler_task_count(address: str) -> int:
    from distributed import Client

    def count(dask_scheduler) -> int:
        return sum(sum(p.state_counts.values()) for p in dask_scheduler.task_prefixes.values())

    with Client(address, timeout="20s") as client:
        return client.run_on_scheduler(count)


def _sees(address: str, path: str) -> dict[str, bool]:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        return client.run(os.path.exists, path)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="private /tmp per worker needs root and unshare(1)")
def test_scale_out__distributed_without_shared_disk_equals_threads(tmp_path, monkeypatch, seaweed,
                                                                   seaweed_buckets):
    configure_s3(monkeypatch, seaweed, seaweed_buckets)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    threads_defs = load_definitions()
    # 1100² on 1024² windows: 4 index windows, so both workers get some
    sample = write_sample_batch(tmp_path / "upload", batch_id="scale-out", size=1100)
    bid = sample.batch_id
    upload_batch(threads_defs, sample.folder, bid, sample.files)
    with dg.instance_for_test() as instance:
        (threads_run,) = launch_requested_runs(threads_defs, instance,
                                               sensor_tick(threads_defs, instance))
        assert threads_run.success, failure_text(threads_run)
        (tmp_path / "threads").mkdir()
        want_summary, want = _outputs(threads_defs, seaweed_buckets, bid, tmp_path / "threads")

        marker = tmp_path / "visible-only-to-the-run-worker"
        marker.write_text("x")
        with dask_cluster(workdir=tmp_path / "dask", nthreads=1, workers=2,
                          private_tmp=True) as cluster:
            # the workers see neither this process's /tmp nor each other's
            assert set(_sees(cluster.address, str(marker)).values()) == {False}
            monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)
            cluster_defs = load_definitions()
            before = _scheduler_task_count(cluster.address)
            from distributed import Client, get_task_stream

            with Client(cluster.address, timeout="20s") as watcher, \
                    get_task_stream(watcher) as stream:
                run = cluster_defs.resolve_job_def("process_imagery_batch").execute_in_process(
                    instance=instance, partition_key=bid, raise_on_error=False)
            assert run.success, failure_text(run)
            tasks = _scheduler_task_count(cluster.address) - before
            per_worker = {w: sum(t["worker"] == w for t in stream.data)
                          for w in {t["worker"] for t in stream.data}}
            messages = [e.message for e in instance.all_logs(run.run_id) if e.message]
        assert all(w.leftovers == [] for w in cluster.workers)
        assert cluster.scheduler.leftovers == []

    assert tasks > 10, f"the scheduler saw {tasks} task(s): the work did not run on the cluster"
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    assert any(f"on distributed {cluster.address} (2 workers)" in m for m in messages), messages
    assert any("windows in" in m and "MP/s" in m for m in messages), messages  # progress lines
    (tmp_path / "cluster").mkdir()
    got_summary, got = _outputs(cluster_defs, seaweed_buckets, bid, tmp_path / "cluster")
    for name in RASTERS:
        np.testing.assert_array_equal(got[name][0], want[name][0], err_msg=name)
        assert got[name][1:] == want[name][1:], name
    for key in ("grid", "indices", "thermal", "zones"):
        assert got_summary[key] == want_summary[key], key
