"""pipeline.core.analysis: real imagery gives plausible results; a distributed cluster gives the
same results as threads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from pipeline.core.analysis import analyse_indices, analyse_thermal
from pipeline.core.manifest import parse_manifest
from pipeline.core.mosaic import ImageSource
from pipeline.core.validation import validate_images
from pipeline.sample import write_sample_batch

def _analyse_real(folder: Path, name: str, bands: tuple[str, ...], workdir: Path):
    source = ImageSource(name=name, path=str(folder / name), bands=bands)
    with dask.config.set(scheduler="threads"):
        return analyse_indices(sources=[source], reflectance_scale=1 / 255, workdir=workdir)


def test_analyse_indices__landsat_ndvi_is_plausible_water_below_vegetation(tmp_path, real_data):
    """Landsat 7 ETM+ over Olinda (Brazil): the Atlantic has NDVI < 0, vegetation > 0.3."""
    result = _analyse_real(real_data, "landsat7_etm_6band.tif",
                           ("blue", "green", "red", "nir", "other", "other"), tmp_path)
    ndvi = result.indices["ndvi"].stats
    assert -1 <= ndvi["min"] < ndvi["max"] <= 1
    assert ndvi["p10"] < -0.3 and ndvi["p90"] > 0.3
    with rasterio.open(real_data / "landsat7_etm_6band.tif") as src:
        nir_dn = src.read(4)
    with rasterio.open(tmp_path / "ndvi.tif") as out:
        values = out.read(1)
    water = nir_dn < np.percentile(nir_dn, 10)  # open water reflects almost no near-infrared
    land = nir_dn > np.percentile(nir_dn, 75)
    assert np.nanmean(values[water]) < -0.3 and np.nanmean(values[land]) > 0.2
    healthy = {c["name"]: c["fraction"] for c in ndvi["classes"]}
    assert healthy["bare"] > 0.3  # ocean, beach and town
    assert cog_validate(str(tmp_path / "ndvi.tif"), quiet=True)[0]


@pytest.mark.parametrize(("name", "bands"), [
    ("rgbn_5m.tif", ("red", "green", "blue", "nir")),
    ("landsat7_rgb_byte.tif", ("red", "green", "blue")),
])
def test_analyse_indices__other_real_files_in_range(tmp_path, real_data, name, bands):
    result = _analyse_real(real_data, name, bands, tmp_path)
    expected = {"ndvi", "gndvi", "savi", "evi", "vari", "ndwi"} if "nir" in bands else {"vari"}
    assert set(result.indices) == expected
    for index in ("ndvi", "gndvi", "savi"):
        if index in result.indices:
            stats = result.indices[index].stats
            assert -1.5 <= stats["min"] <= stats["max"] <= 1.5 and stats["valid_fraction"] > 0.5
    if name == "landsat7_rgb_byte.tif":  # nodata 0 around the scene: only the scene counts
        assert 0.3 < result.indices["vari"].stats["valid_fraction"] < 0.9


def _sample_batch(tmp_path: Path):
    sample = write_sample_batch(tmp_path / "in", size=256)
    manifest = parse_manifest((sample.folder / "manifest.json").read_bytes(), name="manifest.json",
                              batch_id=sample.batch_id)
    batch = validate_images(manifest=manifest, locate=lambda p: str(sample.folder / p),
                            gdal_options={})
    zones = (sample.folder / "fields.geojson").read_bytes()
    return batch, zones


def _run(batch, zones, workdir: Path):
    workdir.mkdir()
    indices = analyse_indices(sources=batch.optical_sources, reflectance_scale=0.0001,
                              workdir=workdir, zones_geojson=zones, chunks=96)
    thermal = analyse_thermal(sources=batch.thermal_sources, unit="centikelvin", scale=None,
                              offset=None, workdir=workdir, zones_geojson=zones, chunks=96)
    return indices, thermal


def _figures(indices, thermal) -> str:
    return json.dumps({"i": {k: v.stats for k, v in indices.indices.items()},
                       "z": {k: v.zones for k, v in indices.indices.items()},
                       "t": thermal.stats, "tz": thermal.zones}, sort_keys=True, default=str)


def test_analysis__distributed_local_cluster_with_processes_equals_threads(tmp_path):
    distributed = pytest.importorskip("distributed")
    batch, zones = _sample_batch(tmp_path)
    with dask.config.set(scheduler="threads"):
        threads = _run(batch, zones, tmp_path / "threads")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        cluster_result = _run(batch, zones, tmp_path / "cluster")
        workers = set(client.scheduler_info()["workers"])
        worker_pids = set(client.run(os.getpid).values())
    assert _figures(*threads) == _figures(*cluster_result)
    # the work ran in the two worker processes, not in this one
    assert {task["worker"] for task in stream.data} == workers and len(workers) == 2
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    for name in ("ndvi.tif", "thermal_c.tif"):
        with rasterio.open(tmp_path / "threads" / name) as a, rasterio.open(tmp_path / "cluster" / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_analyse_thermal__centikelvin_percentiles_exact_and_outputs_encoded(tmp_path):
    """Radiometric uint16 centikelvin on a few quanta (where estimating between quanta erred by
    up to 0.01 °C): p90 equals numpy's on the written °C values; the heatmap is paletted."""
    from tests.rasters import north_up, write_raster

    rng = np.random.default_rng(3)
    dn = rng.integers(30_262, 30_268, size=(300, 410)).astype(np.uint16)  # 29.47..29.52 °C
    dn[:10] = 0
    path = write_raster(tmp_path / "t.tif", dn, nodata=0,
                        transform=north_up(left=500_000, top=4_000_000, res=0.5))
    source = ImageSource(name="t.tif", path=str(path), bands=("thermal",))
    lines: list[str] = []
    with dask.config.set(scheduler="threads"):
        result = analyse_thermal(sources=[source], unit="centikelvin", scale=None, offset=None,
                                 workdir=tmp_path / "out", chunks=128, log=lines.append)
    with rasterio.open(tmp_path / "out" / "thermal_c.tif") as c, \
            rasterio.open(tmp_path / "out" / "thermal_heatmap.tif") as h:
        celsius = c.read(1)
        assert c.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "ZSTD"
        assert h.count == 1 and h.colorinterp[0].name == "palette" and h.nodata == 0
        np.testing.assert_array_equal(h.read(1) == 0, np.isnan(celsius))
    valid = celsius[~np.isnan(celsius)].astype(np.float64)
    assert abs(result.stats["p90_c"] - np.percentile(valid, 90)) < 1e-4
    assert result.stats["mean_c"] == pytest.approx(valid.mean(), rel=1e-6)
    assert result.encoding == {"float": "ZSTD", "max_z_error": None, "heatmap": "PALETTE"}
    assert any("exact percentiles" in line for line in lines), lines
    assert any("windows in" in line and "MP/s" in line for line in lines), lines


