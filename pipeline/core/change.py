"""Change since a site's previous flight (DESIGN.md §3.3): comparability, change rasters, stats.

Designed around two costs. The rasters can be far larger than memory, so the change raster is a
lazy dask array whose every chunk reads its window of this batch's index COG and warps just the
matching part of the previous batch's COG onto it (GDAL's warper reads only the source window a
destination chunk needs, through range reads of the object store); the float COG, its heatmap and
the statistics are computed from it in one `dask.compute`. The comparability check must be cheap
and must come first: it reads the two reference rasters at a decimated resolution (≤ 1024 px, from
the COG overviews) to measure the shared valid area, and one full-resolution window (≤ 1024²) of
the overlap to estimate the co-registration shift by phase correlation with sub-pixel refinement.

Dagster-free; the caller picks the scheduler and publishes the files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from pipeline.core.cog import stage_rasters, translate_to_cog
from pipeline.core.grid import Grid
from pipeline.core.outputs import object_name, preview_name
from pipeline.core.preview import png_preview
from pipeline.core.ramps import Scale, colorize
from pipeline.core.stats import finalize, finalize_zone, lazy_stats
from pipeline.core.zones import Zone, zone_labels

Log = Callable[[str], None]

CHANGE_SCALE = Scale(ramp="RdBu", vmin=-0.5, vmax=0.5)
GAIN_THRESHOLD = 0.1  # gain: change strictly above +0.1; loss: strictly below -0.1
MIN_SHARED_FRACTION = 0.5
MAX_SHIFT_PX = 2.0
CHECK_PX = 1024  # long side of the decimated overlap check, and side of the shift window
CHANGE_RANGE = (-3.0, 3.0)  # histogram range; values beyond are exact in min/max
CHANGE_BIN = 0.001


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class BatchRasters:
    """One batch as the comparison sees it: its index COGs and its calibration."""

    batch_id: str
    rasters: Mapping[str, str]  # index name -> GDAL path of its float32 COG
    reflectance_explicit: bool


@dataclass(frozen=True)
class Comparability:
    comparable: bool
    reasons: tuple[str, ...]
    shift_px: tuple[float, float] | None  # [dx, dy] in pixels of this batch's grid
    shared_fraction: float | None  # of this batch's valid area
    reference_index: str | None


@dataclass
class ChangeAnalysis:
    indices: dict[
        str, dict[str, Any]
    ]  # index -> mean, p10, p50, p90, gain_area_m2, loss_area_m2, ...
    zones: dict[str, dict[str, dict[str, Any]]]  # zone -> index -> same keys
    files: list  # OutputFile
    seconds: float


# ---------------------------------------------------------------------------------------------
# Phase correlation (numpy), after Guizar-Sicairos et al. 2008: integer peak of the normalised
# cross-power spectrum, then a matrix-multiply DFT upsampled around it.


def _upsampled_dft(
    data: np.ndarray, size: int, factor: int, offsets: tuple[float, float]
) -> np.ndarray:
    rows, cols = data.shape
    col_kernel = np.exp(
        (-2j * np.pi / (cols * factor))
        * (np.fft.ifftshift(np.arange(cols))[:, None] - cols // 2)
        * (np.arange(size)[None, :] - offsets[1])
    )
    row_kernel = np.exp(
        (-2j * np.pi / (rows * factor))
        * (np.arange(size)[:, None] - offsets[0])
        * (np.fft.ifftshift(np.arange(rows))[None, :] - rows // 2)
    )
    return row_kernel @ data @ col_kernel


def phase_shift(
    *, reference: np.ndarray, moving: np.ndarray, upsample: int = 20, whitening: float = 0.5
) -> tuple[float, float]:
    """Sub-pixel (dy, dx) by which `moving` must be shifted to match `reference` (same shape, no
    NaN). Precision ~1/upsample px on textured images.

    The cross-power spectrum is divided by its magnitude to the power `whitening`: 1 is classic
    phase correlation, which weighs every frequency alike, so where the fields are smooth the
    nearly empty high frequencies are ruled by what differs between the flights (a field that
    changed, noise) and the peak gets lost; 0.5 keeps the peak sharp and robust to such changes.
    """
    if reference.shape != moving.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {moving.shape}")
    window = np.outer(np.hanning(reference.shape[0]), np.hanning(reference.shape[1]))
    f_ref = np.fft.fft2((reference - reference.mean()) * window)
    f_mov = np.fft.fft2((moving - moving.mean()) * window)
    cross = f_ref * f_mov.conj()
    cross /= np.maximum(np.abs(cross), 1e-12) ** whitening
    corr = np.abs(np.fft.ifft2(cross))
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), dtype=np.float64)
    shape = np.array(corr.shape)
    peak[peak > shape // 2] -= shape[peak > shape // 2]
    size = math.ceil(upsample * 1.5)
    centre = size // 2
    offsets = tuple(centre - peak * upsample)
    up = np.abs(_upsampled_dft(cross.conj(), size, upsample, offsets)).conj()
    sub = np.array(np.unravel_index(np.argmax(up), up.shape), dtype=np.float64) - centre
    dy, dx = peak + sub / upsample
    return float(dy), float(dx)


# ---------------------------------------------------------------------------------------------
# Reading


def _read_on(
    path: str,
    *,
    transform: Affine,
    shape: tuple[int, int],
    crs,
    gdal_options: Mapping[str, str],
    resampling: Resampling = Resampling.bilinear,
) -> np.ndarray:
    """Band 1 of the raster at `path` warped onto (crs, transform, shape), float32, NaN nodata."""
    out = np.full(shape, np.nan, dtype=np.float32)
    with rasterio.Env(**dict(gdal_options)), rasterio.open(path) as src:
        reproject(
            source=rasterio.band(src, 1),
            destination=out,
            src_nodata=np.nan,
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=np.nan,
            resampling=resampling,
            init_dest_nodata=True,
            num_threads=1,
        )
    return out


def _read_window(
    path: str,
    *,
    window: Window,
    gdal_options: Mapping[str, str],
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    with rasterio.Env(**dict(gdal_options)), rasterio.open(path) as src:
        data = src.read(
            1,
            window=window,
            out_shape=out_shape,
            boundless=True,
            fill_value=np.nan,
            resampling=Resampling.average,
        ).astype(np.float32)
        if src.nodata is not None and not np.isnan(src.nodata):
            data[data == src.nodata] = np.nan
    return data


def _change_block(
    block_info=None, *, current: str, previous: str, transform: tuple, crs: str, gdal_options: tuple
) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    window = Window(c0, r0, c1 - c0, r1 - r0)
    now = _read_window(current, window=window, gdal_options=dict(gdal_options))
    t = Affine(*transform) @ Affine.translation(c0, r0)
    then = _read_on(
        previous, transform=t, shape=now.shape, crs=crs, gdal_options=dict(gdal_options)
    )
    return (now - then).astype(np.float32)  # NaN where either is nodata


def change_raster(
    *,
    grid: Grid,
    current: str,
    previous: str,
    gdal_options: Mapping[str, str] | None = None,
    chunks: int = 1024,
) -> xr.DataArray:
    """Lazy float32 change on `grid`: the COG at `current` (on `grid`) minus the COG at `previous`
    resampled bilinearly onto `grid`; NaN where either is nodata."""
    data = dsa.map_blocks(
        _change_block,
        current=current,
        previous=previous,
        transform=tuple(grid.transform)[:6],
        crs=grid.crs.to_wkt(),
        gdal_options=tuple(sorted((gdal_options or {}).items())),
        chunks=dsa.core.normalize_chunks((chunks, chunks), grid.shape),
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
    )
    x, y = grid.coords()
    da = xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name="change")
    return da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


# ---------------------------------------------------------------------------------------------
# Comparability


def _reference_index(current: Mapping[str, str], previous: Mapping[str, str]) -> str | None:
    common = [name for name in current if name in previous]
    if "ndvi" in common:
        return "ndvi"
    return common[0] if common else None


def _shift_window(valid: np.ndarray, *, factor: tuple[float, float], grid: Grid) -> Window | None:
    """A full-resolution window of ≤ CHECK_PX² centred on the overlap's centroid."""
    rows, cols = np.nonzero(valid)
    if rows.size == 0:
        return None
    cy = (rows.mean() + 0.5) * factor[0]
    cx = (cols.mean() + 0.5) * factor[1]
    h, w = min(CHECK_PX, grid.height), min(CHECK_PX, grid.width)
    r0 = int(min(max(round(cy - h / 2), 0), grid.height - h))
    c0 = int(min(max(round(cx - w / 2), 0), grid.width - w))
    return Window(c0, r0, w, h)


