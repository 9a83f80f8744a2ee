"""The fault and bad-input matrix (README "Reliability"), on a real S3 server (SeaweedFS) and a
Postgres-backed Dagster instance, with faults injected by a loopback proxy in front of SeaweedFS.

Every test also holds the invariants where they apply: uploads are never modified, nothing is
published for a refused batch, and a failure says which file and how to fix it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import psutil
import pytest

from pipeline.core.errors import ManifestError, StorageUnavailable
from pipeline.core.manifest import parse_manifest
from pipeline.core.mosaic import ImageSource, open_header
from pipeline.sample import write_sample_batch
from pipeline.storage import (
    AccessDenied,
    BucketNotFound,
    ObjectStoreError,
    S3ObjectStore,
    TransientStoreError,
)
from tests import bad_inputs
from tests.harness import (
    configure_s3,
    failure_text,
    launch_requested_runs,
    load_definitions,
    object_store,
    sensor_tick,
)
from tests.pg import dagster_home
from tests.rasters import write_raster
from tests.servers import HOST, design_buckets, fault_proxy

SIZE = 64  # sample batches: 64 × 64 optical pixels keep a whole run to a few seconds


@dataclass
class Env:
    """A code location wired to SeaweedFS (optionally through a proxy) and a Postgres instance."""

    definitions: dg.Definitions
    instance: dg.DagsterInstance
    buckets: dict[str, str]
    tmp: Path

    @property
    def store(self):
        return object_store(self.definitions).store()

    def upload(self, batch_id: str, folder: Path, names) -> None:
        """Like an uploader: every file, then manifest.json last."""
        ordered = [n for n in names if n != "manifest.json"] + (
            ["manifest.json"] if "manifest.json" in names else [])
        for name in ordered:
            self.store.upload_file(self.buckets["imagery"], f"{batch_id}/{name}", folder / name)

    def tick_and_run(self, cursor=None, *, assets=None):
        tick = sensor_tick(self.definitions, self.instance, cursor)
        return tick, launch_requested_runs(self.definitions, self.instance, tick, assets=assets)

    def keys(self, role: str, batch_id: str) -> set[str]:
        return {o.key for o in self.store.list_objects(self.buckets[role], prefix=f"{batch_id}/")}

    def uploads(self) -> dict[str, str]:
        return {o.key: o.etag for o in self.store.list_objects(self.buckets["imagery"])}


@contextlib.contextmanager
def _env(pg, root: Path, monkeypatch, server, buckets, *, endpoint: str | None = None) -> Iterator[Env]:
    with dagster_home(pg, root):
        configure_s3(monkeypatch, server, buckets)
        if endpoint:
            monkeypatch.setenv("MINIO_ENDPOINT_URL", endpoint)
        with dg.DagsterInstance.get() as instance:
            yield Env(load_definitions(), instance, buckets, root)


@pytest.fixture
def env(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets) -> Iterator[Env]:
    with _env(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets) as e:
        yield e


def sample(env: Env, batch_id: str, **kw):
    s = write_sample_batch(env.tmp / batch_id, batch_id=batch_id, size=kw.pop("size", SIZE), **kw)
    return s


def edit_manifest(folder: Path, **changes) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def not_retried(run: dg.ExecuteInProcessResult) -> bool:
    """The step failed with dg.Failure(allow_retries=False): bad input, not the weather."""
    failures = run.get_step_failure_events()
    return bool(failures) and all(f.step_failure_data.user_failure_data is not None for f in failures)


def retriable(run: dg.ExecuteInProcessResult) -> bool:
    """The step failed with an ordinary exception, which the RetryPolicy / run retries retry."""
    failures = run.get_step_failure_events()
    return bool(failures) and all(f.step_failure_data.user_failure_data is None for f in failures)


@contextlib.contextmanager
def counting_http_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request path (a URL must never be called)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_HEAD = do_GET

    httpd = HTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


# == row 1: a poison pill among good batches =====================================================
@pytest.mark.slow  # > 30 s: whole runs, or the retry policy's backoff
def test_poison_pill__good_batches_run_bad_one_refused_with_reason_cursor_advances(env, capfd):
    good = [sample(env, "pill-good-a"), sample(env, "pill-good-b")]
    for s in good:
        env.upload(s.batch_id, s.folder, s.files)
    bad = env.tmp / "pill-bad"
    bad.mkdir()
    (bad / "manifest.json").write_bytes(b'{"schema_version": 1, "batch_id": "pill-bad", "ima')
    env.upload("pill-bad", bad, ["manifest.json"])
    (env.tmp / "undecodable").mkdir()
    (env.tmp / "undecodable" / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    env.upload("pill-undecodable", env.tmp / "undecodable", ["manifest.json"])
    before = env.uploads()

    tick, runs = env.tick_and_run()
    by_batch = {r.dagster_run.tags["dagster/partition"]: r for r in runs}
    assert sorted(by_batch) == ["pill-bad", "pill-good-a", "pill-good-b", "pill-undecodable"]
    for s in good:
        assert by_batch[s.batch_id].success, failure_text(by_batch[s.batch_id])
        assert f"{s.batch_id}/summary.json" in env.keys("report", s.batch_id)
    for batch_id in ("pill-bad", "pill-undecodable"):
        run = by_batch[batch_id]
        assert not run.success and not_retried(run)
        assert f"{batch_id}/manifest.json: is not valid JSON" in failure_text(run)
        assert env.keys("heatmap", batch_id) == set() and env.keys("report", batch_id) == set()
        logged = [e.message for e in env.instance.all_logs(run.run_id) if e.message]
        assert any("refused" in m and "is not valid JSON" in m for m in logged)
    # the cursor advanced past every batch, the poison pill included: nothing is requested again
    again = sensor_tick(env.definitions, env.instance, tick.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []
    # invariant: the pipeline never modified or deleted an upload, in good runs or failing ones
    assert env.uploads() == before


# == row 2: the same manifest twice, a replayed tick, a re-upload ================================
def test_sensor_replay__one_partition_one_run_reupload_runs_again(env):
    s = sample(env, "replay-1")
    env.upload(s.batch_id, s.folder, s.files)
    first = sensor_tick(env.definitions, env.instance)
    assert [k for r in first.dynamic_partitions_requests for k in r.partition_keys] == ["replay-1"]
    assert len(first.run_requests) == 1
    env.upload(s.batch_id, s.folder, ["manifest.json"])  # the same bytes again: the same ETag
    assert sensor_tick(env.definitions, env.instance, first.cursor).run_requests == []
    replay = sensor_tick(env.definitions, env.instance, None)  # a tick replayed from scratch
    assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]
    edit_manifest(s.folder, platform="re-uploaded")
    env.upload(s.batch_id, s.folder, ["manifest.json"])
    second = sensor_tick(env.definitions, env.instance, first.cursor)
    assert second.dynamic_partitions_requests == []
    (request,) = second.run_requests
    assert request.partition_key == "replay-1" and request.run_key != first.run_requests[0].run_key
    assert sensor_tick(env.definitions, env.instance, second.cursor).run_requests == []


# == row 3: images without a manifest; an abandoned multipart upload =============================
def test_incomplete_upload__no_manifest_or_abandoned_multipart_runs_nothing(env, seaweed):
    s = sample(env, "no-manifest")
    env.upload(s.batch_id, s.folder, [f for f in s.files if f != "manifest.json"])
    t = sample(env, "abandoned")
    env.upload(t.batch_id, t.folder, [f for f in t.files if f != "manifest.json"])
    client = seaweed.client()
    upload = client.create_multipart_upload(Bucket=env.buckets["imagery"], Key="abandoned/manifest.json")
    client.upload_part(Bucket=env.buckets["imagery"], Key="abandoned/manifest.json", PartNumber=1,
                       UploadId=upload["UploadId"], Body=(t.folder / "manifest.json").read_bytes())
    tick = sensor_tick(env.definitions, env.instance)
    assert tick.run_requests == [] and tick.dynamic_partitions_requests == []
    assert env.store.head(env.buckets["imagery"], "abandoned/manifest.json") is None
    assert "abandoned" not in env.instance.get_dynamic_partitions("imagery_batches")


# == row 4: over 1,000 prefixes; keys with spaces, '+', unicode, '//' ==========================
ODD_NAMES = ["ortho a.tif", "ortho+b.tif", "épreuve-東京.tif"]


def test_many_and_odd_keys__nothing_skipped_nothing_twice(env, seaweed):
    client = seaweed.client()
    bucket = env.buckets["imagery"]
    batches = [f"many-{i:04d}" for i in range(1005)]
    body = lambda b: json.dumps({"schema_version": 1, "batch_id": b,  # noqa: E731
                                 "images": [{"path": "a.tif"}]}).encode()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda b: client.put_object(Bucket=bucket, Key=f"{b}/manifest.json",
                                                  Body=body(b)), batches))
    client.put_object(Bucket=bucket, Key="slashes//manifest.json", Body=body("slashes"))
    # a batch whose images have odd names: found once, and its images open through GDAL
    folder = env.tmp / "odd-names"
    folder.mkdir()
    for i, name in enumerate(ODD_NAMES):
        bad_inputs.good_ortho(folder / name, seed=i, shift_m=i * 4.0)
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "batch_id": "odd-names", "reflectance_scale": 0.0001,
        "images": [{"path": n, "bands": bad_inputs.GOOD_BANDS} for n in ODD_NAMES]}))
    env.upload("odd-names", folder, [*ODD_NAMES, "manifest.json"])

    tick = sensor_tick(env.definitions, env.instance)
    requested = [r.partition_key for r in tick.run_requests]
    assert len(requested) == len(set(requested))  # nothing twice
    assert sorted(requested) == sorted([*batches, "slashes", "odd-names"])  # nothing skipped
    assert sensor_tick(env.definitions, env.instance, tick.cursor).run_requests == []
    odd = dg.SensorResult(run_requests=[r for r in tick.run_requests if r.partition_key == "odd-names"],
                          dynamic_partitions_requests=tick.dynamic_partitions_requests)
    (run,) = launch_requested_runs(env.definitions, env.instance, odd, assets=["imagery_batch"])
    assert run.success, failure_text(run)
    assert run.asset_materializations_for_node("imagery_batch")[0].metadata["image_count"].value == 3


# == row 5: batch ids that must never become partitions ==========================================
BAD_IDS = ["", ",", "a,b", "..", "a..b", "new\nline", "x" * 300, "space id", "-dash"]


def test_bad_batch_ids__refused_with_reason_never_a_partition(env, seaweed, capfd):
    client = seaweed.client()
    bucket = env.buckets["imagery"]
    stored = []
    for bad in BAD_IDS:
        key = f"{bad}/manifest.json"
        body = json.dumps({"schema_version": 1, "batch_id": bad, "images": [{"path": "a.tif"}]})
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body.encode())
            stored.append(bad)
        except Exception:  # noqa: BLE001 - a key the server itself refuses cannot become a batch
            continue
        with pytest.raises(ManifestError, match="batch_id"):
            parse_manifest(body.encode(), name=key, batch_id=bad)
    assert "a,b" in stored and "x" * 300 in stored  # the server did take the interesting ones
    s = sample(env, "ids-good")
    env.upload(s.batch_id, s.folder, s.files)
    capfd.readouterr()
    tick = sensor_tick(env.definitions, env.instance)
    assert [r.partition_key for r in tick.run_requests] == ["ids-good"]
    launch_requested_runs(env.definitions, env.instance,
                          dg.SensorResult(dynamic_partitions_requests=tick.dynamic_partitions_requests))
    assert env.instance.get_dynamic_partitions("imagery_batches").count("ids-good") == 1
    assert not set(env.instance.get_dynamic_partitions("imagery_batches")) & set(BAD_IDS)
    logged = capfd.readouterr().err
    assert logged.count("Refused upload prefix") >= len(stored) - 1  # '..'-style keys may fold
    for reason in ("contains '..'", "must start with a letter or digit", "300 characters long"):
        assert reason in logged
    again = sensor_tick(env.definitions, env.instance, tick.cursor)
    assert again.run_requests == [] and "Refused" not in capfd.readouterr().err


# == rows 6 and 8: bad files fail the batch at validation, nothing is published =================
def _bad_file_batch(env: Env, case: bad_inputs.BadFile) -> tuple[str, list[str]]:
    batch_id = f"bad-{case.case.replace('_', '-')}"
    folder = env.tmp / batch_id
    folder.mkdir()
    images = []
    if case.with_good_tiles:
        for name, shift in (("good_a.tif", 0.0), ("good_b.tif", 8.0)):
            bad_inputs.good_ortho(folder / name, shift_m=shift)
            images.append({"path": name, "bands": bad_inputs.GOOD_BANDS})
    case.write(folder / "bad.tif")
    images.append({"path": "bad.tif", "bands": list(case.bands)})
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "batch_id": batch_id, "reflectance_scale": 0.0001, "images": images}))
    names = [i["path"] for i in images] + ["manifest.json"]
    env.upload(batch_id, folder, names)
    return batch_id, names


@pytest.mark.parametrize("case", bad_inputs.BAD_FILES, ids=lambda c: c.case)
def test_bad_file__batch_fails_naming_file_and_fix_nothing_published(env, case):
    batch_id, _ = _bad_file_batch(env, case)
    before = env.uploads()
    _, (run,) = env.tick_and_run()
    assert not run.success
    text = failure_text(run)
    assert "bad.tif" in text, text
    for words in case.expect:
        assert words in text, (words, text)
    assert not_retried(run)
    assert env.keys("heatmap", batch_id) == set()  # no heatmap
    assert env.keys("report", batch_id) == set()  # no report
    assert env.uploads() == before


def test_decompression_bomb__refused_by_size_limit_before_allocation(env):
    bomb = bad_inputs.BadFile("bomb", bad_inputs.decompression_bomb,
                              ("declares 200000 x 200000 pixels", "above the limit"), bands=("nir",))
    batch_id, _ = _bad_file_batch(env, bomb)
    assert (env.tmp / batch_id / "bad.tif").stat().st_size < 1_000_000
    rss = psutil.Process()
    peak_before = rss.memory_info().rss
    started = time.monotonic()
    _, (run,) = env.tick_and_run()
    assert not run.success and not_retried(run)
    text = failure_text(run)
    assert "bad.tif: declares 200000 x 200000 pixels, above the limit of 2,000,000,000" in text
    assert time.monotonic() - started < 30
    assert rss.memory_info().rss - peak_before < 300 * 1024 * 1024  # 40 GB never allocated
    assert env.keys("heatmap", batch_id) == set() and env.keys("report", batch_id) == set()


def test_size_limit__is_configurable(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets):
    monkeypatch.setenv("IMAGERY_MAX_PIXELS", "1000")
    with _env(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets) as env:
        s = sample(env, "small-limit")
        env.upload(s.batch_id, s.folder, s.files)
        _, (run,) = env.tick_and_run(assets=["imagery_batch"])
        assert not run.success and not_retried(run)
        assert "above the limit of 1,000 pixels" in failure_text(run)


# == row 7: checksums =============================================================================
def test_sha256_mismatch__refused_nothing_published(env):
    s = sample(env, "sum-bad")
    manifest = json.loads((s.folder / "manifest.json").read_text())
    manifest["images"][1]["sha256"] = hashlib.sha256(b"something else").hexdigest()
    (s.folder / "manifest.json").write_text(json.dumps(manifest))
    env.upload(s.batch_id, s.folder, s.files)
    _, (run,) = env.tick_and_run()
    assert not run.success and not_retried(run)
    assert "ortho_east.tif: sha256 is" in failure_text(run)
    assert env.keys("heatmap", s.batch_id) == set() and env.keys("report", s.batch_id) == set()


def test_corrupted_upload_body__store_refuses_nothing_at_the_final_key(seaweed, seaweed_buckets, tmp_path):
    """The pipeline's own uploads carry a checksum the server verifies: a byte flipped on the
    wire makes the PUT fail, and the key never holds the corrupted bytes."""
    bucket = seaweed_buckets["heatmap"]
    data = bytes(range(256)) * 4096
    (tmp_path / "f.tif").write_bytes(data)
    with fault_proxy(seaweed.endpoint_url) as proxy:
        proxy.rule = lambda method, path, headers: "flip" if method == "PUT" else None
        store = S3ObjectStore(endpoint_url=proxy.endpoint_url, access_key=seaweed.access_key,
                              secret_key=seaweed.secret_key, max_attempts=2)
        for call in (lambda: store.put_bytes(bucket, "b/p.tif", data),
                     lambda: store.upload_file(bucket, "b/u.tif", tmp_path / "f.tif")):
            with pytest.raises(ObjectStoreError):
                call()
        puts = [s for s in proxy.seen if s[0] == "PUT"]
        assert puts and all(s[3] == "flip" for s in puts)
    direct = S3ObjectStore(endpoint_url=seaweed.endpoint_url, access_key=seaweed.access_key,
                           secret_key=seaweed.secret_key)
    assert direct.head(bucket, "b/p.tif") is None and direct.head(bucket, "b/u.tif") is None


@pytest.mark.slow  # > 30 s: whole runs, or the retry policy's backoff
def test_corrupted_publish__run_fails_and_no_output_is_visible(pg, tmp_path, monkeypatch, seaweed,
                                                               seaweed_buckets):
    with fault_proxy(seaweed.endpoint_url) as proxy, \
            _env(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets,
                 endpoint=proxy.endpoint_url) as env:
        s = sample(env, "flip-publish")
        env.upload(s.batch_id, s.folder, s.files)
        proxy.rule = lambda method, path, headers: (
            "flip" if method == "PUT" and seaweed_buckets["heatmap"] in path else None)
        _, (run,) = env.tick_and_run()
        assert not run.success
        proxy.rule = lambda m, p, h: None
        assert env.keys("heatmap", s.batch_id) == set()
        assert env.keys("report", s.batch_id) == set()


# == row 9: manifest paths that escape the prefix ================================================
def test_escaping_paths__refused_and_no_url_called(env):
    with counting_http_server() as (url, hits):
        escapes = {"esc-dotdot": "../other/ortho.tif", "esc-abs": "/etc/passwd",
                   "esc-url": f"{url}/ortho.tif", "esc-s3": "s3://other-bucket/ortho.tif",
                   "esc-vsi": f"/vsicurl/{url}/ortho.tif", "esc-zones": None}
        for batch_id, path in escapes.items():
            folder = env.tmp / batch_id
            folder.mkdir()
            bad_inputs.good_ortho(folder / "ortho.tif")
            manifest = {"schema_version": 1, "batch_id": batch_id,
                        "images": [{"path": path or "ortho.tif", "bands": bad_inputs.GOOD_BANDS}]}
            if path is None:
                manifest["zones"] = f"{url}/zones.geojson"
            (folder / "manifest.json").write_text(json.dumps(manifest))
            env.upload(batch_id, folder, ["ortho.tif", "manifest.json"])
        _, runs = env.tick_and_run(assets=["imagery_batch"])
        assert len(runs) == len(escapes)
        for run in runs:
            assert not run.success and not_retried(run)
            text = failure_text(run)
            assert "manifest.json" in text and ("absolute or a URL" in text or "'..'" in text), text
        assert hits == []


# == row 10: the store down, SlowDown, read timeouts =============================================
@pytest.mark.slow  # > 30 s: whole runs, or the retry policy's backoff
def test_store_faults__retried_bounded_clean_failure_then_success(pg, tmp_path, monkeypatch, seaweed,
                                                                  seaweed_buckets):
    with fault_proxy(seaweed.endpoint_url) as proxy, \
            _env(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets,
                 endpoint=proxy.endpoint_url) as env:
        s = sample(env, "flaky")
        env.upload(s.batch_id, s.folder, s.files)
        # the sensor's listing: two SlowDowns are retried with backoff and the tick succeeds
        failures = iter(range(2))
        proxy.rule = lambda m, p, h: "503" if next(failures, None) is not None else None
        assert [r.partition_key for r in sensor_tick(env.definitions, env.instance).run_requests] == ["flaky"]
        # store down: the tick fails cleanly in bounded time, and its cursor is not advanced
        proxy.rule = lambda m, p, h: "503"
        started = time.monotonic()
        with pytest.raises(TransientStoreError, match="still failing after retries") as err:
            sensor_tick(env.definitions, env.instance)
        assert time.monotonic() - started < 30 and seaweed.secret_key not in str(err.value)
        proxy.rule = lambda m, p, h: None
        tick = sensor_tick(env.definitions, env.instance)
        launch_requested_runs(env.definitions, env.instance,
                              dg.SensorResult(dynamic_partitions_requests=tick.dynamic_partitions_requests))
        job = env.definitions.resolve_job_def("process_imagery_batch")

        def run_validation():
            return job.execute_in_process(instance=env.instance, partition_key="flaky",
                                          asset_selection=[dg.AssetKey("imagery_batch")],
                                          raise_on_error=False)

        # imagery_batch's own reads (HEAD/GET through boto3): a retriable failure, in bounded time
        proxy.rule = lambda m, p, h: "503"
        started = time.monotonic()
        run = run_validation()
        assert not run.success and retriable(run)
        assert "TransientStoreError" in failure_text(run) and time.monotonic() - started < 60
        # GDAL's range reads of the images: a store that keeps answering 503 is not blamed on
        # the uploader (StorageUnavailable, not UnreadableImage), in bounded time ...
        proxy.rule = lambda m, p, h: "503" if "range" in h else None
        source = ImageSource(name="ortho_west.tif", bands=(), gdal_options=env.store.gdal_options(),
                             path=env.store.gdal_path(env.buckets["imagery"], "flaky/ortho_west.tif"))
        env.store.invalidate(env.buckets["imagery"], "flaky/ortho_west.tif")
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="ortho_west.tif: the object store did not serve"):
            open_header(source)
        assert time.monotonic() - started < 60
        # ... and a few 503s on range reads are absorbed by GDAL's retries and the step's
        proxy.seen.clear()
        ranged_failures = iter(range(6))
        proxy.rule = lambda m, p, h: ("503" if "range" in h and next(ranged_failures, None) is not None
                                      else None)
        run = run_validation()
        assert run.success, failure_text(run)
        assert sum(1 for s in proxy.seen if s[3] == "503" and s[2]) == 6
        # the weather clears: the retry succeeds
        proxy.rule = lambda m, p, h: None
        run = run_validation()
        assert run.success, failure_text(run)


# == row 11: wrong credentials, a missing bucket ================================================
def test_wrong_credentials_and_missing_bucket__clear_non_retried_failure(pg, tmp_path, monkeypatch,
                                                                        seaweed, seaweed_buckets, capfd):
    with _env(pg, tmp_path, monkeypatch, seaweed, seaweed_buckets) as env:
        s = sample(env, "creds")
        env.upload(s.batch_id, s.folder, s.files)
        tick = sensor_tick(env.definitions, env.instance)
    wrong = "Wrong-Secret-" + "z" * 27
    monkeypatch.setenv("MINIO_SECRET_KEY", wrong)
    definitions = load_definitions()
    with dagster_home(pg, tmp_path / "h2"), dg.DagsterInstance.get() as instance:
        with pytest.raises(AccessDenied, match="MINIO_ACCESS_KEY / MINIO_SECRET_KEY") as err:
            sensor_tick(definitions, instance)
        assert wrong not in str(err.value)
        (run,) = launch_requested_runs(definitions, instance, tick, assets=["imagery_batch"])
        assert not run.success and not_retried(run)
        assert "access denied" in failure_text(run) and wrong not in failure_text(run)
    monkeypatch.setenv("MINIO_SECRET_KEY", seaweed.secret_key)
    monkeypatch.setenv("IMAGERY_BUCKET", "no-such-bucket-" + seaweed_buckets["imagery"][-12:])
    definitions = load_definitions()
    with dagster_home(pg, tmp_path / "h3"), dg.DagsterInstance.get() as instance:
        with pytest.raises(BucketNotFound, match="does not exist"):
            sensor_tick(definitions, instance)
        (run,) = launch_requested_runs(definitions, instance, tick, assets=["imagery_batch"])
        assert not run.success and not_retried(run)
        assert "does not exist" in failure_text(run)
    assert wrong not in capfd.readouterr().err


# == row 15: overwrite then read in one process ================================================
def _constant_ortho(path: Path, *, nir: float, red: float) -> None:
    data = np.stack([np.full((SIZE, SIZE), v, dtype="float32")
                     for v in (0.05, 0.08, red, 0.2, nir)])
    write_raster(path, data, transform=bad_inputs.transform(), tiled=True, blocksize=16)


def test_overwrite_then_read__same_process_reads_the_new_bytes(env):
    folder = env.tmp / "overwrite"
    folder.mkdir()
    ndvi_means = []
    for nir, red, captured in ((0.5, 0.1, "2026-06-14T10:00:00Z"), (0.3, 0.1, "2026-06-15T10:00:00Z")):
        _constant_ortho(folder / "ortho.tif", nir=nir, red=red)
        (folder / "manifest.json").write_text(json.dumps({
            "schema_version": 1, "batch_id": "overwrite", "captured_at": captured,
            "images": [{"path": "ortho.tif", "bands": bad_inputs.GOOD_BANDS}]}))
        env.upload("overwrite", folder, ["ortho.tif", "manifest.json"])
        _, (run,) = env.tick_and_run(assets=["imagery_batch", "index_rasters", "index_heatmaps",
                                             "index_statistics"])
        assert run.success, failure_text(run)
        (stats,) = [m for m in run.get_asset_materialization_events()
                    if m.asset_key == dg.AssetKey("index_statistics")]
        ndvi_means.append(stats.materialization.metadata["ndvi_mean"].value)
    assert ndvi_means[0] == pytest.approx(0.4 / 0.6, rel=1e-5)
    assert ndvi_means[1] == pytest.approx(0.2 / 0.4, rel=1e-5)


# == invariant: a failed batch, reprocessed, ends exactly like a clean first run ================
def _outputs(env: Env, batch_id: str) -> dict[str, bytes]:
    out = {}
    for role in ("heatmap", "report"):
        for key in sorted(env.keys(role, batch_id)):
            out[f"{role}:{key}"] = env.store.get_bytes(env.buckets[role], key)
    return out


def _comparable_summary(data: bytes, buckets: dict[str, str]) -> dict:
    summary = json.loads(data)
    summary.pop("generated_at")
    text = json.dumps(summary)
    for role, name in buckets.items():
        text = text.replace(name, f"<{role}>")
    return json.loads(text)


@pytest.mark.slow  # > 30 s: whole runs, or the retry policy's backoff
def test_reprocess__failed_batch_reuploaded_ends_like_a_clean_first_run(pg, tmp_path, monkeypatch,
                                                                        seaweed, seaweed_buckets):
    with _env(pg, tmp_path / "clean", monkeypatch, seaweed, design_buckets(seaweed)) as clean:
        s = write_sample_batch(tmp_path / "src", batch_id="reprocess-1", size=SIZE)
        clean.upload(s.batch_id, s.folder, s.files)
        _, (run,) = clean.tick_and_run()
        assert run.success, failure_text(run)
        want = _outputs(clean, s.batch_id)
        want_buckets = clean.buckets
    with _env(pg, tmp_path / "failing", monkeypatch, seaweed, seaweed_buckets) as env:
        good_east = (s.folder / "ortho_east.tif").read_bytes()
        bad_folder = tmp_path / "bad"
        bad_folder.mkdir()
        (bad_folder / "ortho_east.tif").write_bytes(good_east[: len(good_east) // 2])  # cut short
        env.upload(s.batch_id, s.folder, [f for f in s.files if f not in ("ortho_east.tif", "manifest.json")])
        env.upload(s.batch_id, bad_folder, ["ortho_east.tif"])
        env.upload(s.batch_id, s.folder, ["manifest.json"])
        tick, (failed,) = env.tick_and_run()
        assert not failed.success and "ortho_east.tif: sha256 is" in failure_text(failed)
        # the uploader fixes the file and re-uploads the manifest (new bytes, new ETag)
        env.upload(s.batch_id, s.folder, ["ortho_east.tif"])
        edit_manifest(s.folder, platform="Synthetic quadcopter ")
        env.upload(s.batch_id, s.folder, ["manifest.json"])
        _, (rerun,) = env.tick_and_run(tick.cursor)
        assert rerun.success, failure_text(rerun)
        got = _outputs(env, s.batch_id)
    assert set(got) == set(want)  # the same objects
    for key in want:
        if key.endswith("summary.json"):
            assert _comparable_summary(got[key], env.buckets) == _comparable_summary(want[key], want_buckets)
        elif key.endswith((".tif", ".png")):
            assert hashlib.sha256(got[key]).digest() == hashlib.sha256(want[key]).digest(), key


# == invariant: no credential in logs, run metadata, stored values, reports ====================
def test_credentials__never_in_logs_metadata_storage_or_reports(pg, env, seaweed, capfd):
    secret = seaweed.secret_key
    s = sample(env, "no-secrets")
    env.upload(s.batch_id, s.folder, s.files)
    bad_id, _ = _bad_file_batch(env, bad_inputs.BAD_FILES[1])
    _, runs = env.tick_and_run()
    assert sorted(r.success for r in runs) == [False, True]
    texts = [capfd.readouterr().out + capfd.readouterr().err]
    for run in runs:
        for event in env.instance.all_logs(run.run_id):
            texts.append(json.dumps(dg.serialize_value(event)) if hasattr(dg, "serialize_value")
                         else repr(event))
        texts.append(repr(run.dagster_run))
    for key in env.keys("report", s.batch_id):
        texts.append(env.store.get_bytes(env.buckets["report"], key).decode("latin-1"))
    assert not [t for t in texts if secret in t]
    with pg.connect() as conn, conn.cursor() as cur:
        for table, column in (("event_logs", "event"), ("runs", "run_body")):
            cur.execute(f"SELECT count(*) FROM {table} WHERE {column} LIKE %s", (f"%{secret}%",))
            assert cur.fetchone()[0] == 0, table
    storage = env.tmp / "dagster_home" / "storage"
    leaked = [p for p in storage.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == [], leaked