def test_analyse_indices__lerc_encoding_reaches_the_cogs_and_the_summary_fields(tmp_path, real_data):
    from pipeline.core.cog import CogEncoding

    source = ImageSource(name="rgbn_5m.tif", path=str(real_data / "rgbn_5m.tif"),
                         bands=("red", "green", "blue", "nir"))
    with dask.config.set(scheduler="threads"):
        lerc = analyse_indices(sources=[source], reflectance_scale=1 / 255, workdir=tmp_path,
                               encoding=CogEncoding(compression="lerc", max_z_error=1e-4))
        exact = analyse_indices(sources=[source], reflectance_scale=1 / 255,
                                workdir=tmp_path / "zstd")
    assert lerc.encoding == {"float": "LERC_ZSTD", "max_z_error": 1e-4, "heatmap": "PALETTE"}
    with rasterio.open(tmp_path / "ndvi.tif") as a, \
            rasterio.open(tmp_path / "zstd" / "ndvi.tif") as b:
        assert a.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "LERC_ZSTD"
        assert a.tags()["MAX_Z_ERROR"] == "0.0001"
        got, want = a.read(1), b.read(1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) <= 1.0001e-4
    assert cog_validate(str(tmp_path / "ndvi.tif"), quiet=True)[0]
    # statistics come from the unrounded values, whatever the encoding
    assert lerc.indices["ndvi"].stats == exact.indices["ndvi"].stats