def assess_comparability(
    *,
    grid: Grid,
    current: BatchRasters,
    previous: BatchRasters,
    gdal_options: Mapping[str, str] | None = None,
) -> Comparability:
    """Whether `current` (on `grid`) and `previous` can be compared (DESIGN.md §3.3), with every
    failed condition as a reason: explicit reflectance_scale on both, ≥ 50 % of this batch's valid
    area shared, co-registration shift ≤ 2 px of this grid."""
    options = dict(gdal_options or {})
    reasons: list[str] = []
    if not current.reflectance_explicit:
        reasons.append(
            f"batch {current.batch_id} has no explicit reflectance_scale in its manifest "
            "(raw digital numbers, not reflectance); state reflectance_scale"
        )
    if not previous.reflectance_explicit:
        reasons.append(
            f"the previous batch {previous.batch_id} has no explicit reflectance_scale in "
            "its manifest (raw digital numbers, not reflectance)"
        )
    name = _reference_index(current.rasters, previous.rasters)
    if name is None:
        reasons.append(
            f"batches {current.batch_id} and {previous.batch_id} have no index in common"
        )
        return Comparability(False, tuple(reasons), None, None, None)

    # 1. shared valid area, on a decimated copy of this grid
    scale = max(1.0, max(grid.width, grid.height) / CHECK_PX)
    shape = (max(1, round(grid.height / scale)), max(1, round(grid.width / scale)))
    factor = (grid.height / shape[0], grid.width / shape[1])
    coarse = grid.transform @ Affine.scale(factor[1], factor[0])
    now = _read_window(
        current.rasters[name],
        window=Window(0, 0, grid.width, grid.height),
        out_shape=shape,
        gdal_options=options,
    )
    then = _read_on(
        previous.rasters[name],
        transform=coarse,
        shape=shape,
        crs=grid.crs,
        gdal_options=options,
        resampling=Resampling.average,
    )
    valid_now = np.isfinite(now)
    both = valid_now & np.isfinite(then)
    shared = float(both.sum() / valid_now.sum()) if valid_now.any() else 0.0
    if shared < MIN_SHARED_FRACTION:
        reasons.append(
            f"the batches share {shared:.0%} of this batch's valid area; at least "
            f"{MIN_SHARED_FRACTION:.0%} is needed"
        )

    # 2. co-registration shift on a full-resolution window of the overlap
    shift: tuple[float, float] | None = None
    window = _shift_window(both, factor=factor, grid=grid)
    if window is None:
        reasons.append("the co-registration shift cannot be estimated: the batches do not overlap")
    else:
        a = _read_window(current.rasters[name], window=window, gdal_options=options)
        t = grid.transform @ Affine.translation(window.col_off, window.row_off)
        b = _read_on(
            previous.rasters[name], transform=t, shape=a.shape, crs=grid.crs, gdal_options=options
        )
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 64:
            reasons.append(
                "the co-registration shift cannot be estimated: too few pixels valid "
                "in both batches"
            )
        else:
            a = np.where(ok, a, a[ok].mean()).astype(np.float64)
            b = np.where(ok, b, b[ok].mean()).astype(np.float64)
            dy, dx = phase_shift(reference=a, moving=b)
            shift = (round(dx, 3), round(dy, 3))
            distance = math.hypot(dx, dy)
            if distance > MAX_SHIFT_PX:
                reasons.append(
                    f"the co-registration shift between the batches' {name} rasters is "
                    f"[{dx:.2f}, {dy:.2f}] px ({distance:.2f} px); at most "
                    f"{MAX_SHIFT_PX:g} px is allowed (re-align the orthomosaics)"
                )
    return Comparability(not reasons, tuple(reasons), shift, round(shared, 6), name)


