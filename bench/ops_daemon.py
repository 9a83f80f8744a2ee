"""Operations through the real daemon (dagster-daemon on Postgres + SeaweedFS, repo dagster.yaml):

1. upload → report latency of small batches, one at a time (the default sensor interval unless
   `--sensor-interval`), split into its phases from the run's record and events: sensor (upload
   done → run queued), dequeue (queued → launched, RUN_STARTING), worker_start (launched → the run
   worker started the run, RUN_START), run (→ success), poll (run end → distribution.json seen);
   before it, the CPU seconds the idle daemon's session (daemon + code server: sensor ticks, run
   queue polls) spends per minute with no uploads;
2. a backfill of 50 small batches (`dagster job backfill`, upload sensor stopped): runs per
   minute, peak RSS of the daemon's whole session (daemon, code server, run workers), and whether
   the `raster` pool limit (1) held: no two raster steps (vegetation_indices, thermal_maps) of any
   runs overlapped in time.

    .venv/bin/python -m bench.ops_daemon [--batches 50] [--size 128]   # ~10 min; JSON in bench/work
    .venv/bin/python -m bench.ops_daemon --batches 0 --latency-batches 5  # latency only, ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import psutil

from pipeline.sample import write_sample_batch
from tests.harness import load_definitions, object_store, upload_batch
from tests.pg import dagster_home, temporary_database
from tests.processes import BIN, REPO, dagster_daemon, session_members
from tests.servers import design_buckets, seaweedfs

WORK = Path(__file__).resolve().parent / "work"
RASTER_STEPS = {"vegetation_indices", "thermal_maps"}
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class PeakRss:
    """Samples the summed RSS of every process in a session every `interval_s`."""

    def __init__(self, sid: int, interval_s: float = 0.5) -> None:
        self.sid, self.interval_s, self.peak = sid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in session_members(self.sid):
                try:
                    total += psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _wait(store, bucket: str, key: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store.head(bucket, key) is not None:
            return time.monotonic()
        time.sleep(0.25)
    raise TimeoutError(f"{bucket}/{key} did not appear within {timeout_s} s")


def _cli(*args: str) -> None:
    subprocess.run([str(BIN / "dagster"), *args, "-w", str(REPO / "workspace.yaml")], check=True,
                   cwd=REPO, env=dict(os.environ), stdout=subprocess.DEVNULL)


def _raster_intervals(instance, run_ids: list[str]) -> list[tuple[float, float, str]]:
    intervals = []
    for run_id in run_ids:
        starts = {}
        for e in instance.all_logs(run_id):
            step = e.step_key
            if step not in RASTER_STEPS or not e.dagster_event:
                continue
            if e.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                starts[step] = e.timestamp
            elif e.dagster_event.event_type in (dg.DagsterEventType.STEP_SUCCESS,
                                                dg.DagsterEventType.STEP_FAILURE):
                intervals.append((starts.pop(step), e.timestamp, f"{run_id[:8]}:{step}"))
    return intervals


def _max_overlap(intervals: list[tuple[float, float, object]]) -> int:
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals],
                    key=lambda x: (x[0], x[1]))
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def _session_cpu(sid: int) -> dict[tuple[int, float], float]:
    """CPU seconds (user + system) of each live process of the session, keyed by (pid, start)."""
    cpu = {}
    for pid in session_members(sid):
        try:
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            cpu[(pid, proc.create_time())] = t.user + t.system
        except psutil.Error:
            continue
    return cpu


def _idle_cpu(sid: int, seconds: float) -> dict[str, float]:
    """CPU seconds per minute the session spends over `seconds`: processes alive at the end count
    their growth (all of it if they started in between); processes that ended in between are
    counted in `ended` (their CPU time is lost, so the figure is a lower bound when it is > 0)."""
    before, t0 = _session_cpu(sid), time.monotonic()
    time.sleep(seconds)
    after, elapsed = _session_cpu(sid), time.monotonic() - t0
    used = sum(v - before.get(k, 0.0) for k, v in after.items())
    return {"cpu_s_per_min": round(used / elapsed * 60, 2),
            "processes": len(after), "ended": len(set(before) - set(after))}


def _step_seconds(instance, record) -> dict[str, float]:
    """Each step's seconds (STEP_START → STEP_SUCCESS/FAILURE) of the run, longest first."""
    starts, seconds = {}, {}
    for e in instance.all_logs(record.dagster_run.run_id):
        if not e.dagster_event or not e.step_key:
            continue
        if e.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[e.step_key] = e.timestamp
        elif e.dagster_event.event_type in (dg.DagsterEventType.STEP_SUCCESS,
                                            dg.DagsterEventType.STEP_FAILURE):
            seconds[e.step_key] = e.timestamp - starts.pop(e.step_key)
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def _phases(instance, batch_id: str, uploaded: float, seen: float) -> dict[str, float]:
    """Seconds of each phase of the batch's run, from wall-clock times (`uploaded`, `seen`)."""
    deadline = time.monotonic() + 60
    while True:  # distribution.json is the last output; the run records its end just after
        [record] = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": batch_id}))
        if record.end_time is not None:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run of {batch_id} did not end within 60 s of its report")
        time.sleep(0.25)
    queued = record.create_timestamp.timestamp()
    [starting] = instance.all_logs(record.dagster_run.run_id,
                                   of_type=dg.DagsterEventType.RUN_STARTING)
    return {"sensor": round(queued - uploaded, 1),
            "dequeue": round(starting.timestamp - queued, 1),
            "worker_start": round(record.start_time - starting.timestamp, 1),
            "run": round(record.end_time - record.start_time, 1),
            "poll": round(seen - record.end_time, 1),
            "steps": {k: round(v, 1) for k, v in _step_seconds(instance, record).items()}}


