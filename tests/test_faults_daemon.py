"""The daemon rows of the fault matrix (README "Reliability", rows 12-14), against a real
`dagster-daemon` process group (tests/processes.py) on Postgres and SeaweedFS.

The DAGSTER_HOME of each test holds the repository's dagster.yaml with faster timers only
(`fast_dagster_yaml`): run monitoring polls every 2 s instead of 30 s and gives a run 60 s to
start instead of 180 s, the queue is looked at every second, and row 14 lowers
max_concurrent_runs so that the limit is reached. Everything
else is what operators deploy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from rio_cogeo.cogeo import cog_validate

from pipeline.sample import write_sample_batch
from pipeline.core.errors import ConfigurationError
from resources.object_store import ObjectStoreResource
from tests.harness import configure_s3, load_definitions, object_store, upload_batch
from tests.pg import PgDatabase, dagster_home, temporary_database
from tests.processes import REPO, Service, dagster_daemon, session_members
from tests.servers import HOST, free_port

JOB = "process_imagery_batch"
RASTER_STEPS = ("vegetation_indices", "thermal_maps")
INDEX_NAMES = ["ndvi", "ndre", "gndvi", "savi", "evi", "vari", "ndwi"]  # the sample has no SWIR
S = dg.DagsterRunStatus


def fast_dagster_yaml(home: Path, *, max_concurrent_runs: int | None = None) -> dict:
    """The repository's dagster.yaml with faster timers: run monitoring polls every 2 s and fails
    a run stuck starting after 60 s (not 180 s), slots of ended runs are freed after 2 s, the run
    queue is looked at every second. Optionally a lower max_concurrent_runs, so that a burst
    reaches the limit. Nothing else changes."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    monitoring = config["run_monitoring"]
    monitoring["poll_interval_seconds"] = 2
    monitoring["start_timeout_seconds"] = 60
    if monitoring.get("free_slots_after_run_end_seconds"):
        monitoring["free_slots_after_run_end_seconds"] = 2
    config["run_coordinator"].setdefault("config", {})["dequeue_interval_seconds"] = 1
    if max_concurrent_runs is not None:
        config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def wait_until(condition, *, timeout_s: float, what: str, daemon: Service, interval_s: float = 0.5,
               explain=None):
    """Poll `condition()` until it returns something truthy; fail naming `what`, with `explain()`
    (when given) and the daemon's log tail."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if not daemon.alive():
            raise AssertionError(f"{daemon.name} exited while waiting for {what}:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s\n{explain() if explain else ''}"
                                 f"\ndaemon log tail:\n{daemon.tail()}")
        time.sleep(interval_s)


def explain_runs(instance, daemon: Service) -> str:
    """Every run of the job with its status and last events, and the daemon's error lines: what a
    failed wait needs to be understood."""
    lines = []
    for run in sorted(runs_of(instance), key=lambda r: r.run_id):
        lines.append(f"run {run.run_id[:8]} {run.tags.get('dagster/partition')} {run.status.value} "
                     f"retry={run.tags.get('dagster/retry_number')} parent={(run.parent_run_id or '')[:8]}")
        for record in list(instance.all_logs(run.run_id))[-12:]:
            kind = record.dagster_event.event_type_value if record.dagster_event else "log"
            lines.append(f"    {kind} {record.step_key or ''} {(record.message or '')[:300]!r}")
    log = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
    errors = [x for x in log.splitlines() if re.search(r"ERROR|Error|Exception|WARNING", x)]
    lines.append(f"daemon log: {len(errors)} error/warning lines, the last 40:")
    lines += errors[-40:]
    return "\n".join(lines)


def runs_of(instance, batch_id: str | None = None) -> list[dg.DagsterRun]:
    tags = {"dagster/partition": batch_id} if batch_id else None
    return list(instance.get_runs(dg.RunsFilter(job_name=JOB, tags=tags)))


def worker_pid(instance, run_id: str) -> int | None:
    """The run worker's pid, from the engine event the code server writes when it starts it."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if m := re.search(r"Started process for run \(pid: (\d+)\)", record.message or ""):
            return int(m.group(1))
    return None


