"""Cloud-Optimized GeoTIFF writing: profiles as data, staging, translation.

Writing is encode-bound, so it happens in two steps (measured on the target machine):

1. `stage_rasters` returns ONE lazy dask task that stores every chunk into an uncompressed tiled
   temporary GeoTIFF. The caller computes it together with its other reductions
   (`dask.compute(staged, *stats)`) so the inputs are read once. Memory stays flat: one chunk per
   worker. (rioxarray's `to_raster` without a lock loads the whole array; an uncompressed staging
   file beat a compressed one by 2.3x.)
2. `translate_to_cog` turns a staged file into a COG with GDAL's COG driver, under a capped
   GDAL_CACHEMAX (uncapped, GDAL alone fills ~1.2 GB), writing to a temporary name next to the
   destination and renaming, so the destination is never half-written.

Staging targets are small picklable objects that open the file for each write under an exclusive
`flock` on the file, so they work with the threaded scheduler and with `distributed` (workers must
share the file system, which the caller guarantees).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from dask.delayed import Delayed
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from pipeline.core.errors import MissingCRS

GDAL_CACHEMAX_MB = 128
STAGE_BLOCK = 512

COG_PROFILES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # Index values: lossless float compression; overviews average valid pixels (nodata NaN ignored).
    "float32": MappingProxyType({
        "dtype": "float32",
        "nodata": float("nan"),
        "creation": MappingProxyType({
            "COMPRESS": "DEFLATE",
            "PREDICTOR": "FLOATING_POINT",  # TIFF predictor 3
            "BLOCKSIZE": "512",
            "OVERVIEW_RESAMPLING": "AVERAGE",
            "RESAMPLING": "AVERAGE",
            "BIGTIFF": "IF_SAFER",
        }),
    }),
    # Heatmaps: RGB + alpha (PHOTOMETRIC=RGB, ExtraSamples = unassociated alpha). Overviews use
    # NEAREST so every overview pixel is still a ramp colour (averaging a diverging ramp mixes red
    # and green into colours that mean no value) and alpha stays 0 or 255.
    "rgba": MappingProxyType({
        "dtype": "uint8",
        "nodata": None,
        "creation": MappingProxyType({
            "COMPRESS": "DEFLATE",
            "PREDICTOR": "STANDARD",  # TIFF predictor 2 (horizontal differencing)
            "BLOCKSIZE": "512",
            "OVERVIEW_RESAMPLING": "NEAREST",
            "RESAMPLING": "NEAREST",
            "BIGTIFF": "IF_SAFER",
        }),
    }),
})
"""COG profiles by name: dtype, nodata, and GDAL COG driver creation options."""

_RGBA = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)


def _gdal_env(num_threads: int | str) -> rasterio.Env:
    return rasterio.Env(
        GDAL_CACHEMAX=GDAL_CACHEMAX_MB * 1024 * 1024,
        GDAL_NUM_THREADS=str(num_threads),
        GDAL_PAM_ENABLED="NO",  # no .aux.xml side files
    )


@contextlib.contextmanager
def _exclusive(path: Path):
    """An exclusive advisory lock on `path`, across threads (separate fds) and processes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class _GeoTiffTarget:
    """A dask `store` target: `target[region] = block` writes one window of a GeoTIFF on disk."""

    path: str
    bands: int | None  # None: a 2-D (y, x) array written to band 1

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        if self.bands is None:
            rows, cols = region
            indexes: int | list[int] = 1
        else:
            band_slice, rows, cols = region
            indexes = list(range(band_slice.start + 1, band_slice.stop + 1))
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        with _exclusive(Path(self.path)), _gdal_env(1), rasterio.open(self.path, "r+") as dst:
            dst.write(block, indexes=indexes, window=window)


def _spatial(da: xr.DataArray, where: Path) -> xr.DataArray:
    """`da` transposed to ([band,] y, x), with a CRS."""
    if da.rio.crs is None:
        raise MissingCRS(
            "the raster to write has no CRS; set it with `.rio.write_crs()` before writing",
            file=str(where),
        )
    y, x = da.rio.y_dim, da.rio.x_dim
    if da.ndim == 2:
        return da.transpose(y, x)
    if da.ndim == 3:
        (band,) = [d for d in da.dims if d not in (y, x)]
        return da.transpose(band, y, x)
    raise ValueError(f"{where}: expected a 2-D or 3-D raster, got dims {da.dims}")


