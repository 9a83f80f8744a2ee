"""The HTTP API on SeaweedFS (S3) and Postgres: presigned PUTs straight to the store, a forged
URL refused by the store itself, state and runs from a Postgres instance, a tile read with range
requests over /vsis3/, report links that S3 answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import dagster as dg
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.sample import write_sample_batch
from pipeline.storage import S3ObjectStore
from tests.api_world import AUTH, make_app, tile_of
from tests.pg import dagster_home, temporary_database

pytestmark = pytest.mark.slow


def _http(method: str, url: str, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture
def s3_api(seaweed, seaweed_buckets, tmp_path):
    store = S3ObjectStore(endpoint_url=seaweed.endpoint_url, access_key=seaweed.access_key,
                          secret_key=seaweed.secret_key, region=seaweed.region)
    with temporary_database() as database, dagster_home(database, tmp_path):
        instance = dg.DagsterInstance.get()
        try:
            app = make_app(store, instance=instance, imagery_bucket=seaweed_buckets["imagery"],
                           heatmap_bucket=seaweed_buckets["heatmap"],
                           report_bucket=seaweed_buckets["report"])
            with TestClient(app, raise_server_exceptions=False) as client:
                yield client, store, seaweed_buckets, instance
        finally:
            instance.dispose()


def test_api_s3__upload_through_presigned_urls_then_state_and_runs_from_postgres(s3_api,
                                                                                  tmp_path):
    client, store, buckets, instance = s3_api
    sample = write_sample_batch(tmp_path / "s3-api-1", batch_id="s3-api-1", size=64)
    manifest = json.loads((sample.folder / "manifest.json").read_text())
    files = [{"path": name, "size": (sample.folder / name).stat().st_size}
             for name in sample.files if name != "manifest.json"]
    created = client.post("/imagery", json={**manifest, "files": files}, headers=AUTH)
    assert created.status_code == 201, created.text
    uploads = {u["path"]: u["url"] for u in created.json()["uploads"]}
    assert set(uploads) == {f["path"] for f in files}
    assert all(u.startswith(store.endpoint_url) for u in uploads.values())

    # The store refuses a URL rewritten for another prefix or key; nothing is written there.
    first = files[0]["path"]
    forged = uploads[first].replace("/s3-api-1/", "/another-batch/", 1)
    assert _http("PUT", forged, b"x") == 403
    assert _http("PUT", uploads[first].replace(first, "manifest.json", 1), b"{}") == 403
    assert not list(store.list_objects(buckets["imagery"], prefix="another-batch/"))

    for name, url in list(uploads.items())[:-1]:
        assert _http("PUT", url, (sample.folder / name).read_bytes()) == 200
    missing = list(uploads)[-1]
    incomplete = client.post("/imagery/s3-api-1/complete", headers=AUTH)
    assert incomplete.status_code == 409 and f"{missing} is missing" in incomplete.json()["detail"]
    assert store.head(buckets["imagery"], "s3-api-1/manifest.json") is None
    assert _http("PUT", uploads[missing], (sample.folder / missing).read_bytes()) == 200
    done = client.post("/imagery/s3-api-1/complete", headers=AUTH)
    assert done.status_code == 202, done.text
    written = json.loads(store.get_bytes(buckets["imagery"], "s3-api-1/manifest.json"))
    assert written == manifest
    assert client.get("/imagery/s3-api-1", headers=AUTH).json()["state"] == "queued"

    # A run of the batch's partition in the Postgres instance decides the state.
    from pipeline.definitions import defs

    instance.add_dynamic_partitions("imagery_batches", ["s3-api-1"])
    run = instance.create_run_for_job(
        job_def=defs().resolve_job_def("process_imagery_batch"),
        status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": "s3-api-1"})
    state = client.get("/imagery/s3-api-1", headers=AUTH).json()
    assert state["state"] == "running" and state["runs"][0]["run_id"] == run.run_id
    listed = client.get("/analysis-runs?batch_id=s3-api-1", headers=AUTH).json()["runs"]
    assert [r["run_id"] for r in listed] == [run.run_id]
    assert client.post("/analysis-runs", json={"batch_id": "s3-api-1"},
                       headers=AUTH).status_code == 503  # no webserver configured here


def test_api_s3__tile_and_report_links_from_s3(s3_api, processed):
    client, store, buckets, _ = s3_api
    demo = processed.demo
    local = processed.data_dir
    for bucket, folder, names in ((buckets["heatmap"], "analysis-heatmaps", ("ndvi.tif",)),
                                  (buckets["report"], "reports", ("summary.json", "report.pdf"))):
        for name in names:
            store.upload_file(bucket, f"{demo}/{name}", local / folder / demo / name)
    summary = json.loads((local / "reports" / demo / "summary.json").read_text())
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(summary["grid"]["crs"], "EPSG:4326",
                                                *summary["grid"]["bounds"])
    x, y = tile_of((west + east) / 2, (south + north) / 2, 17)
    s3_tile = client.get(f"/tiles/{demo}/ndvi/17/{x}/{y}.png", headers=AUTH)
    assert s3_tile.status_code == 200
    # The same COG read from the local folder gives the same tile, byte for byte.
    from pipeline.storage import LocalObjectStore

    with TestClient(make_app(LocalObjectStore(root=local))) as local_client:
        local_tile = local_client.get(f"/tiles/{demo}/ndvi/17/{x}/{y}.png", headers=AUTH)
    assert s3_tile.content == local_tile.content
    from io import BytesIO

    from PIL import Image

    assert np.asarray(Image.open(BytesIO(s3_tile.content)))[..., 3].any()
    assert client.get(f"/tiles/{demo}/evi/17/{x}/{y}.png", headers=AUTH).status_code == 404

    links = client.get(f"/reports/{demo}", headers=AUTH).json()["links"]
    assert set(links) == {"report.pdf", "ndvi.tif"}
    with urllib.request.urlopen(links["report.pdf"], timeout=30) as response:
        assert response.read(4) == b"%PDF"
    assert _http("GET", links["ndvi.tif"].replace("ndvi.tif", "evi.tif", 1)) == 403