def step_started(instance, run_id: str, step_key: str) -> bool:
    return any(r.step_key == step_key
               for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))


def expected_outputs(batch_id: str) -> tuple[set[str], set[str]]:
    heat = {f"{batch_id}/{n}{s}" for n in INDEX_NAMES for s in (".tif", "_heatmap.tif", "_heatmap.png")}
    heat |= {f"{batch_id}/thermal_c.tif", f"{batch_id}/thermal_heatmap.tif",
             f"{batch_id}/thermal_heatmap.png"}
    heat |= {f"{batch_id}/management_zones.{e}" for e in ("tif", "geojson", "shp.zip")}
    report = {f"{batch_id}/report.pdf", f"{batch_id}/summary.json", f"{batch_id}/distribution.json",
              f"{batch_id}/item.json"}
    return heat, report


def assert_outputs_exact_and_whole(store, buckets: dict[str, str], batch_ids: list[str],
                                   downloads: Path, *, validate: bool = True) -> None:
    """Each bucket holds exactly the DESIGN §3 objects of the batches, no pending multipart upload,
    and (with `validate`) every COG validates and summary.json parses."""
    want_heat = set().union(*(expected_outputs(b)[0] for b in batch_ids))
    want_report = set().union(*(expected_outputs(b)[1] for b in batch_ids))
    assert {o.key for o in store.list_objects(buckets["heatmap"])} == want_heat
    assert {o.key for o in store.list_objects(buckets["report"])} == want_report
    for role in ("heatmap", "report"):
        pending = store.client.list_multipart_uploads(Bucket=buckets[role]).get("Uploads", [])
        assert pending == [], f"unfinished multipart uploads left in {buckets[role]}: {pending}"
    if not validate:
        return
    for key in sorted(k for k in want_heat if k.endswith(".tif")):
        path = downloads / key
        store.download_file(buckets["heatmap"], key, path)
        assert cog_validate(str(path), quiet=True)[0], key
    for b in batch_ids:
        summary = json.loads(store.get_bytes(buckets["report"], f"{b}/summary.json"))
        assert summary["batch_id"] == b and set(summary["indices"]) == set(INDEX_NAMES)
        assert store.get_bytes(buckets["report"], f"{b}/report.pdf")[:5] == b"%PDF-"


@contextlib.contextmanager
def daemon_env(tmp_path: Path, monkeypatch, seaweed, buckets, database: PgDatabase, *,
               sensor_interval_s: int = 2, max_concurrent_runs: int | None = None):
    """DAGSTER_HOME on `database` with the fast config, the code location on SeaweedFS, and a
    running dagster-daemon; yields (daemon, instance, definitions)."""
    configure_s3(monkeypatch, seaweed, buckets)
    monkeypatch.setenv("IMAGERY_SENSOR_INTERVAL_S", str(sensor_interval_s))
    with dagster_home(database, tmp_path) as home:
        fast_dagster_yaml(home, max_concurrent_runs=max_concurrent_runs)
        definitions = load_definitions()
        with dagster_daemon(env=dict(os.environ), workdir=tmp_path / "daemon") as daemon, \
                dg.DagsterInstance.get() as instance:
            yield daemon, instance, definitions
        assert daemon.leftovers == [], f"processes left of the daemon's session: {daemon.leftovers}"


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
    with pytest.raises(ConfigurationError, match="IMAGERY_S3_MAX_ATTEMPTS") as info:
        ObjectStoreResource.from_env().store()
    assert info.value.setting == "IMAGERY_S3_MAX_ATTEMPTS"


