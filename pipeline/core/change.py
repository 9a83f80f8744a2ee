"""Change since a site's previous flight (DESIGN.md §3.3): comparability, change rasters, stats.

Designed around two costs. The rasters can be far larger than memory, so the change is a kernel
of the raster engine (`pipeline.core.engine`): each window task reads its window of this batch's
index COG and warps just the matching part of the previous batch's COG onto it (GDAL's warper
reads only the source window a destination window needs, through range reads of the object
store), and returns the change, its paletted heatmap and the window's statistics; the task
compresses the COG tiles of its blocks and the publishing process assembles the COGs (no shared
disk).
The comparability check must be cheap and must come first: it reads the two reference rasters
at a decimated resolution (≤ 1024 px, from the COG overviews) to measure the shared valid area,
and one full-resolution window (≤ 1024²) of the overlap to estimate the co-registration shift by
phase correlation with sub-pixel refinement.

Dagster-free; the caller picks the scheduler and publishes the files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from pipeline.core.cog import CogEncoding, GridSpec
from pipeline.core.engine import Layer, publish, run_windows
from pipeline.core.grid import Grid
from pipeline.core.outputs import object_name
from pipeline.core.ramps import palette_index
from pipeline.core.registry import CHANGE_SCALE  # DESIGN.md §3.3, with the other fixed scales
from pipeline.core.stats import Bins, LazyStats, block_table, finalize, finalize_zone
from pipeline.core.zones import Zone, window_labels

Log = Callable[[str], None]

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


def change_window(
    *,
    current: str,
    previous: str,
    rows: tuple[int, int],
    cols: tuple[int, int],
    transform: tuple,
    crs: Any,
    gdal_options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """One window (row and column ranges of the grid of `current`) of the change: `current` minus
    `previous` resampled bilinearly onto that window; float32, NaN where either is nodata. Only
    the source window the destination needs is read from `previous` (GDAL's warper)."""
    (r0, r1), (c0, c1) = rows, cols
    options = dict(gdal_options or {})
    now = _read_window(current, window=Window(c0, r0, c1 - c0, r1 - r0), gdal_options=options)
    t = Affine(*transform) @ Affine.translation(c0, r0)
    then = _read_on(previous, transform=t, shape=now.shape, crs=crs, gdal_options=options)
    return (now - then).astype(np.float32)


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


def _gain_loss_table(change: np.ndarray, labels: np.ndarray | None, *, groups: int) -> np.ndarray:
    """(groups, 4): pixels above +0.1, below -0.1, and two unused min/max columns, so the table
    adds up like the engine's statistics tables (`combine_tables`)."""
    table = np.zeros((groups, 4), dtype=np.float64)
    table[:, 2], table[:, 3] = np.inf, -np.inf
    gain, loss = change > GAIN_THRESHOLD, change < -GAIN_THRESHOLD
    table[0, 0], table[0, 1] = np.count_nonzero(gain), np.count_nonzero(loss)
    if labels is not None and groups > 1:
        table[1:, 0] = np.bincount(labels[gain], minlength=groups)[1:groups]
        table[1:, 1] = np.bincount(labels[loss], minlength=groups)[1:groups]
    return table


@dataclass(frozen=True, repr=False)
class ChangePass:
    """The engine kernel (`pipeline.core.engine`): per window of this batch's grid, the change of
    every index, its paletted heatmap, and its statistics tables (grid and zones)."""

    current: Mapping[str, str]  # index -> GDAL path of this batch's COG
    previous: Mapping[str, str]  # index -> GDAL path of the previous batch's COG
    transform: tuple  # this grid's transform[:6]
    crs: str  # this grid's CRS (WKT)
    gdal_options: tuple  # (key, value) pairs
    zones: tuple  # shapely geometries in the grid CRS, label i + 1
    bins: Bins

    def __repr__(self) -> str:
        return f"ChangePass(indices={tuple(self.current)}, zones={len(self.zones)})"

    @property
    def layers(self) -> tuple[Layer, ...]:
        out = []
        for name in self.current:
            out += [
                Layer(_stem("change_{index}.tif", name), "float32"),
                Layer(_stem("change_{index}_heatmap.tif", name), "palette", CHANGE_SCALE),
            ]
        return tuple(out)

    def window(self, rows: tuple[int, int], cols: tuple[int, int]):
        labels = None
        if self.zones:
            labels = window_labels(self.zones, transform=self.transform, rows=rows, cols=cols)
        groups = len(self.zones) + 1
        blocks, tables = {}, {}
        for name in self.current:
            change = change_window(
                current=self.current[name],
                previous=self.previous[name],
                rows=rows,
                cols=cols,
                transform=self.transform,
                crs=self.crs,
                gdal_options=dict(self.gdal_options),
            )
            blocks[_stem("change_{index}.tif", name)] = change
            blocks[_stem("change_{index}_heatmap.tif", name)] = palette_index(
                change, vmin=CHANGE_SCALE.vmin, vmax=CHANGE_SCALE.vmax
            )
            tables[name] = block_table(change, labels, bins=self.bins, groups=groups)
            tables[f"{name}:gain_loss"] = _gain_loss_table(change, labels, groups=groups)
        return blocks, tables


def _stem(template: str, index: str) -> str:
    return object_name(template, index).removesuffix(".tif")


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
    encoding: CogEncoding = CogEncoding(),
    chunks: int = 1024,
    log: Log = _quiet,
) -> ChangeAnalysis:
    """For every index in both `current` and `previous` (name -> GDAL path of its COG):
    `change_<index>.tif`, its paletted heatmap COG and PNG on CHANGE_SCALE, and the change
    statistics of the grid and of each zone (DESIGN.md §3.5), in one pass of the raster engine
    (windows on the current dask setup, stages and COGs in this process). Files go to `workdir`."""
    started = time.monotonic()
    names = [n for n in current if n in previous]
    lo, hi = CHANGE_RANGE
    bins = Bins(lo=lo, hi=hi, bins=int(round((hi - lo) / CHANGE_BIN)))
    kernel = ChangePass(
        current={n: current[n] for n in names},
        previous={n: previous[n] for n in names},
        transform=tuple(grid.transform)[:6],
        crs=grid.crs.to_wkt(),
        gdal_options=tuple(sorted((gdal_options or {}).items())),
        zones=tuple(z.geometry for z in zones),
        bins=bins,
    )
    spec = GridSpec(grid.crs, grid.transform, grid.width, grid.height)
    tables, builders = run_windows(
        kernel,
        grid=spec,
        chunks=chunks,
        workdir=workdir,
        encoding=encoding,
        label="Change",
        log=log,
    )
    area = grid.pixel_area_m2
    indices, by_zone = {}, {z.name: {} for z in zones}
    for name in names:
        parts = LazyStats.from_table(tables[name], bins=bins)
        gl = tables[f"{name}:gain_loss"]
        whole = finalize(parts, grid_pixels=grid.width * grid.height, pixel_area_m2=area)
        indices[name] = {
            **_change_stats(whole, gl[0, 0], gl[0, 1], area),
            "valid_fraction": whole["valid_fraction"],
        }
        for i, zone in enumerate(zones):
            z = finalize_zone(parts, label=i + 1)
            by_zone[zone.name][name] = _change_stats(z, gl[i + 1, 0], gl[i + 1, 1], area)
    files = publish(builders, log=log)
    return ChangeAnalysis(
        indices=indices, zones=by_zone, files=files, seconds=time.monotonic() - started
    )


__all__ = [
    "CHANGE_SCALE",
    "BatchRasters",
    "ChangeAnalysis",
    "ChangePass",
    "Comparability",
    "analyse_change",
    "assess_comparability",
    "change_window",
    "phase_shift",
]
