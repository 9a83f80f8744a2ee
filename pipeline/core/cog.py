"""Cloud-Optimized GeoTIFF writing: encodings and profiles as data, in one place.

Every COG the pipeline writes takes its codec, level, predictor, block size, nodata and overview
resampling from `COG_PROFILES` (through `CogEncoding`, built from the settings). Two writers use
them:

1. The raster engine's outputs are assembled from tiles that window tasks compress themselves
   with GDAL's GTiff encoders (`gtiff_options` maps a profile onto them; see
   `pipeline.core.cog_tiles`): no uncompressed copy of a raster on any disk, and the encode runs
   where the window was computed (bench/RESULTS.md). Its small low overview levels go through a
   `Stage` (an uncompressed tiled GeoTIFF in the run worker's own temporary folder).
2. `translate_to_cog` turns one small local raster (e.g. the management-zone classes) into a COG
   with GDAL's COG driver; `write_cog` stages a 2-D array or dask array and translates it.

Both write to a temporary name next to the destination and rename, so the destination is never
half-written; the object store then receives it whole (PUT / completed multipart upload).

Encodings (DESIGN.md §3.1): float COGs ZSTD + floating-point predictor by default (lossless),
DEFLATE or LERC_ZSTD with an error bound by `CogEncoding`, which callers build from the settings
and pass down as data. Heatmaps are ONE paletted uint8 band (`pipeline.core.ramps.colour_table`),
nodata 0, overviews NEAREST so every overview pixel is still a colour of the scale.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from rasterio.windows import Window

from pipeline.core.errors import ConfigurationError, MissingCRS
from pipeline.core.ramps import Scale, gdal_colormap, palette_index

GDAL_CACHEMAX_MB = 128
TILE = 512  # COG tile (block) size, and the stages' block size
STAGE_BLOCK = TILE
FLOAT_COMPRESSIONS = ("zstd", "deflate", "lerc")
Kind = Literal["float32", "palette"]

_COMMON = {"BLOCKSIZE": "512", "BIGTIFF": "IF_SAFER"}
COG_PROFILES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # Index, change and thermal values: lossless, floating-point predictor (TIFF predictor 3);
    # ZSTD level 1 encodes 2x faster than DEFLATE-6 for the same size (bench/RESULTS.md).
    # Overviews average valid pixels (nodata NaN ignored).
    "float32": MappingProxyType({
        "dtype": "float32", "nodata": float("nan"), "encoding": "ZSTD",
        "creation": MappingProxyType({
            "COMPRESS": "ZSTD", "LEVEL": "1", "PREDICTOR": "FLOATING_POINT",
            "OVERVIEW_RESAMPLING": "AVERAGE", "RESAMPLING": "AVERAGE", **_COMMON}),
    }),
    # The same for readers without ZSTD (IMAGERY_COG_COMPRESSION=deflate).
    "float32-deflate": MappingProxyType({
        "dtype": "float32", "nodata": float("nan"), "encoding": "DEFLATE",
        "creation": MappingProxyType({
            "COMPRESS": "DEFLATE", "LEVEL": "6", "PREDICTOR": "FLOATING_POINT",
            "OVERVIEW_RESAMPLING": "AVERAGE", "RESAMPLING": "AVERAGE", **_COMMON}),
    }),
    # Lossy within MAX_Z_ERROR (IMAGERY_COG_COMPRESSION=lerc): ~2x smaller; the bound is added
    # from `CogEncoding.max_z_error` and recorded in the file's metadata (tag MAX_Z_ERROR).
    "float32-lerc": MappingProxyType({
        "dtype": "float32", "nodata": float("nan"), "encoding": "LERC_ZSTD",
        "creation": MappingProxyType({
            "COMPRESS": "LERC_ZSTD", "LEVEL": "1",
            "OVERVIEW_RESAMPLING": "AVERAGE", "RESAMPLING": "AVERAGE", **_COMMON}),
    }),
    # Heatmaps: one uint8 band, PHOTOMETRIC=PALETTE (the colour table travels with the stage),
    # nodata 0; NEAREST overviews keep every pixel a colour of the scale.
    "palette": MappingProxyType({
        "dtype": "uint8", "nodata": 0, "encoding": "PALETTE",
        "creation": MappingProxyType({
            "COMPRESS": "ZSTD", "LEVEL": "1", "PREDICTOR": "NO",
            "OVERVIEW_RESAMPLING": "NEAREST", "RESAMPLING": "NEAREST", **_COMMON}),
    }),
})
"""COG profiles by name: dtype, nodata, encoding name, and GDAL COG driver creation options."""


@dataclass(frozen=True)
class CogEncoding:
    """How float COGs are encoded (DESIGN.md §3.1): built once from the settings
    (`IMAGERY_COG_COMPRESSION`, `IMAGERY_COG_MAX_Z_ERROR`, `Settings.cog_encoding`) and passed down
    as data. lerc takes a finite MAX_Z_ERROR >= 0; 0 is lossless (GDAL's own default for LERC)."""

    compression: str = "zstd"
    max_z_error: float | None = None

    def __post_init__(self) -> None:
        if self.compression not in FLOAT_COMPRESSIONS:
            raise ConfigurationError(
                f"is {self.compression!r}, not one of {', '.join(FLOAT_COMPRESSIONS)}; set one of "
                "them (default zstd)", setting="IMAGERY_COG_COMPRESSION")
        if self.compression == "lerc":
            if self.max_z_error is None or not 0 <= self.max_z_error < math.inf:
                raise ConfigurationError(
                    f"is {self.max_z_error}; IMAGERY_COG_COMPRESSION=lerc needs a finite error "
                    "bound >= 0 (0 is lossless; e.g. 0.0001 for indices)",
                    setting="IMAGERY_COG_MAX_Z_ERROR")
        elif self.max_z_error is not None:
            raise ConfigurationError(f"applies to lerc only; unset it or set "
                                     f"IMAGERY_COG_COMPRESSION=lerc (it is {self.compression!r})",
                                     setting="IMAGERY_COG_MAX_Z_ERROR")

    @property
    def float_profile(self) -> str:
        return "float32" if self.compression == "zstd" else f"float32-{self.compression}"

    def profile(self, kind: Kind) -> CogProfile:
        """The complete profile of a `kind` of COG under this encoding."""
        if kind == "palette":
            return CogProfile.named("palette")
        extra = {"MAX_Z_ERROR": repr(float(self.max_z_error))} if self.compression == "lerc" else {}
        tags = {"MAX_Z_ERROR": repr(float(self.max_z_error))} if self.compression == "lerc" else {}
        return CogProfile.named(self.float_profile, extra=extra, tags=tags)

    def summary(self) -> dict[str, Any]:
        """summary.json `artifacts_encoding`: {float, max_z_error, heatmap}."""
        return {"float": COG_PROFILES[self.float_profile]["encoding"],
                "max_z_error": self.max_z_error, "heatmap": COG_PROFILES["palette"]["encoding"]}


@dataclass(frozen=True)
class CogProfile:
    """One entry of `COG_PROFILES`, with the options an encoding adds (LERC's error bound) and the
    tags written into the file's metadata."""

    name: str
    dtype: str
    nodata: float | int | None
    creation: Mapping[str, str]
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def named(cls, name: str, *, extra: Mapping[str, str] | None = None,
              tags: Mapping[str, str] | None = None) -> CogProfile:
        try:
            p = COG_PROFILES[name]
        except KeyError:
            raise ValueError(f"unknown COG profile {name!r}; choose one of "
                             f"{list(COG_PROFILES)}") from None
        return cls(name=name, dtype=p["dtype"], nodata=p["nodata"],
                   creation={**p["creation"], **(extra or {})}, tags=dict(tags or {}))

    @property
    def kind(self) -> Kind:
        return "palette" if self.name == "palette" else "float32"


PROCESS_GDAL_CACHEMAX_MB = 64


def default_gdal_cache(environ: MutableMapping[str, str] = os.environ) -> None:
    """Give this process a GDAL block cache of PROCESS_GDAL_CACHEMAX_MB unless GDAL_CACHEMAX is
    set. GDAL's own default (5 % of RAM: 1.2 GB on 24 GB) grows with every block a step decodes
    once -- reading a 16384² index COG to zone it raised the run worker's RSS by ~200 MB
    (bench/RESULTS.md). Call before GDAL first caches a block (GDAL reads the value once)."""
    environ.setdefault("GDAL_CACHEMAX", str(PROCESS_GDAL_CACHEMAX_MB))


def gdal_env(num_threads: int | str) -> rasterio.Env:
    """GDAL settings for writing: capped block cache, `num_threads` encoder threads, no side
    files."""
    return rasterio.Env(
        GDAL_CACHEMAX=GDAL_CACHEMAX_MB * 1024 * 1024,
        GDAL_NUM_THREADS=str(num_threads),
        GDAL_PAM_ENABLED="NO",  # no .aux.xml side files
    )


_GTIFF_LEVEL = {"ZSTD": "ZSTD_LEVEL", "LERC_ZSTD": "ZSTD_LEVEL", "DEFLATE": "ZLEVEL"}
_GTIFF_PREDICTOR = {"NO": "1", "STANDARD": "2", "YES": "2", "FLOATING_POINT": "3"}


def gtiff_options(profile: CogProfile) -> dict[str, str]:
    """The GTiff driver's creation options that encode tiles exactly as the COG driver does with
    `profile` (codec, level, predictor, LERC error bound, 512² tiles): what window tasks use to
    compress their own tiles (`pipeline.core.cog_tiles`)."""
    c = profile.creation
    options = {"TILED": "YES", "BLOCKXSIZE": c["BLOCKSIZE"], "BLOCKYSIZE": c["BLOCKSIZE"],
               "COMPRESS": c["COMPRESS"], "INTERLEAVE": "BAND",
               "PREDICTOR": _GTIFF_PREDICTOR[c.get("PREDICTOR", "NO")]}
    if "LEVEL" in c:
        options[_GTIFF_LEVEL[c["COMPRESS"]]] = c["LEVEL"]
    if "MAX_Z_ERROR" in c:
        options["MAX_Z_ERROR"] = c["MAX_Z_ERROR"]
    return options


@dataclass(frozen=True)
class GridSpec:
    """Where a raster lies: CRS, transform, width, height (what a stage needs to be created)."""

    crs: Any
    transform: Any
    width: int
    height: int


class Stage:
    """An uncompressed tiled single-band GeoTIFF in this process's temporary folder, open for
    writing windows until `close()`; then `translate_to_cog` encodes it. Not shared with any other
    process (DESIGN.md §5)."""

    def __init__(self, path: Path, *, grid: GridSpec, profile: CogProfile,
                 scale: Scale | None = None) -> None:
        if grid.crs is None:
            raise MissingCRS("the raster to write has no CRS; set it with `.rio.write_crs()` "
                             "before writing", file=str(path))
        if profile.kind == "palette" and scale is None:
            raise ValueError(f"{path}: a paletted stage needs the Scale of its colour table")
        self.path, self.profile, self.scale = Path(path), profile, scale
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = {
            "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
            "dtype": profile.dtype, "crs": grid.crs, "transform": grid.transform,
            "nodata": profile.nodata, "tiled": True, "blockxsize": STAGE_BLOCK,
            "blockysize": STAGE_BLOCK, "compress": "NONE", "sparse_ok": True,
            "bigtiff": "IF_NEEDED",
        }
        if profile.kind == "palette":
            options["photometric"] = "PALETTE"
        self._ds = None
        with gdal_env(1):
            ds = rasterio.open(self.path, "w", **options)
            try:
                if profile.kind == "palette":
                    ds.write_colormap(1, gdal_colormap(scale.ramp))
                if profile.tags:
                    ds.update_tags(**profile.tags)
            except BaseException:
                ds.close()  # not left open by a traceback that keeps this frame alive
                raise
        self._ds = ds

    def write(self, block: np.ndarray, *, rows: tuple[int, int], cols: tuple[int, int]) -> None:
        (r0, r1), (c0, c1) = rows, cols
        self._ds.write(block, 1, window=Window(c0, r0, c1 - c0, r1 - r0))

    def close(self) -> None:
        if self._ds is not None:
            with gdal_env(1):
                self._ds.close()
            self._ds = None


def translate_to_cog(src: Path, dst: Path, *, profile: str | CogProfile,
                     num_threads: int | str = "ALL_CPUS") -> None:
    """Translate the GeoTIFF `src` into a COG at `dst` with `profile` (a `COG_PROFILES` name or
    a `CogProfile`). Written to a temporary name in dst's folder and renamed, so `dst` is never
    half-written."""
    if isinstance(profile, str):
        profile = CogProfile.named(profile)
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    try:
        with gdal_env(num_threads):
            rasterio.shutil.copy(str(src), str(tmp), driver="COG", NUM_THREADS=str(num_threads),
                                 **dict(profile.creation))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _spatial(da: xr.DataArray, where: Path) -> xr.DataArray:
    if da.rio.crs is None:
        raise MissingCRS("the raster to write has no CRS; set it with `.rio.write_crs()` before "
                         "writing", file=str(where))
    if da.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D (y, x) raster, got dims {da.dims}")
    return da.transpose(da.rio.y_dim, da.rio.x_dim)


def write_cog(da: xr.DataArray, dst: Path, *, profile: str | CogProfile,
              scale: Scale | None = None, window: int = 2048) -> None:
    """Write one 2-D raster as a COG: window by window into a local stage (dask input computed one
    window at a time on the current scheduler), then translated. A convenience for one output;
    many outputs of the same inputs go through `pipeline.core.engine`.

    `profile` "palette" takes a float raster and its `scale` and writes its paletted heatmap.
    """
    dst = Path(dst)
    profile = CogProfile.named(profile) if isinstance(profile, str) else profile
    if profile.kind == "float32" and np.dtype(da.dtype) != np.float32:
        raise ValueError(f"{dst}: profile {profile.name!r} writes float32, got {da.dtype}; "
                         "cast first")
    if profile.kind == "palette" and scale is None:
        raise ValueError(f"{dst}: the palette profile colours a float raster: give its scale")
    da = _spatial(da, dst)
    grid = GridSpec(da.rio.crs, da.rio.transform(recalc=True), da.shape[1], da.shape[0])
    dst.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        stage = Stage(workdir / "stage.tif", grid=grid, profile=profile, scale=scale)
        try:
            for r0 in range(0, grid.height, window):
                for c0 in range(0, grid.width, window):
                    rows = (r0, min(r0 + window, grid.height))
                    cols = (c0, min(c0 + window, grid.width))
                    block = da.data[rows[0]:rows[1], cols[0]:cols[1]]
                    block = block.compute() if hasattr(block, "compute") else np.asarray(block)
                    if profile.kind == "palette":
                        block = palette_index(block, vmin=scale.vmin, vmax=scale.vmax)
                    stage.write(block, rows=rows, cols=cols)
        finally:
            stage.close()
        translate_to_cog(stage.path, dst, profile=profile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