def run(*, batches: int, size: int, latency_batches: int, sensor_interval_s: int | None,
        idle_s: float) -> dict:
    out: dict = {"size": size, "sensor_interval_s": sensor_interval_s,
                 "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp_name, seaweedfs(Path(tmp_name) / "weed") as server:
        tmp = Path(tmp_name)
        buckets = design_buckets(server)
        os.environ.update({
            "MINIO_ENDPOINT_URL": server.endpoint_url, "MINIO_ACCESS_KEY": server.access_key,
            "MINIO_SECRET_KEY": server.secret_key, "MINIO_REGION": server.region,
            "IMAGERY_BUCKET": buckets["imagery"], "HEATMAP_BUCKET": buckets["heatmap"],
            "REPORT_BUCKET": buckets["report"]})
        if sensor_interval_s is None:
            os.environ.pop("IMAGERY_SENSOR_INTERVAL_S", None)  # the default
        else:
            os.environ["IMAGERY_SENSOR_INTERVAL_S"] = str(sensor_interval_s)
        with temporary_database() as pg, dagster_home(pg, tmp):
            definitions = load_definitions()
            store = object_store(definitions).store()
            with dagster_daemon(env=dict(os.environ), workdir=tmp / "daemon") as daemon:
                time.sleep(idle_s)  # start-up: the code server loads, the first ticks run
                out["idle"] = _idle_cpu(daemon.proc.pid, idle_s)
                print(f"idle session: {out['idle']}", flush=True)
                latencies, phases = [], []
                for i in range(latency_batches):
                    sample = write_sample_batch(tmp / f"lat{i}", batch_id=f"latency-{i}", size=size)
                    t0 = time.monotonic()
                    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
                    uploaded_wall = time.time()
                    done = _wait(store, buckets["report"], f"{sample.batch_id}/distribution.json",
                                 180)
                    seen_wall = time.time()
                    latencies.append(round(done - t0, 1))
                    with dg.DagsterInstance.get() as instance:
                        phases.append(_phases(instance, sample.batch_id, uploaded_wall, seen_wall))
                    shown = {k: v for k, v in phases[-1].items() if k != "steps"}
                    print(f"upload -> report {sample.batch_id}: {latencies[-1]} s {shown} "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
                out["latency_s"] = latencies
                out["phases_s"] = phases
                out["load_average_after_latency"] = [round(x, 2) for x in os.getloadavg()]

                if batches:
                    # Backfill: the sensor is stopped so only the backfill launches runs.
                    _cli("sensor", "stop", "imagery_upload_sensor")
                    ids = [f"backfill-{i:03d}" for i in range(batches)]
                    template = write_sample_batch(tmp / "bf", batch_id=ids[0], size=size)
                    for bid in ids:
                        manifest = json.loads((template.folder / "manifest.json").read_text())
                        manifest["batch_id"] = bid
                        (template.folder / "manifest.json").write_text(json.dumps(manifest))
                        upload_batch(definitions, template.folder, bid, template.files)
                    with dg.DagsterInstance.get() as instance:
                        instance.add_dynamic_partitions("imagery_batches", ids)
                        with PeakRss(daemon.proc.pid) as rss:
                            t0 = time.monotonic()
                            _cli("job", "backfill", "-j", "process_imagery_batch", "--partitions",
                                 ",".join(ids), "--noprompt")
                            while True:
                                runs = [r for r in instance.get_runs(dg.RunsFilter(
                                    job_name="process_imagery_batch"))
                                    if r.tags.get("dagster/partition", "").startswith("backfill-")]
                                finished = [r for r in runs if r.status in DONE]
                                if len(finished) == batches:
                                    break
                                if time.monotonic() - t0 > 1500:
                                    raise TimeoutError(f"{len(finished)}/{batches} runs finished")
                                time.sleep(2)
                            seconds = time.monotonic() - t0
                        intervals = _raster_intervals(instance, [r.run_id for r in runs])
                        run_spans = []
                        for r in runs:
                            run_stats = instance.get_run_stats(r.run_id)
                            run_spans.append((run_stats.start_time, run_stats.end_time, r.run_id))
                    out["backfill"] = {
                        "batches": batches, "seconds": round(seconds, 1),
                        "runs_per_minute": round(batches / seconds * 60, 2),
                        "succeeded": sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs),
                        "peak_rss_mb": round(rss.peak / 2**20),
                        "max_concurrent_raster_steps": _max_overlap(intervals),
                        "raster_steps": len(intervals),
                        "max_concurrent_runs": _max_overlap(run_spans),
                    }
                    print(out["backfill"], flush=True)
        out["daemon_leftovers"] = daemon.leftovers
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--latency-batches", type=int, default=3)
    parser.add_argument("--sensor-interval", type=int, default=None,
                        help="IMAGERY_SENSOR_INTERVAL_S for the daemon (default: the settings')")
    parser.add_argument("--idle-seconds", type=float, default=60,
                        help="wait this long after start-up, then measure idle CPU this long")
    parser.add_argument("--results", type=Path, default=WORK / "ops_daemon.json")
    args = parser.parse_args()
    result = run(batches=args.batches, size=args.size, latency_batches=args.latency_batches,
                 sensor_interval_s=args.sensor_interval, idle_s=args.idle_seconds)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1))
    json.dump(result, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