@pytest.mark.slow
def test_worker_killed__run_failed_then_retried_to_one_complete_set_of_outputs(
        tmp_path, monkeypatch, seaweed, seaweed_buckets):
    """Row 12: the run worker is SIGKILLed inside a raster step. The code server sees its child
    die and marks the run failed (DefaultRunLauncher has no worker health check for run
    monitoring to call; monitoring frees the dead run's `raster` slot), run_retries launches a
    retry from the failure, and the buckets end with exactly one complete set of outputs."""
    with temporary_database() as database, daemon_env(tmp_path, monkeypatch, seaweed,
                                                      seaweed_buckets, database) as (daemon, instance,
                                                                                     definitions):
        sample = write_sample_batch(tmp_path / "upload", batch_id="killed-worker", size=1024)
        upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
        bid = sample.batch_id

        def first_run_in_raster_step():
            runs = runs_of(instance, bid)
            return (len(runs) == 1 and step_started(instance, runs[0].run_id, "vegetation_indices")
                    and runs[0])
        first = wait_until(first_run_in_raster_step, timeout_s=120, daemon=daemon, interval_s=0.2,
                           what="the run's vegetation_indices step to start")
        pid = worker_pid(instance, first.run_id)
        assert pid is not None and pid in session_members(daemon.proc.pid), pid
        assert b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
        os.kill(pid, signal.SIGKILL)

        failed = wait_until(lambda: (r := instance.get_run_by_id(first.run_id)).is_finished and r,
                            timeout_s=60, daemon=daemon, what="the killed run to be marked finished")
        assert failed.status == S.FAILURE
        assert not [r for r in instance.all_logs(first.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                    if r.step_key == "vegetation_indices"]  # killed inside the step, not after it
        messages = "\n".join(r.message or "" for r in instance.all_logs(first.run_id))
        assert "signal" in messages.lower() or "exit" in messages.lower(), messages[-2000:]

        def retry_finished():
            retries = [r for r in runs_of(instance, bid) if r.run_id != first.run_id]
            return retries and all(r.is_finished for r in retries) and retries
        retries = wait_until(retry_finished, timeout_s=180, daemon=daemon,
                             what="the automatic retry to finish")
        assert [(r.status, r.tags.get("dagster/retry_number"), r.parent_run_id) for r in retries] == [
            (S.SUCCESS, "1", first.run_id)]
        assert_outputs_exact_and_whole(object_store(definitions).store(), seaweed_buckets, [bid],
                                       tmp_path / "downloads")


def raster_step_intervals(instance, run_ids) -> list[tuple[float, float, str]]:
    """(start, end, run_id/step) of every raster step, from STEP_START and its end event."""
    intervals = []
    ends = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
    for run_id in run_ids:
        starts, stops = {}, {}
        for r in instance.all_logs(run_id):
            if r.step_key in RASTER_STEPS and r.dagster_event is not None:
                if r.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                    starts[r.step_key] = r.timestamp
                elif r.dagster_event.event_type in ends:
                    stops[r.step_key] = r.timestamp
        assert set(starts) == set(stops), (run_id, starts, stops)
        intervals += [(starts[k], stops[k], f"{run_id}/{k}") for k in starts]
    return sorted(intervals)


@pytest.mark.slow
def test_burst_of_30_batches__limits_hold_backlog_drains_nothing_starves(
        tmp_path, monkeypatch, seaweed, seaweed_buckets):
    """Row 14: 30 tiny batches uploaded at once. At every sample at most `limit` runs are
    starting or started, the limit is reached, no two raster steps of any runs overlap (pool
    `raster`, limit 1), and every batch ends with one successful run within the bound."""
    limit, count, bound_s = 3, 30, 600  # ~16 s a run on a busy 2-core machine
    with temporary_database() as database, daemon_env(tmp_path, monkeypatch, seaweed, seaweed_buckets,
                                                      database, max_concurrent_runs=limit) as (
            daemon, instance, definitions):
        batch_ids = [f"burst-{i:02d}" for i in range(count)]
        for bid in batch_ids:
            sample = write_sample_batch(tmp_path / "upload" / bid, batch_id=bid, size=64)
            upload_batch(definitions, sample.folder, bid, sample.files)
        t0 = time.monotonic()
        in_flight = dg.RunsFilter(job_name=JOB, statuses=[S.STARTING, S.STARTED])
        done = dg.RunsFilter(job_name=JOB, statuses=[S.SUCCESS, S.FAILURE, S.CANCELED])
        samples = []
        while instance.get_runs_count(done) < count:
            samples.append(instance.get_runs_count(in_flight))
            assert samples[-1] <= limit, f"{samples[-1]} runs in flight, limit {limit}"
            assert daemon.alive(), daemon.tail()
            assert time.monotonic() - t0 < bound_s, (
                f"{instance.get_runs_count(done)} of {count} done after {bound_s} s:\n{daemon.tail()}")
            time.sleep(0.25)
        drained_s = time.monotonic() - t0
        runs = runs_of(instance)
        print(f"\n{count} batches drained in {drained_s:.0f} s; peak {max(samples)} in flight "
              f"over {len(samples)} samples")
        assert max(samples) == limit  # the limit was reached, so holding it means something
        assert sorted(r.tags["dagster/partition"] for r in runs) == batch_ids  # one run each
        assert {r.status for r in runs} == {S.SUCCESS}

        intervals = raster_step_intervals(instance, [r.run_id for r in runs])
        assert len(intervals) == 2 * count
        for (_, end, a), (start, _, b) in zip(intervals, intervals[1:]):
            assert start >= end, f"raster steps overlap: {a} until {end}, {b} from {start}"

        # Nothing starves: the queue is served in order, up to the runs started in one dequeue.
        records = sorted(instance.get_run_records(dg.RunsFilter(job_name=JOB)),
                         key=lambda r: r.create_timestamp)
        start_rank = {r.dagster_run.run_id: i for i, r in enumerate(
            sorted(records, key=lambda r: r.start_time))}
        overtaken = [sum(start_rank[later.dagster_run.run_id] < start_rank[r.dagster_run.run_id]
                         for later in records[i + 1:]) for i, r in enumerate(records)]
        waits = [r.start_time - r.create_timestamp.timestamp() for r in records]
        print(f"longest queue wait {max(waits):.0f} s; most runs that overtook one: {max(overtaken)}")
        assert max(overtaken) <= limit
        assert_outputs_exact_and_whole(object_store(definitions).store(), seaweed_buckets, batch_ids,
                                       tmp_path / "downloads", validate=False)


@dataclass
class ThrowawayPostgres:
    """A private Postgres cluster (never the machine's shared server): initdb/pg_ctl as the
    `postgres` user, data and socket in a fresh /tmp folder, a free loopback port."""

    bin: Path
    root: Path
    database: PgDatabase

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D",
                        str(self.root / "data"), "-l", str(self.root / "log"), "-w", *args],
                       check=True, capture_output=True, timeout=60, cwd=self.root)

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "-o", f"-c listen_addresses={HOST} -p {self.database.port} "
                    f"-k {self.root}", "restart")

    def processes(self) -> list[int]:
        """The cluster's processes: postgres runs in its data directory (it rewrites its cmdline)."""
        data = str(self.root / "data")
        pids = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and os.readlink(entry / "cwd") == data:
                    pids.append(int(entry.name))
        return pids


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins or shutil.which("runuser") is None:
        pytest.skip("needs a Postgres server installation (/usr/lib/postgresql/*/bin) and runuser")
    root = Path(tempfile.mkdtemp(prefix="faults-pg-"))
    shutil.chown(root, "postgres")
    port = free_port()
    pg = ThrowawayPostgres(bin=bins[-1], root=root, database=PgDatabase(
        host=HOST, port=port, user="postgres", password="", db="dagster"))
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", str(pg.bin / "initdb"), "--no-sync", "-A",
                        "trust", "-U", "postgres", "-D", str(root / "data")],
                       check=True, capture_output=True, cwd=root)
        pg.pg_ctl("-o", f"-c listen_addresses={HOST} -p {port} -k {root}", "start")
        admin = psycopg2.connect(host=HOST, port=port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute('CREATE DATABASE "dagster"')
        admin.close()
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg.pg_ctl("-m", "immediate", "stop")
        for pid in pg.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def sensor_ticks(instance) -> list:
    from dagster._core.scheduler.instigation import InstigatorType

    (state,) = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                if s.instigator_name == "imagery_upload_sensor"]
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))