# ---------------------------------------------------------------------------------------------
# Change rasters and statistics


def _gain_loss_block(change: np.ndarray, labels: np.ndarray, *, groups: int) -> np.ndarray:
    out = np.zeros((1, 1, groups, 2), dtype=np.float64)
    gain = change > GAIN_THRESHOLD
    loss = change < -GAIN_THRESHOLD
    out[0, 0, 0] = gain.sum(), loss.sum()
    if groups > 1:
        out[0, 0, :, 0] += np.bincount(labels[gain], minlength=groups)[:groups] * (
            np.arange(groups) > 0
        )
        out[0, 0, :, 1] += np.bincount(labels[loss], minlength=groups)[:groups] * (
            np.arange(groups) > 0
        )
    return out


def _gain_loss(change: xr.DataArray, labels: xr.DataArray | None, groups: int) -> dsa.Array:
    lab = (
        labels.data.rechunk(change.data.chunks)
        if labels is not None
        else dsa.zeros(change.shape, chunks=change.data.chunks, dtype=np.int32)
    )
    tables = dsa.map_blocks(
        _gain_loss_block,
        change.data,
        lab,
        groups=groups,
        new_axis=[2, 3],
        chunks=(1, 1, groups, 2),
        dtype=np.float64,
        meta=np.empty((0, 0, 0, 0), dtype=np.float64),
    )
    return tables.sum(axis=(0, 1))


