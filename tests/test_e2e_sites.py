"""Sites end to end on the embedded default: flights of one site, change, history, STAC (§3.3).

Each flight is a red + nir reflectance orthomosaic whose NDVI is a known smooth texture defined
in map coordinates (so flights on different grids see the same ground), with nir + red = 0.5
so that NDVI is exactly the texture; the "south" field loses 0.15 NDVI in the later flight.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from tests.harness import (
    configure_local,
    failure_text,
    launch_requested_runs,
    load_definitions,
    object_store,
    sensor_tick,
    upload_batch,
)
from tests.rasters import UTM33, north_up, write_raster
from tests.stac import validate_collection, validate_item

LEFT, TOP, SIZE = 500_000.0, 5_000_000.0, 160
SOUTH = (LEFT + 10, TOP - 70, LEFT + 60, TOP - 40)  # minx, miny, maxx, maxy (m)
NORTH = (LEFT + 10, TOP - 30, LEFT + 60, TOP - 5)
LOSS = 0.15

pytestmark = pytest.mark.slow


_WAVES = np.random.default_rng(7).uniform(size=(40, 3))


def ground_ndvi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth, aperiodic texture of the ground in map coordinates (phase correlation needs
    texture; a periodic one would alias): 40 plane waves of random direction, 3-15 m wavelength."""
    u, v = x - LEFT, TOP - y
    out = np.full(np.shape(x), 0.55)
    for angle, wavelength, phase in _WAVES:
        k = 2 * np.pi / (3 + 12 * wavelength)
        out += 0.02 * np.sin(
            k * (u * np.cos(2 * np.pi * angle) + v * np.sin(2 * np.pi * angle)) + 2 * np.pi * phase
        )
    return np.clip(out, 0.05, 0.95).astype(np.float32)


def _fields() -> dict:
    def poly(b):
        l, bo, r, t = b
        return {"type": "Polygon", "coordinates": [[[l, bo], [r, bo], [r, t], [l, t], [l, bo]]]}

    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": UTM33}},
        "features": [
            {"type": "Feature", "properties": {"name": "south"}, "geometry": poly(SOUTH)},
            {"type": "Feature", "properties": {"name": "north"}, "geometry": poly(NORTH)},
        ],
    }


def flight(
    folder: Path,
    batch_id: str,
    *,
    captured_at: str,
    loss: bool,
    res: float = 0.5,
    origin: tuple[float, float] = (LEFT, TOP),
    shift_px: float = 0.0,
    reflectance_scale: float | None = 0.0001,
    site_id: str = "farm7",
) -> list[str]:
    """Write one flight's upload folder; returns the files to upload (manifest last)."""
    folder.mkdir(parents=True)
    n = int(round(SIZE * 0.5 / res))
    transform = north_up(left=origin[0], top=origin[1], res=res)
    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    x, y = transform * (cols, rows)
    ndvi = ground_ndvi(x - shift_px * res, y)  # shift_px: the ortho's content is misplaced east
    if loss:
        inside = (x >= SOUTH[0]) & (x <= SOUTH[2]) & (y >= SOUTH[1]) & (y <= SOUTH[3])
        ndvi = np.where(inside, ndvi - LOSS, ndvi)
    red, nir = (1 - ndvi) / 4, (1 + ndvi) / 4  # nir + red = 0.5 → NDVI exactly `ndvi`
    scale = reflectance_scale or 1.0
    bands = np.stack([red / scale, nir / scale]).astype(np.float32)
    write_raster(folder / "ortho.tif", bands, transform=transform, nodata=-9999.0)
    (folder / "fields.geojson").write_text(json.dumps(_fields()))
    manifest = {
        "schema_version": 1,
        "batch_id": batch_id,
        "captured_at": captured_at,
        "site_id": site_id,
        "zones": "fields.geojson",
        "images": [{"path": "ortho.tif", "bands": ["red", "nir"]}],
    }
    if reflectance_scale is not None:
        manifest["reflectance_scale"] = reflectance_scale
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ["ortho.tif", "fields.geojson", "manifest.json"]


@pytest.fixture
def site(monkeypatch, tmp_path):
    configure_local(monkeypatch, tmp_path / "data")
    with dg.instance_for_test() as instance:
        definitions = load_definitions()
        state = {"cursor": None}

        def process(batch_id: str, files: list[str]) -> dg.ExecuteInProcessResult:
            upload_batch(definitions, tmp_path / batch_id, batch_id, files)
            tick = sensor_tick(definitions, instance, state["cursor"])
            state["cursor"] = tick.cursor
            (run,) = launch_requested_runs(definitions, instance, tick)
            assert run.success, failure_text(run)
            return run

        yield definitions, instance, process, tmp_path


