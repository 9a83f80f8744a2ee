"""End to end: an upload to a real S3 server (SeaweedFS) becomes exactly one partition and one
run, with Dagster's run and event-log storage on a real Postgres (the repository's dagster.yaml)."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from pipeline.sample import write_sample_batch
from tests.harness import (
    configure_s3,
    failure_text,
    launch_requested_runs,
    load_definitions,
    sensor_tick,
    upload_batch,
    write_manifest,
)
from tests.pg import dagster_home


@pytest.fixture
def pg_instance(pg, tmp_path):
    with dagster_home(pg, tmp_path):
        with dg.DagsterInstance.get() as instance:
            yield instance


@pytest.fixture
def s3_defs(monkeypatch, seaweed, seaweed_buckets):
    configure_s3(monkeypatch, seaweed, seaweed_buckets)
    return load_definitions()


def test_intake__upload_becomes_one_partition_and_one_validated_run(pg, pg_instance, s3_defs, tmp_path):
    runs_before, events_before = pg.count("runs"), pg.count("event_logs")
    sample = write_sample_batch(tmp_path / "b", batch_id="farm7-north-2026-06-14", size=256)
    upload_batch(s3_defs, sample.folder, sample.batch_id, sample.files)

    tick = sensor_tick(s3_defs, pg_instance)
    assert [k for r in tick.dynamic_partitions_requests for k in r.partition_keys] == [sample.batch_id]
    assert len(tick.run_requests) == 1
    (run,) = launch_requested_runs(s3_defs, pg_instance, tick, assets=["imagery_batch"])
    assert run.success, failure_text(run)
    assert sensor_tick(s3_defs, pg_instance, tick.cursor).run_requests == []

    assert pg_instance.get_dynamic_partitions("imagery_batches") == [sample.batch_id]
    materialization = run.asset_materializations_for_node("imagery_batch")[0]
    meta = materialization.metadata
    assert meta["image_count"].value == 3
    assert meta["grid_crs"].value == "EPSG:32633"
    assert (meta["grid_width"].value, meta["grid_height"].value) == (256, 256)
    assert meta["bands"].value == "blue, green, red, red_edge, nir, thermal"
    assert "ortho_west.tif" in meta["images"].value
    # The run and its events are rows in Postgres.
    assert pg.count("runs") == runs_before + 1
    assert pg.count("event_logs") > events_before
    record = pg_instance.get_latest_materialization_event(dg.AssetKey("imagery_batch"))
    assert record is not None and record.run_id == run.run_id


REAL_OPTICAL = [
    ("landsat7_rgb_byte.tif", ["red", "green", "blue"], "EPSG:32618", "blue, green, red"),
    ("landsat7_etm_6band.tif", ["blue", "green", "red", "nir", "other", "other"], "EPSG:31985",
     "blue, green, red, nir"),
    ("rgbn_5m.tif", ["red", "green", "blue", "nir"], "EPSG:32618", "blue, green, red, nir"),
]


@pytest.mark.parametrize(("name", "bands", "crs", "found"), REAL_OPTICAL)
def test_intake__real_files_with_named_bands_are_accepted(pg_instance, s3_defs, tmp_path, real_data,
                                                          name, bands, crs, found):
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(real_data / name, folder / name)
    write_manifest(folder, batch_id="real-1", images=[{"path": name, "bands": bands}])
    upload_batch(s3_defs, folder, "real-1", [name, "manifest.json"])
    (run,) = launch_requested_runs(s3_defs, pg_instance, sensor_tick(s3_defs, pg_instance),
                                   assets=["imagery_batch"])
    assert run.success, failure_text(run)
    meta = run.asset_materializations_for_node("imagery_batch")[0].metadata
    assert meta["grid_crs"].value == crs
    assert meta["bands"].value == found


def test_intake__real_files_that_do_not_overlap_are_refused(pg_instance, s3_defs, tmp_path,
                                                             real_data):
    folder = tmp_path / "real"
    folder.mkdir()
    for name in ("landsat7_rgb_byte.tif", "rgbn_5m.tif"):
        shutil.copy(real_data / name, folder / name)
    write_manifest(folder, batch_id="real-2", images=[
        {"path": "landsat7_rgb_byte.tif", "bands": ["red", "green", "blue"]},
        {"path": "rgbn_5m.tif", "bands": ["red", "green", "blue", "nir"]},
    ])
    upload_batch(s3_defs, folder, "real-2", ["landsat7_rgb_byte.tif", "rgbn_5m.tif", "manifest.json"])
    (run,) = launch_requested_runs(s3_defs, pg_instance, sensor_tick(s3_defs, pg_instance),
                                   assets=["imagery_batch"])
    assert not run.success
    assert "does not overlap or touch the other images" in failure_text(run)


def test_intake__unreferenced_thermal_frame_is_refused_saying_so(pg_instance, s3_defs, tmp_path,
                                                                 real_data):
    folder = tmp_path / "flir"
    folder.mkdir()
    shutil.copy(real_data / "flir_duo_pro_r_radiometric.tiff", folder / "frame.tiff")
    write_manifest(folder, batch_id="flir-1", images=[
        {"path": "frame.tiff", "bands": ["thermal"], "thermal_scale": 0.04, "thermal_offset": -273.15},
    ])
    upload_batch(s3_defs, folder, "flir-1", ["frame.tiff", "manifest.json"])
    (run,) = launch_requested_runs(s3_defs, pg_instance, sensor_tick(s3_defs, pg_instance),
                                   assets=["imagery_batch"])
    assert not run.success
    text = failure_text(run)
    assert "frame.tiff: has no CRS" in text and "gdal_translate -a_srs" in text
    # bad input is not retried
    (failure,) = run.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data is not None


def test_intake__checksum_mismatch_names_the_file(pg_instance, s3_defs, tmp_path):
    sample = write_sample_batch(tmp_path / "c", batch_id="bad-sum", size=128)
    manifest = json.loads((sample.folder / "manifest.json").read_text())
    manifest["images"][0]["sha256"] = "0" * 64
    (sample.folder / "manifest.json").write_text(json.dumps(manifest))
    upload_batch(s3_defs, sample.folder, sample.batch_id, sample.files)
    (run,) = launch_requested_runs(s3_defs, pg_instance, sensor_tick(s3_defs, pg_instance),
                                   assets=["imagery_batch"])
    assert not run.success
    assert "ortho_west.tif: sha256 is" in failure_text(run)
