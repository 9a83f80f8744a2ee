"""The real scenes of shared/data/real run without a refusal for any band they carry (DESIGN.md §2):
SWIR bands named swir1/swir2 give NDMI and custom SWIR indices, the same bands named `other` are
ignored, and a scene uploaded one file per band with `other` files skips those files."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import yaml

from pipeline.core.analysis import analyse_indices
from pipeline.core.bands import resolve_bands
from pipeline.core.errors import MissingCRS
from pipeline.core.manifest import parse_manifest
from pipeline.core.registry import build_registry
from pipeline.core.validation import validate_images
from tests.realdata import absent_reason, real_data_dir

REAL = real_data_dir()
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=absent_reason(REAL))
ETM = "landsat7_etm_6band.tif"  # ETM+ bands 1, 2, 3, 4, 5, 7
ETM_BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "indices.yaml"
    path.write_text(yaml.safe_dump([{
        "name": "nbr", "formula": "(nir - swir2) / (nir + swir2)", "vmin": -0.5, "vmax": 0.8,
        "ramp": "RdYlGn", "description": "Normalized burn ratio."}]))
    return build_registry(indices_file=path)


def _run(folder: Path, images: list[dict], registry, workdir: Path):
    manifest = parse_manifest(json.dumps({"schema_version": 1, "batch_id": "real",
                                          "images": images, "reflectance_scale": 1 / 255}).encode(),
                              name="manifest.json", batch_id="real")
    batch = validate_images(manifest=manifest, locate=lambda p: str(folder / p), gdal_options={})
    workdir.mkdir()
    with dask.config.set(scheduler="threads"):
        return batch, analyse_indices(sources=batch.optical_sources, reflectance_scale=1 / 255,
                                      workdir=workdir, registry=registry)


@pytest.mark.parametrize(("name", "bands", "expected"), [
    (ETM, ETM_BANDS, {"ndvi", "gndvi", "savi", "evi", "vari", "ndmi", "ndwi", "nbr"}),
    (ETM, ["blue", "green", "red", "nir", "other", "other"],
     {"ndvi", "gndvi", "savi", "evi", "vari", "ndwi"}),
    (ETM, ["other", "green", "red", "nir", "swir1", "other"],
     {"ndvi", "gndvi", "savi", "ndmi", "ndwi"}),
    ("rgbn_5m.tif", ["red", "green", "blue", "nir"],
     {"ndvi", "gndvi", "savi", "evi", "vari", "ndwi"}),
    ("landsat7_rgb_byte.tif", ["red", "green", "blue"], {"vari"}),
])
def test_real_scene__every_band_it_carries_is_accepted(tmp_path, registry, name, bands, expected):
    _, result = _run(REAL, [{"path": name, "bands": bands}], registry, tmp_path / "out")
    assert set(result.indices) == expected
    for index, r in result.indices.items():
        lo, hi = r.stats["min"], r.stats["max"]
        assert r.stats["valid_fraction"] > 0.3, index
        if index in ("ndvi", "ndmi", "ndwi", "nbr", "gndvi"):
            assert -1.0 <= lo <= hi <= 1.0, index


def test_real_landsat__ndmi_and_ndwi_separate_sea_from_land(tmp_path, registry):
    """ETM+ over Olinda (Brazil): the Atlantic is open water (NDWI > 0), vegetated land is not."""
    _run(REAL, [{"path": ETM, "bands": ETM_BANDS}], registry, tmp_path / "out")
    with rasterio.open(REAL / ETM) as src:
        nir_dn = src.read(4)
    with rasterio.open(tmp_path / "out" / "ndwi.tif") as ndwi, \
            rasterio.open(tmp_path / "out" / "ndmi.tif") as ndmi:
        ndwi_values, ndmi_values = ndwi.read(1), ndmi.read(1)
    water = nir_dn < np.percentile(nir_dn, 10)
    land = nir_dn > np.percentile(nir_dn, 75)
    assert np.nanmean(ndwi_values[water]) > 0 > np.nanmean(ndwi_values[land])
    assert np.nanmean(ndmi_values[land]) > -0.2  # vegetated land holds canopy water


def test_real_landsat__one_file_per_band_skips_the_other_files(tmp_path, registry):
    """The case of issue 12: SWIR files named `other` were refused; now they are skipped."""
    folder = tmp_path / "per-band"
    folder.mkdir()
    with rasterio.open(REAL / ETM) as src:
        profile = {**src.profile, "count": 1}
        for i, number in enumerate((1, 2, 3, 4, 5, 7), start=1):
            with rasterio.open(folder / f"TM_B{number}.tif", "w", **profile) as dst:
                dst.write(src.read(i), 1)
    names = ["blue", "green", "red", "nir", "other", "other"]
    images = [{"path": f"TM_B{n}.tif", "bands": [b]}
              for n, b in zip((1, 2, 3, 4, 5, 7), names, strict=True)]
    batch, result = _run(folder, images, registry, tmp_path / "out")
    assert [i.path for i in batch.ignored] == ["TM_B5.tif", "TM_B7.tif"]
    assert "ndvi" in result.indices and "ndmi" not in result.indices


def test_real_thermal__band_resolves_and_only_georeferencing_is_refused(tmp_path):
    name = "flir_duo_pro_r_radiometric.tiff"
    assert resolve_bands(manifest_bands=["thermal"], descriptions=[None], file=name) == ("thermal",)
    image = {"path": name, "bands": ["thermal"], "thermal_scale": 0.04, "thermal_offset": -273.15}
    manifest = parse_manifest(json.dumps({"schema_version": 1, "batch_id": "flir",
                                          "images": [image]}).encode(),
                              name="manifest.json", batch_id="flir")
    with pytest.raises(MissingCRS):  # DESIGN.md §2: every image must be georeferenced
        validate_images(manifest=manifest, locate=lambda p: str(REAL / p), gdal_options={})
