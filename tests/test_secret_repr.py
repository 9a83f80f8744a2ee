"""The object store's secret key never shows in the repr of what carries GDAL options (REVIEW M6).

Everything that carries `gdal_options` is built with a secret, and its repr, str and the repr of
the dask tasks built from it (what `distributed` logs on "Compute Failed") must not contain it.
"""

from __future__ import annotations

import dask
import numpy as np
from distributed.worker import convert_args_to_str, convert_kwargs_to_str

from pipeline.core.mosaic import count_out_of_range, mosaic
from pipeline.core.sources import ImageSource
from resources.io_managers import PublishedObject, PublishedObjects
from tests.rasters import north_up, write_raster

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
OPTIONS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": SECRET,
           "region_name": "us-east-1", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def _assert_hidden(obj) -> None:
    for text in (repr(obj), str(obj)):
        assert SECRET not in text, text


def _assert_graph_hidden(graph) -> None:
    """Each task, and its arguments as `distributed` shows them (`convert_args_to_str`)."""
    tasks = 0
    for key, task in dict(graph).items():
        _assert_hidden(key)
        _assert_hidden(task)
        if hasattr(task, "args"):
            tasks += 1
            _assert_hidden(convert_args_to_str(task.args))
            _assert_hidden(convert_kwargs_to_str(task.kwargs))
    assert tasks


def _source(tmp_path, *, dtype="uint16") -> ImageSource:
    data = (np.arange(2 * 20 * 30).reshape(2, 20, 30) % 5000 + 1).astype(dtype)
    path = write_raster(tmp_path / f"a_{dtype}.tif", data,
                        transform=north_up(left=500_000.0, top=5_000_000.0, res=1.0), nodata=0)
    return ImageSource(f"a_{dtype}.tif", str(path), ("red", "nir"), gdal_options=dict(OPTIONS))


def test_image_source_and_mosaic_carriers_hide_the_secret(tmp_path):
    source = _source(tmp_path)
    _assert_hidden(source)
    m = mosaic(sources=[source], reflectance_scale=1e-4, chunks=8)
    for tiles in m.tiles.values():
        for tile in tiles:
            _assert_hidden(tile)
            assert dict(tile.gdal_options) == OPTIONS  # still carried, only not shown
    reader = m.window_reader()
    _assert_hidden(reader)
    assert reader.read((0, 4), (0, 4))["red"].shape == (4, 4)  # still reads with the options
    for band in m.bands.values():
        _assert_graph_hidden(band.data.__dask_graph__())
    assert np.isfinite(m.bands["red"].values).all()


def test_count_out_of_range_tasks_hide_the_secret(tmp_path):
    source = _source(tmp_path, dtype="float32")
    counts = count_out_of_range(sources=[source], reflectance_scale=1e-4, chunks=8)
    _assert_graph_hidden(counts.__dask_graph__())
    assert dask.compute(counts)[0] == {source.name: 0}


def test_published_objects_hide_the_secret():
    published = PublishedObjects(
        bucket="b", objects={"x": PublishedObject(key="k", uri="s3://b/k", gdal_path="/vsis3/b/k",
                                                  size=1)},
        gdal_options=dict(OPTIONS))
    _assert_hidden(published)
    assert dict(published.gdal_options) == OPTIONS


def test_change_pass_hides_the_secret():
    from pipeline.core.change import ChangePass
    from pipeline.core.stats import Bins

    kernel = ChangePass(current={"ndvi": "/vsis3/b/now.tif"},
                        previous={"ndvi": "/vsis3/b/then.tif"},
                        transform=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0), crs="EPSG:32633",
                        gdal_options=tuple(sorted(OPTIONS.items())), zones=(),
                        bins=Bins(lo=-1.0, hi=1.0, bins=10))
    _assert_hidden(kernel)