def _create_stage(path: Path, da: xr.DataArray) -> None:
    count = 1 if da.ndim == 2 else da.shape[0]
    dtype = np.dtype(da.dtype)
    rgba = dtype == np.uint8 and count == 4
    if np.issubdtype(dtype, np.floating):
        nodata: float | None = float("nan")
    else:
        nodata = da.rio.nodata
    profile = {
        "driver": "GTiff", "width": da.shape[-1], "height": da.shape[-2], "count": count,
        "dtype": dtype.name, "crs": da.rio.crs, "transform": da.rio.transform(recalc=True),
        "nodata": nodata, "tiled": True, "blockxsize": STAGE_BLOCK, "blockysize": STAGE_BLOCK,
        "compress": "NONE", "sparse_ok": True, "bigtiff": "IF_NEEDED", "interleave": "band",
    }
    if rgba:
        profile.update(photometric="RGB", alpha="YES")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _gdal_env(1), rasterio.open(path, "w", **profile) as dst:
        if rgba:
            dst.colorinterp = _RGBA


def _store_block(block: np.ndarray, *, target: _GeoTiffTarget, block_info=None) -> np.ndarray:
    """Write one chunk where it belongs; return a 1-element count so no pixels travel on."""
    location = block_info[0]["array-location"]
    target[tuple(slice(start, stop) for start, stop in location)] = block
    return np.full((1,) * block.ndim, block.size, dtype=np.int64)


def _total(*counts: np.integer) -> int:
    return int(sum(int(c) for c in counts))


def create_stage(path: Path, da: xr.DataArray) -> None:
    """Create the empty staged GeoTIFF for `da` (georeferencing, dtype, bands) without computing
    it; windows are then written with `_GeoTiffTarget` (see pipeline.core.index_pass)."""
    _create_stage(Path(path), _spatial(da, Path(path)))


def stage_rasters(arrays: Mapping[Path, xr.DataArray]) -> Delayed:
    """One lazy task writing each DataArray to its path as an uncompressed tiled GeoTIFF.

    The files are created (empty, sparse) now with the array's CRS, transform, dtype, band count and
    nodata (NaN for floats; a 4-band uint8 array is written as RGB + alpha). Computing the returned
    task fills them chunk by chunk -- each chunk is written by the task that computes it, so no
    raster is ever gathered in memory -- and yields the number of values written. numpy-backed
    arrays are chunked first. Compute it together with other outputs of the same inputs:
    `dask.compute(staged, *stats)`.
    """
    counts: list[dsa.Array] = []
    for path, da in arrays.items():
        path = Path(path)
        da = _spatial(da, path)
        _create_stage(path, da)
        data = da.data
        if not isinstance(data, dsa.Array):
            block = (-1,) * (da.ndim - 2) + (4 * STAGE_BLOCK, 4 * STAGE_BLOCK)
            data = dsa.from_array(np.asarray(data), chunks=block)
        target = _GeoTiffTarget(str(path), None if da.ndim == 2 else da.shape[0])
        written = data.map_blocks(
            _store_block,
            target=target,
            dtype=np.int64,
            chunks=tuple((1,) * len(c) for c in data.chunks),
            meta=np.empty((0,) * data.ndim, dtype=np.int64),
            name=f"stage-{uuid.uuid4().hex}",
        )
        counts.append(written.sum())
    return dask.delayed(_total, pure=False)(*counts)


def _profile(name: str) -> Mapping[str, Any]:
    try:
        return COG_PROFILES[name]
    except KeyError:
        known = list(COG_PROFILES)
        raise ValueError(f"unknown COG profile {name!r}; choose one of {known}") from None


def translate_to_cog(
    src: Path, dst: Path, *, profile: str, num_threads: int | str = "ALL_CPUS"
) -> None:
    """Translate the GeoTIFF `src` into a COG at `dst` with `COG_PROFILES[profile]`.

    Written to a temporary name in dst's folder and renamed, so `dst` is never half-written.
    """
    options = dict(_profile(profile)["creation"])
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    try:
        with _gdal_env(num_threads):
            rasterio.shutil.copy(
                str(src), str(tmp), driver="COG", NUM_THREADS=str(num_threads), **options
            )
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def write_cog(da: xr.DataArray, dst: Path, *, profile: str) -> None:
    """Stage, compute (current scheduler) and translate one raster; a convenience for one output.

    To write several outputs of the same inputs, call `stage_rasters` once and compute it with them.
    """
    dst = Path(dst)
    expected = np.dtype(_profile(profile)["dtype"])
    if np.dtype(da.dtype) != expected:
        raise ValueError(
            f"{dst}: profile {profile!r} writes {expected}, got {da.dtype}; cast first"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        staged_path = workdir / "stage.tif"
        dask.compute(stage_rasters({staged_path: da}))
        translate_to_cog(staged_path, dst, profile=profile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