def _json(definitions, key: str) -> dict:
    res = object_store(definitions)
    return json.loads(res.store().get_bytes(res.report_bucket, key))


def _history(definitions) -> pd.DataFrame:
    res = object_store(definitions)
    return pd.read_parquet(
        io.BytesIO(res.store().get_bytes(res.report_bucket, "sites/farm7/history.parquet"))
    )


def _raster(definitions, batch_id: str, name: str) -> tuple[np.ndarray, object, object]:
    res = object_store(definitions)
    with rasterio.open(res.store().gdal_path(res.heatmap_bucket, f"{batch_id}/{name}")) as src:
        return src.read(1), src.transform, src.crs


def test_sites__two_flights_change_history_and_stac(site):
    definitions, instance, process, tmp = site
    process(
        "june10", flight(tmp / "june10", "june10", captured_at="2026-06-10T10:00:00Z", loss=False)
    )
    first = _json(definitions, "june10/summary.json")
    assert first["schema_version"] == 2 and first["change"] == {}
    assert first["site"]["previous_batch_id"] is None and not first["site"]["comparable"]
    assert all("change" not in z for z in first["zones"])

    process(
        "june20", flight(tmp / "june20", "june20", captured_at="2026-06-20T10:00:00Z", loss=True)
    )
    summary = _json(definitions, "june20/summary.json")
    s = summary["site"]
    assert s["previous_batch_id"] == "june10" and s["comparable"], s["reasons"]
    assert s["reasons"] == [] and np.hypot(*s["shift_px"]) < 0.25
    now, transform, _ = _raster(definitions, "june20", "ndvi.tif")
    before, _, _ = _raster(definitions, "june10", "ndvi.tif")
    change, change_transform, _ = _raster(definitions, "june20", "change_ndvi.tif")
    assert change_transform == transform
    np.testing.assert_allclose(change, now - before, atol=1e-5)
    zones = {z["name"]: z for z in summary["zones"]}
    assert zones["south"]["change"]["ndvi"]["mean"] == pytest.approx(-LOSS, abs=1e-4)
    assert zones["north"]["change"]["ndvi"]["mean"] == pytest.approx(0.0, abs=1e-4)
    south_area = (SOUTH[2] - SOUTH[0]) * (SOUTH[3] - SOUTH[1])
    assert zones["south"]["change"]["ndvi"]["loss_area_m2"] == pytest.approx(south_area, rel=0.01)
    c = summary["change"]["ndvi"]
    assert c["loss_area_m2"] == pytest.approx(south_area, rel=0.01) and c["gain_area_m2"] == 0
    assert c["mean"] == pytest.approx(float(np.nanmean(now - before)), abs=1e-5)
    assert "change_ndvi" in summary["artifacts"]

    history = _history(definitions)
    assert list(history.columns) == [
        "site_id",
        "batch_id",
        "captured_at",
        "zone",
        "index",
        "mean",
        "p10",
        "p50",
        "p90",
        "valid_fraction",
        "area_m2",
    ]
    assert set(history["index"]) == {"ndvi", "savi"}  # what red + nir allow
    assert len(history) == 2 * 3 * 2  # batches × (grid + 2 fields) × indices
    assert not history.duplicated(["batch_id", "zone", "index"]).any()
    assert list(history["batch_id"].drop_duplicates()) == ["june10", "june20"]
    assert str(history["captured_at"].dtype) == "datetime64[us, UTC]" or "UTC" in str(
        history["captured_at"].dtype
    )
    south = history[(history.zone == "south") & (history["index"] == "ndvi")].set_index("batch_id")
    assert south.loc["june20", "mean"] - south.loc["june10", "mean"] == pytest.approx(
        -LOSS, abs=1e-4
    )
    assert south.loc["june20", "area_m2"] == pytest.approx(south_area, rel=0.01)
    assert south.loc["june20", "valid_fraction"] == pytest.approx(1.0)

    item = _json(definitions, "june20/item.json")
    validate_item(item)
    assert item["properties"]["datetime"] == "2026-06-20T10:00:00Z"
    assert item["properties"]["proj:code"] == "EPSG:32633"
    assert item["assets"]["change_ndvi.tif"]["href"].startswith("s3://")
    assert "data" in item["assets"]["change_ndvi.tif"]["roles"]
    collection = _json(definitions, "sites/farm7/collection.json")
    validate_collection(collection)
    assert [link["title"] for link in collection["links"] if link["rel"] == "item"] == [
        "june10",
        "june20",
    ]

    # Processing june20 again replaces its rows, never duplicates them.
    res = object_store(definitions)
    job = definitions.resolve_job_def("process_imagery_batch")
    again = job.execute_in_process(instance=instance, partition_key="june20", raise_on_error=False)
    assert again.success, failure_text(again)
    assert len(_history(definitions)) == 12
    assert res.store().exists(res.report_bucket, "sites/farm7/batches/june20.json")


