"""IMAGERY_COG_COMPRESSION / IMAGERY_COG_MAX_Z_ERROR (DESIGN.md §3.1, §5) reach the engine as data:
checked once by `Settings`, handed to the assets by the `cog_encoding` resource (REVIEW M4, L2,
T4)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest
import rasterio

from pipeline.core.cog import CogEncoding
from pipeline.core.errors import ConfigurationError
from pipeline.definitions import build_resources
from pipeline.sample import write_sample_batch
from pipeline.settings import Settings, get_settings
from tests.harness import (
    configure_local,
    failure_text,
    launch_requested_runs,
    load_definitions,
    object_store,
    sensor_tick,
    upload_batch,
)


@pytest.mark.parametrize(("environ", "want"), [
    ({}, CogEncoding("zstd")),
    ({"IMAGERY_COG_COMPRESSION": "deflate"}, CogEncoding("deflate")),
    ({"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "0.0001"},
     CogEncoding("lerc", 0.0001)),
    ({"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "0"}, CogEncoding("lerc", 0.0)),
])
def test_cog_encoding__from_the_settings_to_the_resource(environ, want):
    settings = Settings.from_env(environ)
    assert settings.cog_encoding() == want
    assert build_resources(settings)["cog_encoding"].encoding() == want
    assert want.profile("float32").creation["COMPRESS"] == {
        "zstd": "ZSTD", "deflate": "DEFLATE", "lerc": "LERC_ZSTD"}[want.compression]


@pytest.mark.parametrize("environ", [
    {"IMAGERY_COG_COMPRESSION": "lerc"},
    {"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "-0.1"},
    {"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "nan"},
    {"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "inf"},
    {"IMAGERY_COG_COMPRESSION": "zstd", "IMAGERY_COG_MAX_Z_ERROR": "0"},
    {"IMAGERY_COG_COMPRESSION": "jpeg"},
])
def test_cog_encoding__refused_when_the_settings_are_read(environ):
    with pytest.raises(ConfigurationError, match="IMAGERY_COG_"):
        Settings.from_env(environ)


def test_assets_encode_with_the_settings_given_to_the_definitions_lerc_lossless(
        monkeypatch, tmp_path):
    """lerc + MAX_Z_ERROR=0 (lossless in GDAL) runs end to end, and the assets take the encoding
    from the resources built when the location loaded, not from the environment afterwards."""
    configure_local(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("IMAGERY_COG_COMPRESSION", "lerc")
    monkeypatch.setenv("IMAGERY_COG_MAX_Z_ERROR", "0")
    definitions = load_definitions()
    monkeypatch.setenv("IMAGERY_COG_COMPRESSION", "deflate")  # read by nothing any more
    monkeypatch.delenv("IMAGERY_COG_MAX_Z_ERROR")
    get_settings.cache_clear()
    sample = write_sample_batch(tmp_path / "b", batch_id="lerc-zero", size=128)
    upload_batch(definitions, sample.folder, sample.batch_id, sample.files)
    with dg.instance_for_test() as instance:
        (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance),
                                       assets=["imagery_batch", "index_rasters", "index_heatmaps",
                                               "index_statistics"])
    assert run.success, failure_text(run)
    res = object_store(definitions)
    path = res.store().gdal_path(res.heatmap_bucket, "lerc-zero/ndvi.tif")
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "LERC_ZSTD"
        assert float(ds.tags()["MAX_Z_ERROR"]) == 0.0
        ndvi = ds.read(1)
    with rasterio.open(sample.folder / "ortho_west.tif") as ds:  # bands blue, green, red, re, nir
        red, nir = (ds.read(i).astype(np.float32) * np.float32(1e-4) for i in (3, 5))
    want = (nir - red) / (nir + red)
    np.testing.assert_allclose(ndvi[:, :want.shape[1]], want, rtol=0, atol=1e-6)
