"""`imagery-pipeline` through typer's CliRunner, on a real SeaweedFS S3 server or a local store."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.status import run_state
from pipeline.sample import write_sample_batch
from resources.object_store import ObjectStoreResource
from pipeline.storage.s3 import S3ObjectStore
from tests.harness import (
    configure_local,
    configure_s3,
    launch_requested_runs,
    load_definitions,
    sensor_tick,
)

FLIR = "flir_duo_pro_r_radiometric.tiff"  # in the real imagery (the `real_data` fixture)
RGBN = "rgbn_5m.tif"


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def as_json(result) -> dict:
    return json.loads(result.stdout)


@pytest.fixture
def s3(monkeypatch, seaweed, seaweed_buckets):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    configure_s3(monkeypatch, seaweed, seaweed_buckets)
    resource = ObjectStoreResource.from_env()
    return resource, resource.store()


@pytest.fixture
def local(monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    configure_local(monkeypatch, tmp_path / "data")
    resource = ObjectStoreResource.from_env()
    store = resource.store()
    for bucket in (resource.imagery_bucket, resource.heatmap_bucket, resource.report_bucket):
        store.ensure_bucket(bucket)
    return resource, store


@pytest.fixture
def sample(tmp_path) -> Path:
    return write_sample_batch(tmp_path / "flight", batch_id="farm7-2026-06-14", size=128).folder


def keys(store, bucket: str, batch_id: str) -> dict[str, str]:
    return {o.key: o.etag for o in store.list_objects(bucket, prefix=f"{batch_id}/")}


def test_upload__images_first_manifest_last_with_matching_sha256(s3, sample, monkeypatch):
    resource, store = s3
    order: list[str] = []
    for method in ("upload_file", "put_bytes"):
        original = getattr(S3ObjectStore, method)

        def recording(self, bucket, key, *args, _original=original, **kwargs):
            info = _original(self, bucket, key, *args, **kwargs)
            order.append(key)  # recorded once the server confirmed the write
            return info

        monkeypatch.setattr(S3ObjectStore, method, recording)
    result = run("upload", sample, "--batch-id", "farm7-2026-06-14", "--json")
    assert result.exit_code == 0, result.output
    bid = "farm7-2026-06-14"
    assert order[-1] == f"{bid}/manifest.json" and len(order) == 5
    assert set(keys(store, resource.imagery_bucket, bid)) == set(order)
    infos = {o.key: o for o in store.list_objects(resource.imagery_bucket, prefix=f"{bid}/")}
    newest = max(i.last_modified for i in infos.values())
    assert infos[f"{bid}/manifest.json"].last_modified == newest
    manifest = json.loads(store.get_bytes(resource.imagery_bucket, f"{bid}/manifest.json"))
    for image in manifest["images"]:
        local = hashlib.sha256((sample / image["path"]).read_bytes()).hexdigest()
        uploaded = hashlib.sha256(store.get_bytes(resource.imagery_bucket,
                                                  f"{bid}/{image['path']}")).hexdigest()
        assert image["sha256"] == local == uploaded
    assert as_json(result)["uploaded"] == order


def test_upload__existing_batch_refused_without_replace_and_left_unchanged(s3, sample):
    resource, store = s3
    bid = "farm7-2026-06-14"
    assert run("upload", sample, "--batch-id", bid).exit_code == 0
    before = keys(store, resource.imagery_bucket, bid)
    again = run("upload", sample, "--batch-id", bid, "--json")
    assert again.exit_code == 2
    assert "--replace" in as_json(again)["error"] and "already exists" in again.stderr
    assert keys(store, resource.imagery_bucket, bid) == before


def test_upload__replace_writes_new_manifest_and_removes_stale_objects(s3, sample):
    resource, store = s3
    bid = "farm7-2026-06-14"
    assert run("upload", sample, "--batch-id", bid).exit_code == 0
    store.put_bytes(resource.imagery_bucket, f"{bid}/old_tile.tif", b"stale")
    (sample / "manifest.json").unlink()  # now the options describe the batch
    result = run("upload", sample, "--batch-id", bid, "--replace", "--thermal-unit", "centikelvin",
                 "--reflectance-scale", "0.0001", "--no-auto-report", "--json")
    assert result.exit_code == 0, result.output
    out = as_json(result)
    # fields.geojson belonged to the old batch only (no --zones now), as did old_tile.tif
    assert out["replaced"] is True
    assert out["removed"] == [f"{bid}/fields.geojson", f"{bid}/old_tile.tif"]
    manifest = json.loads(store.get_bytes(resource.imagery_bucket, f"{bid}/manifest.json"))
    assert manifest["auto_report"] is False and "zones" not in manifest
    thermal = next(i for i in manifest["images"] if i["path"] == "thermal.tif")
    assert thermal["bands"] == ["thermal"] and thermal["thermal_unit"] == "centikelvin"
    assert f"{bid}/old_tile.tif" not in keys(store, resource.imagery_bucket, bid)


def test_upload__dry_run_prints_manifest_and_uploads_nothing(s3, sample):
    resource, store = s3
    result = run("upload", sample, "--batch-id", "farm7-2026-06-14", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    out = as_json(result)
    assert out["dry_run"] is True and out["manifest"]["batch_id"] == "farm7-2026-06-14"
    assert out["manifest"]["zones"] == "fields.geojson"
    assert list(store.list_objects(resource.imagery_bucket)) == []


def test_upload__invalid_batch_id_is_a_usage_error(local, sample):
    result = run("upload", sample, "--batch-id", "../etc")
    assert result.exit_code == 2 and "batch id" in result.stderr


def test_validate__ungeoreferenced_file_names_it_and_says_no_crs(local, sample, real_data):
    (sample / "manifest.json").unlink()
    shutil.copy(real_data / FLIR, sample)
    result = run("validate", sample, "--thermal-unit", "centikelvin", "--json")
    assert result.exit_code == 2
    out = as_json(result)
    bad = [f for f in out["files"] if not f["ok"]]
    assert [f["name"] for f in bad] == [FLIR] and "has no CRS" in bad[0]["error"]
    assert sum(f["ok"] for f in out["files"]) == 3
    text = run("validate", sample, "--thermal-unit", "centikelvin")
    assert text.exit_code == 2 and "has no CRS" in text.stdout and FLIR in text.stdout


def test_validate__unknown_bands_suggest_the_bands_option(local, tmp_path, real_data):
    folder = tmp_path / "rgbn"
    folder.mkdir()
    shutil.copy(real_data / RGBN, folder)
    result = run("validate", folder)
    assert result.exit_code == 2
    assert f"{RGBN}: has 4 band(s) without recognisable descriptions" in result.stdout
    assert "--bands" in result.stdout
    fixed = run("validate", folder, "--bands", "red,green,blue,nir", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert as_json(fixed)["files"][0]["bands"] == ["red", "green", "blue", "nir"]
    wrong = run("validate", folder, "--bands", "red,green,blue")
    assert wrong.exit_code == 2 and "--bands names 3" in wrong.stdout


def test_validate__unknown_band_name_is_a_usage_error(local, sample):
    result = run("validate", sample, "--bands", "red,infra")
    assert result.exit_code == 2 and "infra" in result.stderr


def test_presign_upload__urls_accept_a_plain_http_put(s3, sample):
    resource, store = s3
    result = run("presign-upload", "device-1", sample / "thermal.tif", "--expires", "600")
    assert result.exit_code == 0, result.output
    out = as_json(result)
    assert [f["key"] for f in out["files"]] == ["device-1/thermal.tif"]
    assert out["manifest"]["key"] == "device-1/manifest.json" and "curl -T" in out["instructions"]
    for url, body in ((out["files"][0]["url"], (sample / "thermal.tif").read_bytes()),
                      (out["manifest"]["url"], b'{"schema_version": 1}')):
        request = urllib.request.Request(url, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    assert store.get_bytes(resource.imagery_bucket, "device-1/thermal.tif") == \
        (sample / "thermal.tif").read_bytes()
    assert store.exists(resource.imagery_bucket, "device-1/manifest.json")


def test_presign_upload__local_store_is_a_usage_error(local, sample):
    result = run("presign-upload", "device-1", sample / "thermal.tif", "--json")
    assert result.exit_code == 2 and "MINIO_ENDPOINT_URL" in as_json(result)["error"]


def test_report__missing_report_exits_1(local, tmp_path):
    result = run("report", "nothing-here", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "no report yet" in result.stderr
    assert not (tmp_path / "out").exists()


def test_report__downloads_pdf_summary_and_previews(local, tmp_path):
    resource, store = local
    bid = "farm7-2026-06-14"
    files = {(resource.report_bucket, f"{bid}/report.pdf"): b"%PDF-1.4 fake",
             (resource.report_bucket, f"{bid}/summary.json"): b'{"schema_version": 1}',
             (resource.heatmap_bucket, f"{bid}/ndvi_heatmap.png"): b"png-ndvi",
             (resource.heatmap_bucket, f"{bid}/ndvi.tif"): b"not a preview",
             (resource.heatmap_bucket, f"{bid}-other/ndre_heatmap.png"): b"other batch"}
    for (bucket, key), data in files.items():
        store.put_bytes(bucket, key, data)
    result = run("report", bid, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert saved == ["ndvi_heatmap.png", "report.pdf", "summary.json"]
    assert (tmp_path / "out" / "report.pdf").read_bytes() == b"%PDF-1.4 fake"
    assert len(as_json(result)["files"]) == 3


def test_status__store_only_states_uploading_waiting_done(local, sample):
    resource, store = local
    store.put_bytes(resource.imagery_bucket, "half-done/a.tif", b"x")
    assert run("upload", sample, "--batch-id", "farm7-2026-06-14").exit_code == 0
    store.put_bytes(resource.imagery_bucket, "finished/manifest.json", b"{}")
    store.put_bytes(resource.report_bucket, "finished/report.pdf", b"%PDF")
    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    states = {b["batch_id"]: b["state"] for b in as_json(result)["batches"]}
    assert states == {"half-done": "uploading", "farm7-2026-06-14": "waiting", "finished": "done"}
    assert as_json(result)["dagster_instance"] is False
    assert len(as_json(run("status", "--limit", "2", "--json"))["batches"]) == 2
    one = run("status", "half-done")
    assert one.exit_code == 0 and "uploading" in one.stdout and "1 object(s)" in one.stdout
    assert run("status", "no-such-batch").exit_code == 1


def test_status__failed_run_reason_from_the_dagster_instance(s3, tmp_path, real_data):
    resource, store = s3
    bid = "flir-no-crs"
    store.put_bytes(resource.imagery_bucket, f"{bid}/thermal.tiff", (real_data / FLIR).read_bytes())
    manifest = {"schema_version": 1, "batch_id": bid,
                "images": [{"path": "thermal.tiff", "bands": ["thermal"],
                            "thermal_scale": 0.04, "thermal_offset": -273.15}]}
    store.put_bytes(resource.imagery_bucket, f"{bid}/manifest.json", json.dumps(manifest).encode())
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:  # sets DAGSTER_HOME
        definitions = load_definitions()
        runs = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
        assert [r.success for r in runs] == [False]
        store.put_bytes(resource.imagery_bucket, "later/manifest.json", b"{}")  # no run yet
        result = run("status", "--json")
    assert result.exit_code == 0, result.output
    out = as_json(result)
    assert out["dagster_instance"] is True
    batches = {b["batch_id"]: b for b in out["batches"]}
    assert batches[bid]["state"] == "failed" and batches[bid]["run_id"] == runs[0].run_id
    assert "has no CRS" in batches[bid]["reason"] and "thermal.tiff" in batches[bid]["reason"]
    assert batches["later"]["state"] == "waiting" and batches["later"]["run_id"] is None


@pytest.mark.parametrize(("status", "state"), [("QUEUED", "queued"), ("STARTING", "queued"),
                                               ("STARTED", "running"), ("SUCCESS", "done"),
                                               ("FAILURE", "failed"), ("CANCELED", "failed")])
def test_run_state__maps_dagster_run_statuses(status, state):
    assert dg.DagsterRunStatus(status).value == status
    assert run_state(status) == state


@pytest.mark.parametrize("command", [[], ["upload"], ["validate"], ["status"], ["report"],
                                     ["presign-upload"], ["demo"]])
def test_cli__help_for_every_command(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout
    if command:
        assert "--json" in result.stdout