def _change_stats(stats: Mapping[str, Any], gain: float, loss: float, pixel_area: float) -> dict:
    return {
        "mean": stats["mean"],
        "p10": stats["p10"],
        "p50": stats["p50"],
        "p90": stats["p90"],
        "gain_area_m2": gain * pixel_area,
        "loss_area_m2": loss * pixel_area,
    }


def analyse_change(
    *,
    grid: Grid,
    current: Mapping[str, str],
    previous: Mapping[str, str],
    workdir: Path,
    zones: Sequence[Zone] = (),
    gdal_options: Mapping[str, str] | None = None,
    chunks: int = 1024,
    log: Log = _quiet,
) -> ChangeAnalysis:
    """For every index in both `current` and `previous` (name -> GDAL path of its COG):
    `change_<index>.tif`, its heatmap COG and PNG on CHANGE_SCALE, and the change statistics of
    the grid and of each zone (DESIGN.md §3.5). Files are written to `workdir`."""
    from pipeline.core.analysis import OutputFile

    started = time.monotonic()
    names = [n for n in current if n in previous]
    labels = zone_labels(zones, grid=grid, chunks=chunks) if zones else None
    groups = len(zones) + 1
    lo, hi = CHANGE_RANGE
    bins = int(round((hi - lo) / CHANGE_BIN))
    staged: dict[str, tuple[Path, str]] = {}
    arrays, lazies = {}, {}
    for name in names:
        change = change_raster(
            grid=grid,
            current=current[name],
            previous=previous[name],
            gdal_options=gdal_options,
            chunks=chunks,
        )
        heatmap = colorize(change, scale=CHANGE_SCALE)
        for key, da, profile in (
            (object_name("change_{index}.tif", name), change, "float32"),
            (object_name("change_{index}_heatmap.tif", name), heatmap, "rgba"),
        ):
            staged[key] = (workdir / f"{key}.stage.tif", profile)
            arrays[staged[key][0]] = da
        lazies[name] = (
            lazy_stats(change, lo=lo, hi=hi, bins=bins, labels=labels, n_labels=len(zones)),
            _gain_loss(change, labels, groups),
        )
    task = stage_rasters(arrays) if arrays else None
    t0 = time.monotonic()
    _, computed = dask.compute(task, lazies)
    log(
        f"Change: {len(names)} index(es) on a {grid.width} × {grid.height} grid in "
        f"{time.monotonic() - t0:.1f} s"
    )
    area = grid.pixel_area_m2
    indices, by_zone = {}, {z.name: {} for z in zones}
    for name in names:
        parts, gl = computed[name]
        gl = np.asarray(gl)
        whole = finalize(parts, grid_pixels=grid.width * grid.height, pixel_area_m2=area)
        indices[name] = {
            **_change_stats(whole, gl[0, 0], gl[0, 1], area),
            "valid_fraction": whole["valid_fraction"],
        }
        for i, zone in enumerate(zones):
            z = finalize_zone(parts, label=i + 1)
            by_zone[zone.name][name] = _change_stats(z, gl[i + 1, 0], gl[i + 1, 1], area)
    files = []
    for key, (stage, profile) in staged.items():
        cog = workdir / key
        translate_to_cog(stage, cog, profile=profile)
        stage.unlink()
        files.append(OutputFile(key, cog, profile))
        if profile == "rgba":
            png = workdir / preview_name(key.removesuffix("_heatmap.tif"))
            png_preview(cog, png)
            files.append(OutputFile(png.name, png, "png"))
    return ChangeAnalysis(
        indices=indices, zones=by_zone, files=files, seconds=time.monotonic() - started
    )


__all__ = [
    "CHANGE_SCALE",
    "BatchRasters",
    "ChangeAnalysis",
    "Comparability",
    "analyse_change",
    "assess_comparability",
    "change_raster",
    "phase_shift",
]
