"""Change since the previous flight: phase correlation, comparability, change rasters and stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from scipy import ndimage

from pipeline.core.change import (
    BatchRasters,
    analyse_change,
    assess_comparability,
    phase_shift,
)
from pipeline.core.grid import Grid
from pipeline.core.zones import load_zones
from tests.rasters import UTM33, north_up, write_raster

RES = 0.5
LEFT, TOP = 500_000.0, 5_000_000.0


def texture(shape, *, seed: int, sigma: float = 3.0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=shape)
    smooth = ndimage.gaussian_filter(noise, sigma)
    return (0.5 + 0.15 * smooth / smooth.std()).astype(np.float32)


def linear_field(grid_x: np.ndarray, grid_y: np.ndarray) -> np.ndarray:
    """NDVI as a linear function of map coordinates: bilinear resampling reproduces it exactly."""
    return (0.3 + 0.002 * (grid_x - LEFT) - 0.001 * (TOP - grid_y)).astype(np.float32)


@pytest.mark.parametrize("dy,dx", [(0.0, 0.0), (3.0, -5.0), (1.4, 0.6), (-0.25, 2.5)])
def test_phase_shift__recovers_a_known_shift(dy, dx):
    big = texture((300, 300), seed=1)
    reference = big[50:250, 50:250]
    moved = ndimage.shift(big, (-dy, -dx), order=3, mode="nearest")[50:250, 50:250]
    got_dy, got_dx = phase_shift(reference=reference, moving=moved)
    assert got_dy == pytest.approx(dy, abs=0.15) and got_dx == pytest.approx(dx, abs=0.15)


def _cog(tmp_path, name, data, transform, crs=UTM33):
    return str(
        write_raster(
            tmp_path / name, data, transform=transform, crs=crs, nodata=float("nan"), tiled=True
        )
    )


def _grid(path):
    with rasterio.open(path) as src:
        return Grid.from_dataset(src)


def test_assess_comparability__aligned_pair_is_comparable(tmp_path):
    tex = texture((256, 256), seed=2)
    t = north_up(left=LEFT, top=TOP, res=RES)
    now = _cog(tmp_path, "now.tif", tex + 0.01, t)
    then = _cog(tmp_path, "then.tif", tex, t)
    verdict = assess_comparability(
        grid=_grid(now),
        current=BatchRasters("b2", {"ndvi": now}, True),
        previous=BatchRasters("b1", {"ndvi": then}, True),
    )
    assert verdict.comparable and verdict.reasons == ()
    assert np.hypot(*verdict.shift_px) < 0.2 and verdict.shared_fraction == pytest.approx(1.0)


def test_assess_comparability__dn_misregistered_and_disjoint_give_every_reason(tmp_path):
    big = texture((300, 300), seed=3)
    t = north_up(left=LEFT, top=TOP, res=RES)
    now = _cog(tmp_path, "now.tif", big[20:276, 20:276], t)
    # the previous flight's orthomosaic is misregistered: its content sits 5 px west of this one's,
    # so it must move +5 px (east) to match: shift_px = [5, 0]
    then = _cog(tmp_path, "then.tif", big[20:276, 25:281], t)
    verdict = assess_comparability(
        grid=_grid(now),
        current=BatchRasters("b2", {"ndvi": now}, True),
        previous=BatchRasters("b1", {"ndvi": then}, False),
    )
    assert not verdict.comparable
    assert verdict.shift_px[0] == pytest.approx(5.0, abs=0.2)
    assert verdict.shift_px[1] == pytest.approx(0.0, abs=0.2)
    text = " | ".join(verdict.reasons)
    assert len(verdict.reasons) == 2, text
    assert "b1 has no explicit reflectance_scale" in text and "co-registration shift" in text
    # 70 % of this batch's area lies outside the previous flight
    far = _cog(
        tmp_path,
        "far.tif",
        big[20:276, 20:276],
        north_up(left=LEFT + 0.7 * 256 * RES, top=TOP, res=RES),
    )
    verdict = assess_comparability(
        grid=_grid(now),
        current=BatchRasters("b2", {"ndvi": now}, False),
        previous=BatchRasters("b0", {"ndvi": far}, True),
    )
    assert not verdict.comparable
    assert verdict.shared_fraction == pytest.approx(0.3, abs=0.01)
    text = " | ".join(verdict.reasons)
    assert "b2 has no explicit reflectance_scale" in text and "share 30%" in text


def _zones(grid: Grid, boxes: dict[str, tuple[float, float, float, float]]) -> list:
    features = []
    for name, (l, b, r, t) in boxes.items():
        lon0, lat0, lon1, lat1 = transform_bounds(UTM33, "EPSG:4326", l, b, r, t)
        features.append(
            {
                "type": "Feature",
                "properties": {"name": name},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[l, b], [r, b], [r, t], [l, t], [l, b]]],
                },
            }
        )
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": UTM33}},
        "features": features,
    }
    return load_zones(json.dumps(doc).encode(), name="fields.geojson", grid=grid)


@pytest.mark.parametrize("reprojected", [False, True], ids=["same-grid", "other-grid"])
def test_analyse_change__equals_numpy_and_field_statistics(tmp_path, reprojected):
    h, w = 200, 240
    t_now = north_up(left=LEFT, top=TOP, res=RES)
    x = LEFT + (np.arange(w) + 0.5) * RES
    y = TOP - (np.arange(h) + 0.5) * RES
    gx, gy = np.meshgrid(x, y)
    base = linear_field(gx, gy)
    field_b = (gx >= LEFT + 60) & (gx < LEFT + 100) & (gy <= TOP - 20) & (gy > TOP - 80)
    now = base - np.where(field_b, 0.15, 0.0).astype(np.float32)
    now[:10, :10] = np.nan
    now_path = _cog(tmp_path, "ndvi_now.tif", now, t_now)
    if reprojected:
        # previous flight: coarser (0.7 m), offset grid; same linear field sampled at its centres
        res_p, left_p, top_p = 0.7, LEFT - 3.3, TOP + 2.9
        hp, wp = int((h * RES + 6) / res_p) + 2, int((w * RES + 7) / res_p) + 2
        xp = left_p + (np.arange(wp) + 0.5) * res_p
        yp = top_p - (np.arange(hp) + 0.5) * res_p
        prev = linear_field(*np.meshgrid(xp, yp))
        t_prev = north_up(left=left_p, top=top_p, res=res_p)
    else:
        prev, t_prev = base.copy(), t_now
    prev[-5:, :] = np.nan if not reprojected else prev[-5:, :]
    prev_path = _cog(tmp_path, "ndvi_prev.tif", prev, t_prev)
    grid = _grid(now_path)
    zones = _zones(
        grid,
        {
            "north": (LEFT, TOP - 20, LEFT + 50, TOP),
            "south": (LEFT + 60, TOP - 80, LEFT + 100, TOP - 20),
        },
    )
    (tmp_path / "out").mkdir()
    result = analyse_change(
        grid=grid,
        current={"ndvi": now_path},
        previous={"ndvi": prev_path},
        workdir=tmp_path / "out",
        zones=zones,
        chunks=64,
    )
    with rasterio.open(tmp_path / "out" / "change_ndvi.tif") as src:
        got = src.read(1)
        assert src.transform == t_now and src.crs.to_string() == UTM33
    expected = now - (base if reprojected else prev)
    if not reprojected:
        expected[-5:, :] = np.nan
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    valid = np.isfinite(expected)
    s = result.indices["ndvi"]
    assert s["mean"] == pytest.approx(float(expected[valid].mean()), abs=1e-5)
    for q in (10, 50, 90):
        assert s[f"p{q}"] == pytest.approx(float(np.percentile(expected[valid], q)), abs=0.005)
    assert s["loss_area_m2"] == pytest.approx(float((expected < -0.1).sum()) * RES * RES, rel=1e-3)
    assert s["gain_area_m2"] == 0
    south, north = result.zones["south"]["ndvi"], result.zones["north"]["ndvi"]
    assert south["mean"] == pytest.approx(-0.15, abs=1e-5)
    assert south["loss_area_m2"] == pytest.approx(40 * 60, rel=1e-3)
    assert north["mean"] == pytest.approx(0.0, abs=1e-5) and north["loss_area_m2"] == 0
    names = {f.object_name for f in result.files}
    assert names == {"change_ndvi.tif", "change_ndvi_heatmap.tif", "change_ndvi_heatmap.png"}