@pytest.mark.slow
def test_postgres_restarted__during_run_and_tick_daemon_recovers_no_duplicates_queue_kept(
        tmp_path, monkeypatch, seaweed, seaweed_buckets):
    """Row 13: Postgres restarted (fast shutdown: connections cut) while a run is in progress with
    others queued behind it, and again while the sensor ticks on new uploads. The daemon keeps
    going, the queued runs survive and run, and every batch has one run (plus automatic retries,
    if the restart failed one) ending in success."""
    from dagster._core.scheduler.instigation import TickStatus

    with throwaway_postgres() as pg:
        with daemon_env(tmp_path, monkeypatch, seaweed, seaweed_buckets, pg.database,
                        max_concurrent_runs=1) as (daemon, instance, definitions):
            first, later = [f"pg-restart-{i}" for i in range(3)], ["pg-restart-tick"]
            for bid in first:
                sample = write_sample_batch(tmp_path / "upload" / bid, batch_id=bid, size=64)
                upload_batch(definitions, sample.folder, bid, sample.files)

            def one_started_others_queued():
                runs = runs_of(instance)
                statuses = sorted(r.status.value for r in runs)
                return (len(runs) == 3 and statuses.count("STARTED") == 1
                        and statuses.count("QUEUED") == 2 and runs)
            before = wait_until(one_started_others_queued, timeout_s=90, daemon=daemon,
                                what="one run started and two queued")
            queued = {r.run_id for r in before if r.status == S.QUEUED}
            pg.restart()  # during a run, with two queued

            sample = write_sample_batch(tmp_path / "upload" / later[0], batch_id=later[0], size=64)
            upload_batch(definitions, sample.folder, later[0], sample.files)
            for _ in range(3):  # the sensor ticks every 2 s: restarts 1 s apart cut into ticks
                pg.restart()
                time.sleep(1.0)
            restarted = time.time()

            def all_batches_succeeded():
                runs = runs_of(instance)
                return all(any(r.status == S.SUCCESS for r in runs
                               if r.tags.get("dagster/partition") == b) for b in first + later) and runs
            runs = wait_until(all_batches_succeeded, timeout_s=240, daemon=daemon, interval_s=1,
                              what="a successful run for every batch",
                              explain=lambda: explain_runs(instance, daemon))

            originals = [r for r in runs if "dagster/retry_number" not in r.tags]
            assert sorted(r.tags["dagster/partition"] for r in originals) == sorted(first + later)
            assert len({r.tags["dagster/run_key"] for r in originals}) == len(originals)
            for r in runs:
                if "dagster/retry_number" in r.tags:
                    assert r.parent_run_id in {o.run_id for o in originals} | {x.run_id for x in runs}
            assert queued <= {r.run_id for r in originals}  # the queued runs themselves ran
            def ended_ticks_after_restarts():  # a tick still running is STARTED: not judged
                return [t for t in sensor_ticks(instance)
                        if t.timestamp > restarted and t.status != TickStatus.STARTED]
            wait_until(lambda: len(ended_ticks_after_restarts()) >= 3, timeout_s=30, daemon=daemon,
                       what="three sensor ticks ended after the restarts")
            after = ended_ticks_after_restarts()
            assert all(t.status in (TickStatus.SUCCESS, TickStatus.SKIPPED) for t in after), after
            print(f"\nall batches succeeded {time.time() - restarted:.0f} s after the last restart"
                  f"\nticks: {[t.status.value for t in sensor_ticks(instance)]}\n"
                  + explain_runs(instance, daemon))
        assert pg.processes() != []  # the cluster outlived the daemon, so it was the one in use
    assert pg.processes() == [], "throwaway Postgres processes left running"