def test_sites__reasons_late_flight_and_reprojected_grid(site):
    definitions, instance, process, tmp = site
    process(
        "june20", flight(tmp / "june20", "june20", captured_at="2026-06-20T10:00:00Z", loss=False)
    )
    # uncalibrated (no reflectance_scale) and misregistered by 5 px: not comparable, both reasons
    process(
        "june25",
        flight(
            tmp / "june25",
            "june25",
            captured_at="2026-06-25T10:00:00Z",
            loss=False,
            reflectance_scale=None,
            shift_px=5.0,
        ),
    )
    s = _json(definitions, "june25/summary.json")["site"]
    assert s["previous_batch_id"] == "june20" and not s["comparable"]
    assert len(s["reasons"]) == 2, s["reasons"]
    assert "no explicit reflectance_scale" in s["reasons"][0] and "shift" in s["reasons"][1]
    assert abs(s["shift_px"][0]) == pytest.approx(5.0, abs=0.3)
    assert _json(definitions, "june25/summary.json")["change"] == {}
    res = object_store(definitions)
    assert not res.store().exists(res.heatmap_bucket, "june25/change_ndvi.tif")

    # A late, older flight on another grid (0.6 m, offset origin): it lands before june20 in the
    # history, and june20 (which compared with nothing) becomes stale for the schedule.
    process(
        "june10",
        flight(
            tmp / "june10",
            "june10",
            captured_at="2026-06-10T10:00:00Z",
            loss=True,
            res=0.6,
            origin=(LEFT - 3.1, TOP + 2.3),
        ),
    )
    assert list(_history(definitions)["batch_id"].drop_duplicates()) == [
        "june10",
        "june20",
        "june25",
    ]
    schedule = definitions.get_schedule_def("reprocess_stale_batches")
    with dg.build_schedule_context(
        instance=instance, repository_def=definitions.get_repository_def()
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == ["june20"]
    job = definitions.resolve_job_def("process_imagery_batch")
    rerun = job.execute_in_process(
        instance=instance, partition_key="june20", tags=requests[0].tags, raise_on_error=False
    )
    assert rerun.success, failure_text(rerun)
    summary = _json(definitions, "june20/summary.json")
    assert summary["site"]["previous_batch_id"] == "june10" and summary["site"]["comparable"], (
        summary["site"]["reasons"]
    )
    # june20 has no loss; june10 lost 0.15 in the south field: change there is +0.15
    zones = {z["name"]: z for z in summary["zones"]}
    assert zones["south"]["change"]["ndvi"]["mean"] == pytest.approx(LOSS, abs=0.01)
    # the change raster is this grid's NDVI minus june10's resampled bilinearly onto it
    now, transform, crs = _raster(definitions, "june20", "ndvi.tif")
    change, _, _ = _raster(definitions, "june20", "change_ndvi.tif")
    res = object_store(definitions)
    expected = np.full(now.shape, np.nan, dtype=np.float32)
    with rasterio.open(res.store().gdal_path(res.heatmap_bucket, "june10/ndvi.tif")) as src:
        reproject(
            rasterio.band(src, 1),
            expected,
            src_nodata=np.nan,
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    np.testing.assert_allclose(change, now - expected, atol=1e-5)
    with dg.build_schedule_context(
        instance=instance, repository_def=definitions.get_repository_def()
    ) as context:
        assert not list(schedule.evaluate_tick(context).run_requests or [])
    assert len(_history(definitions)) == 3 * 3 * 2

    # june25 re-uploaded without site_id: it leaves the site's history and collection
    manifest = json.loads((tmp / "june25" / "manifest.json").read_text())
    manifest.pop("site_id")
    (tmp / "june25" / "manifest.json").write_text(json.dumps(manifest))
    process("june25", ["manifest.json"])
    assert list(_history(definitions)["batch_id"].drop_duplicates()) == ["june10", "june20"]
    collection = _json(definitions, "sites/farm7/collection.json")
    assert [link["title"] for link in collection["links"] if link["rel"] == "item"] == [
        "june10",
        "june20",
    ]
    assert _json(definitions, "june25/summary.json")["site"] is None
    validate_item(_json(definitions, "june25/item.json"))
