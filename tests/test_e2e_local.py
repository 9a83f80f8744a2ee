"""The whole job on the embedded default (local-folder store, SQLite instance): the shapes of
batches that change what the run produces."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from pipeline.sample import write_sample_batch
from tests.harness import (
    configure_local,
    failure_text,
    launch_requested_runs,
    load_definitions,
    object_store,
    sensor_tick,
    upload_batch,
)


@pytest.fixture
def local(monkeypatch, tmp_path):
    configure_local(monkeypatch, tmp_path / "data")
    with dg.instance_for_test() as instance:
        yield load_definitions(), instance


def _objects(definitions, bucket_attr: str, batch_id: str) -> set[str]:
    res = object_store(definitions)
    return {o.key.split("/", 1)[1] for o in
            res.store().list_objects(getattr(res, bucket_attr), prefix=f"{batch_id}/")}


def _edit_manifest(folder, **changes):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_job__auto_report_false_stops_after_the_heatmaps(local, tmp_path):
    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="no-report", size=128)
    _edit_manifest(sample.folder, auto_report=False)
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert run.success, failure_text(run)
    assert "ndvi_heatmap.tif" in _objects(definitions, "heatmap_bucket", "no-report")
    # no report, no distribution; the STAC item of the batch (DESIGN.md §3.3) is written anyway
    assert _objects(definitions, "report_bucket", "no-report") == {"item.json"}
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert "index_heatmaps" in materialized
    assert not materialized & {"batch_report", "report_distribution"}
    assert "site_history" in materialized
    logs = [e.message for e in instance.all_logs(run.run_id) if e.message]
    assert any("auto_report: false" in m and "no report, no distribution" in m for m in logs)


def test_job__thermal_only_batch_reports_thermal(local, tmp_path):
    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="thermal-only", size=128)
    manifest = _edit_manifest(sample.folder, zones=None)
    _edit_manifest(sample.folder, images=[i for i in manifest["images"] if i["path"] == "thermal.tif"])
    upload_batch(definitions, sample.folder, sample.batch_id, ["thermal.tif", "manifest.json"])
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert run.success, failure_text(run)
    assert _objects(definitions, "heatmap_bucket", "thermal-only") == {
        "thermal_c.tif", "thermal_heatmap.tif", "thermal_heatmap.png"}
    summary = json.loads(object_store(definitions).store().get_bytes(
        object_store(definitions).report_bucket, "thermal-only/summary.json"))
    assert summary["indices"] == {} and summary["thermal"]["max_c"] > 44
    assert summary["grid"]["pixel_size"] == [2.0, 2.0]


def test_job__optical_only_rgb_batch_gives_vari(local, tmp_path, real_data):
    definitions, instance = local
    folder = tmp_path / "rgb"
    folder.mkdir()
    shutil.copy(real_data / "landsat7_rgb_byte.tif", folder / "scene.tif")
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "batch_id": "rgb-only", "reflectance_scale": 1 / 255,
        "images": [{"path": "scene.tif", "bands": ["red", "green", "blue"]}]}))
    upload_batch(definitions, folder, "rgb-only", ["scene.tif", "manifest.json"])
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert run.success, failure_text(run)
    assert _objects(definitions, "heatmap_bucket", "rgb-only") == {
        "vari.tif", "vari_heatmap.tif", "vari_heatmap.png",
        "management_zones.tif", "management_zones.geojson", "management_zones.shp.zip"}
    assert _objects(definitions, "report_bucket", "rgb-only") == {
        "report.pdf", "summary.json", "distribution.json", "item.json"}


def test_job__rerun_with_fewer_bands_removes_outputs_no_longer_produced(local, tmp_path):
    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="shrinks", size=128)
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    first = sensor_tick(definitions, instance)
    (run,) = launch_requested_runs(definitions, instance, first)
    assert run.success, failure_text(run)
    assert "ndre.tif" in _objects(definitions, "heatmap_bucket", "shrinks")
    # Re-upload with the thermal frame only: every index output must go, not linger.
    manifest = json.loads((sample.folder / "manifest.json").read_text())
    _edit_manifest(sample.folder, images=[i for i in manifest["images"] if i["path"] == "thermal.tif"])
    upload_batch(definitions, sample.folder, sample.batch_id, ["manifest.json"])
    second = sensor_tick(definitions, instance, first.cursor)
    (rerun,) = launch_requested_runs(definitions, instance, second)
    assert rerun.success, failure_text(rerun)
    assert _objects(definitions, "heatmap_bucket", "shrinks") == {
        "thermal_c.tif", "thermal_heatmap.tif", "thermal_heatmap.png"}


class _FailingIOManager(dg.IOManager):
    def handle_output(self, context, obj):
        raise OSError("the store went away while publishing")

    def load_input(self, context):
        raise AssertionError("not reached")


def test_job__failed_publish_leaves_no_dask_callback_registered(local, tmp_path):
    """A step that fails while its output is published leaves its generator suspended at the
    yield; the dask session (a process-wide progress callback) must already be closed then, or
    every later computation in the process logs into the dead run."""
    from dask.callbacks import Callback

    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="publish-fails", size=64)
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    tick = sensor_tick(definitions, instance)
    instance.add_dynamic_partitions("imagery_batches", ["publish-fails"])
    from pipeline.jobs import process_imagery_batch

    failing = dg.Definitions(
        assets=list(definitions.assets), asset_checks=list(definitions.asset_checks),
        jobs=[process_imagery_batch], resources={**definitions.resources, "heatmap_io_manager": _FailingIOManager()},
    ).resolve_job_def("process_imagery_batch")
    run = failing.execute_in_process(instance=instance, partition_key="publish-fails",
                                     tags=tick.run_requests[0].tags, raise_on_error=False)
    assert not run.success and "the store went away" in failure_text(run)
    assert Callback.active == set()


@pytest.mark.parametrize(("case", "expect"), [
    # refused while validating: thermal_unit kelvin on centikelvin data (27 °C read as 30 000 °C)
    ("thermal_kelvin", ("thermal.tif: converted with thermal_unit \"kelvin\"",
                        'look like thermal_unit "centikelvin"')),
    # refused by the analysis: uint16 DN read as reflectance (no reflectance_scale) are all
    # outside [-1, 10]; the thermal maps may be published by then and must be withdrawn
    ("no_reflectance_scale", ("ortho_west.tif, ortho_east.tif: holds no valid pixel",
                              "check reflectance_scale")),
    # an image listed in the manifest but never uploaded
    ("missing_image", ("ortho_east.tif: is listed in manifest.json but was not uploaded",)),
])
def test_job__refused_batch_publishes_nothing(local, tmp_path, case, expect):
    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id=f"refused-{case}", size=128)
    manifest = json.loads((sample.folder / "manifest.json").read_text())
    if case == "thermal_kelvin":
        for image in manifest["images"]:
            if image["path"] == "thermal.tif":
                image["thermal_unit"] = "kelvin"
    elif case == "no_reflectance_scale":
        manifest["reflectance_scale"] = 1.0
    (sample.folder / "manifest.json").write_text(json.dumps(manifest))
    upload_batch(definitions, sample.folder, sample.batch_id,
                 [f for f in sample.files if case != "missing_image" or f != "ortho_east.tif"])
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert not run.success
    text = failure_text(run)
    assert all(e in text for e in expect), text
    assert _objects(definitions, "heatmap_bucket", sample.batch_id) == set()
    assert _objects(definitions, "report_bucket", sample.batch_id) == set()


def test_job__thermal_frame_refused_then_no_index_map_is_published(local, tmp_path):
    """The thermal frame holds no valid pixel (refused by the analysis, which runs before the
    indices): the index step that follows in the same run publishes nothing either."""
    import numpy as np
    import rasterio

    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="thermal-empty", size=128)
    path = sample.folder / "thermal.tif"
    with rasterio.open(path) as src:
        profile, shape = src.profile, (src.count, src.height, src.width)
    with rasterio.open(path, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(np.zeros(shape, dtype=profile["dtype"]))
    manifest = json.loads((sample.folder / "manifest.json").read_text())
    _edit_manifest(sample.folder, images=[{k: v for k, v in i.items() if k != "sha256"}
                                          for i in manifest["images"]])
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert not run.success
    assert "thermal.tif: holds no valid pixel" in failure_text(run)
    assert _objects(definitions, "heatmap_bucket", sample.batch_id) == set()
    assert _objects(definitions, "report_bucket", sample.batch_id) == set()


@pytest.mark.slow
def test_job__management_zones_and_prescription_read_back(local, tmp_path, monkeypatch):
    """The sample batch's four quadrants (healthy, moderate, stressed, bare + pond) zoned into
    three classes; files read back independently and consistent with the rasters."""
    import io
    import xml.etree.ElementTree as ET
    import zipfile

    import numpy as np
    import rasterio
    import shapefile
    from shapely.geometry import shape

    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="zoned", size=256)
    _edit_manifest(sample.folder, prescription={"product": "CAN 27", "unit": "kg/ha",
                                                "rates": {"1": 200, "2": 150, "3": 100}})
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert run.success, failure_text(run)
    res = object_store(definitions)
    store = res.store()
    names = _objects(definitions, "heatmap_bucket", "zoned")
    assert {"management_zones.tif", "management_zones.geojson", "management_zones.shp.zip",
            "prescription_isoxml.zip"} <= names
    checks = {e.asset_check_key.name: e.passed
              for e in (ev.event_specific_data for ev in run.all_events
                        if ev.event_type_value == "ASSET_CHECK_EVALUATION")}
    assert checks["management_zones_conserve_area"] and checks["management_zones_cog_valid"]
    summary = json.loads(store.get_bytes(res.report_bucket, "zoned/summary.json"))
    mz = summary["management_zones"]
    assert [c["class"] for c in mz["classes"]] == [1, 2, 3]
    assert [c["rate"] for c in mz["classes"]] == [200.0, 150.0, 100.0]
    means = [c["ndvi_mean"] for c in mz["classes"]]
    assert means == sorted(means)
    valid = summary["indices"]["ndvi"]["valid_area_m2"]
    assert sum(c["area_m2"] for c in mz["classes"]) == pytest.approx(valid, rel=0.001)
    # the class raster against the NDVI raster: 0 exactly at nodata; class means as summarised
    tif = tmp_path / "mz.tif"
    store.download_file(res.heatmap_bucket, "zoned/management_zones.tif", tif)
    ndvi_path = tmp_path / "ndvi.tif"
    store.download_file(res.heatmap_bucket, "zoned/ndvi.tif", ndvi_path)
    with rasterio.open(tif) as c, rasterio.open(ndvi_path) as n:
        classes, ndvi = c.read(1), n.read(1)
        assert c.colormap(1)[0][3] == 0 and c.nodata == 0
    assert np.array_equal(classes == 0, np.isnan(ndvi))
    for entry in mz["classes"]:
        mean = np.nanmean(ndvi[classes == entry["class"]])
        assert mean == pytest.approx(entry["ndvi_mean"], abs=1e-4)
    # healthy quadrant (north-west) is the top class, the pond (NDVI < 0) the lowest
    assert classes[10:100, 10:100].min() == 3
    assert (classes[185:200, 185:200] == 1).all()  # the pond (NDVI < 0) lowest
    # canopy cover per field: healthy NDVI ≈ 0.84 → 1.0; bare ≈ 0.11 → 0.0
    cover = {z["name"]: z["canopy_cover"] for z in summary["zones"]}
    assert cover["North-west field"] == pytest.approx(1.0, abs=0.01)
    assert cover["South-east field"] == pytest.approx(0.0, abs=0.01)
    # shapefile and GeoJSON read back: same features, areas summing to the valid area
    archive = zipfile.ZipFile(io.BytesIO(
        store.get_bytes(res.heatmap_bucket, "zoned/management_zones.shp.zip")))
    reader = shapefile.Reader(shp=io.BytesIO(archive.read("management_zones.shp")),
                              shx=io.BytesIO(archive.read("management_zones.shx")),
                              dbf=io.BytesIO(archive.read("management_zones.dbf")))
    records = [r.as_dict() for r in reader.records()]
    polygons = [shape(s.__geo_interface__) for s in reader.shapes()]
    assert sum(p.area for p in polygons) == pytest.approx(valid, rel=0.01)
    assert sum(r["area_ha"] for r in records) * 1e4 == pytest.approx(valid, rel=0.01)
    geojson = json.loads(store.get_bytes(res.heatmap_bucket, "zoned/management_zones.geojson"))
    assert len(geojson["features"]) == len(records)
    assert {f["properties"]["field"] for f in geojson["features"]} >= {
        "North-west field", "South-east field", None}
    # ISOXML: one task, a treatment zone per class with its rate (kg/ha → mg/m²)
    xml = zipfile.ZipFile(io.BytesIO(
        store.get_bytes(res.heatmap_bucket, "zoned/prescription_isoxml.zip")))
    root = ET.fromstring(xml.read("TASKDATA/TASKDATA.XML"))
    (task,) = root.findall("TSK")
    assert {z.get("A"): int(z.find("PDV").get("B")) for z in task.findall("TZN")} == {
        "1": 20000, "2": 15000, "3": 10000}
    pdf = store.get_bytes(res.report_bucket, "zoned/report.pdf")
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Management zones and prescription" in text and "CAN 27 in kg/ha" in text


def test_job__prescription_without_a_rate_per_class_is_refused_before_publishing(local, tmp_path):
    definitions, instance = local
    sample = write_sample_batch(tmp_path / "b", batch_id="two-rates", size=64)
    _edit_manifest(sample.folder, prescription={"product": "CAN 27", "unit": "kg/ha",
                                                "rates": {"1": 200, "2": 150}})
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
    assert not run.success
    assert "IMAGERY_MZ_CLASSES" in failure_text(run) and "prescription.rates" in failure_text(run)
    assert _objects(definitions, "heatmap_bucket", "two-rates") == set()
    assert _objects(definitions, "report_bucket", "two-rates") == set()
