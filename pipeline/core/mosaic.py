"""Band-wise, lazy mosaicking of a batch's images onto its grid (DESIGN.md §2).

Every image that carries a band is a tile of that band; where tiles overlap, the first valid value
in manifest order wins. Each band is a dask array whose blocks each open the tiles that intersect
them (inside `rasterio.Env(**gdal_options)`) and read only their window, so nothing is loaded whole
and a `distributed` worker reads the inputs itself (tasks carry paths and plain data only).

Alignment: a tile in the grid's CRS with the grid's resolution and a whole-pixel offset is read
directly (equivalent to nearest neighbour, values untouched). Any other tile (other CRS, other
resolution, sub-pixel shift, rotation) is read through a `WarpedVRT` onto the grid with BILINEAR
resampling (smooth reflectance, nodata and alpha excluded from the kernel by GDAL).

Nodata: the file's nodata value, an `alpha` band (alpha 0 → NaN in all bands of that image), or NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dask.array as dsa
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from dask.base import tokenize
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from pipeline.core.grid import DEFAULT_MAX_PIXELS, Grid, batch_grid
from pipeline.core.manifest import OPTICAL_BANDS
from pipeline.core.sources import (  # re-exported: callers import them from here
    _READ_ERRORS,
    HeaderInfo,
    ImageSource,
    _read_failure,
    open_header,
)

__all__ = ["HeaderInfo", "ImageSource", "Mosaic", "WindowReader", "mosaic", "open_header"]

_F32 = np.float32


@dataclass(frozen=True)
class Mosaic:
    """Reflectance bands on the batch grid and the raw thermal DN on the thermal grid (lazy)."""

    grid: Grid | None
    bands: dict[str, xr.DataArray]
    thermal_dn: xr.DataArray | None = None
    thermal_grid: Grid | None = None
    tiles: dict[str, tuple[_Tile, ...]] = field(default_factory=dict)  # optical band -> tiles

    def window_reader(self) -> WindowReader:
        """A picklable reader of every optical band in one grid window (see `WindowReader`)."""
        grid = self.grid
        return WindowReader(tiles=dict(self.tiles),
                            grid=(grid.crs.to_wkt(), tuple(grid.transform)[:6], grid.width,
                                  grid.height))


@dataclass(frozen=True)
class _Tile:
    """One band of one image as a tile of a band mosaic: plain, picklable data."""

    name: str
    path: str
    gdal_options: tuple[tuple[str, str], ...]
    band: int  # 1-based
    alpha: int | None  # 1-based alpha band of the same image
    nodata: float | None
    scale: float
    offset: tuple[int, int] | None  # (row, col) of the tile origin in grid pixels when aligned
    footprint: tuple[int, int, int, int]  # grid pixel rows [r0, r1) and cols [c0, c1) it may cover


def _aligned_offset(header: HeaderInfo, grid: Grid) -> tuple[int, int] | None:
    t, g = header.transform, grid.transform
    if CRS.from_user_input(header.crs) != grid.crs or t.b != 0 or t.d != 0:
        return None
    if not (np.isclose(t.a, g.a, rtol=1e-9, atol=0) and np.isclose(t.e, g.e, rtol=1e-9, atol=0)):
        return None
    col, row = (t.c - g.c) / g.a, (t.f - g.f) / g.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(row)), int(round(col))


def _footprint(header: HeaderInfo, grid: Grid, offset: tuple[int, int] | None):
    if offset is not None:
        r, c = offset
        return (r, r + header.height, c, c + header.width)
    t = header.transform
    xs = np.array([0, header.width, 0, header.width], dtype=float)
    ys = np.array([0, 0, header.height, header.height], dtype=float)
    px, py = t.a * xs + t.b * ys + t.c, t.d * xs + t.e * ys + t.f
    left, bottom, right, top = transform_bounds(header.crs, grid.crs, px.min(), py.min(),
                                                px.max(), py.max(), densify_pts=21)
    inv = ~grid.transform
    cols, rows = zip(*(inv @ (x, y) for x in (left, right) for y in (bottom, top)))
    return (int(np.floor(min(rows))) - 1, int(np.ceil(max(rows))) + 1,
            int(np.floor(min(cols))) - 1, int(np.ceil(max(cols))) + 1)


def _read_tile(tile: _Tile, grid: tuple, rows: tuple[int, int], cols: tuple[int, int]):
    """The tile's values in grid window rows × cols, float32, NaN where it has no data."""
    return _read_tile_bands((tile,), grid, rows, cols)[0]


def _band_block(tiles: tuple[_Tile, ...], grid: tuple, block_info=None) -> np.ndarray:
    """One block of a band mosaic: first valid value of the tiles in order, scaled."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    out = np.full((r1 - r0, c1 - c0), np.nan, dtype=_F32)
    for tile in tiles:
        fr0, fr1, fc0, fc1 = tile.footprint
        if fr0 >= r1 or fr1 <= r0 or fc0 >= c1 or fc1 <= c0:
            continue
        try:
            values = _read_tile(tile, grid, (r0, r1), (c0, c1))
        except _READ_ERRORS as exc:
            raise _read_failure(tile.name, exc) from exc
        hole = np.isnan(out)
        out[hole] = values[hole] * _F32(tile.scale)
        if not np.isnan(out).any():
            break
    return out


@dataclass(frozen=True)
class WindowReader:
    """Reads every optical band of the mosaic in one grid window, opening each file once.

    The band-by-band dask arrays of `mosaic` open a file per band and block; a pixel-interleaved
    file then decodes each block once per band (measured: 8.4 s instead of 3.2 s for 5 bands).
    This reads all the bands a file carries for the window in one call, so analyses that need
    every band of a window (all the indices) decode each input block once. Picklable: paths and
    plain data, so a `distributed` worker reads from the object store itself.
    """

    tiles: dict[str, tuple[_Tile, ...]]  # band -> tiles in manifest order
    grid: tuple  # (crs wkt, transform[:6], width, height)

    def read(self, rows: tuple[int, int], cols: tuple[int, int]) -> dict[str, np.ndarray]:
        (r0, r1), (c0, c1) = rows, cols
        by_file: dict[str, list[tuple[str, _Tile]]] = {}
        for band, tiles in self.tiles.items():
            for tile in tiles:
                fr0, fr1, fc0, fc1 = tile.footprint
                if fr0 < r1 and fr1 > r0 and fc0 < c1 and fc1 > c0:
                    by_file.setdefault(tile.path, []).append((band, tile))
        values: dict[tuple[str, str], np.ndarray] = {}
        for path, wanted in by_file.items():
            tile0 = wanted[0][1]
            try:
                read = _read_tile_bands(tuple(t for _, t in wanted), self.grid, rows, cols)
            except _READ_ERRORS as exc:
                raise _read_failure(tile0.name, exc) from exc
            for (band, tile), array in zip(wanted, read, strict=True):
                values[(band, tile.name)] = array
        out = {}
        for band, tiles in self.tiles.items():
            block = np.full((r1 - r0, c1 - c0), np.nan, dtype=_F32)
            for tile in tiles:  # first valid value in manifest order, scaled
                tile_values = values.get((band, tile.name))
                if tile_values is None:
                    continue
                hole = np.isnan(block)
                block[hole] = tile_values[hole] * _F32(tile.scale)
                if not np.isnan(block).any():
                    break
            out[band] = block
        return out


def _read_tile_bands(tiles: tuple[_Tile, ...], grid: tuple, rows: tuple[int, int],
                     cols: tuple[int, int]) -> list[np.ndarray]:
    """The bands of one file (`tiles` share a path) in a grid window: one read call, float32,
    NaN where the file has no data."""
    (r0, r1), (c0, c1) = rows, cols
    first = tiles[0]
    indexes = [t.band for t in tiles]
    empty = [np.full((r1 - r0, c1 - c0), np.nan, dtype=_F32) for _ in tiles]
    with rasterio.Env(**dict(first.gdal_options)), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(first.path) as ds:
            if first.offset is not None:
                ro, co = first.offset
                sr0, sr1 = max(r0 - ro, 0), min(r1 - ro, ds.height)
                sc0, sc1 = max(c0 - co, 0), min(c1 - co, ds.width)
                if sr0 >= sr1 or sc0 >= sc1:
                    return empty
                window = Window(sc0, sr0, sc1 - sc0, sr1 - sr0)
                data = ds.read(indexes, window=window).astype(_F32)
                if first.nodata is not None:
                    data[data == _F32(first.nodata)] = np.nan
                if first.alpha is not None:
                    data[:, ds.read(first.alpha, window=window) == 0] = np.nan
                for out, band in zip(empty, data, strict=True):
                    out[sr0 + ro - r0:sr1 + ro - r0, sc0 + co - c0:sc1 + co - c0] = band
                return empty
            crs_wkt, transform, width, height = grid
            with WarpedVRT(ds, crs=CRS.from_wkt(crs_wkt), transform=Affine(*transform),
                           width=width, height=height, resampling=Resampling.bilinear,
                           src_nodata=first.nodata, nodata=np.nan, dtype="float32",
                           src_alpha=first.alpha or 0) as vrt:
                data = vrt.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(_F32)
                return list(data)


def _band_array(tiles: Sequence[_Tile], *, grid: Grid, chunks: int, name: str) -> xr.DataArray:
    grid_data = (grid.crs.to_wkt(), tuple(grid.transform)[:6], grid.width, grid.height)
    tiles = tuple(tiles)
    data = dsa.map_blocks(
        _band_block, tiles, grid_data,
        chunks=dsa.core.normalize_chunks((chunks, chunks), grid.shape),
        dtype=_F32, meta=np.empty((0, 0), dtype=_F32),
        name=f"mosaic-{name}-{tokenize(tiles, grid_data, chunks)}",
    )
    x, y = grid.coords()
    da = xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name=name)
    da = da.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    return da.rio.write_nodata(np.nan, encoded=False)


def _tiles(sources: Sequence[ImageSource], band: str, headers: Mapping[str, HeaderInfo],
           grid: Grid, scale: float) -> list[_Tile]:
    tiles = []
    for source in sources:
        header = headers[source.name]
        alpha = source.bands.index("alpha") + 1 if "alpha" in source.bands else None
        offset = _aligned_offset(header, grid)
        for index, name in enumerate(source.bands):
            if name == band:
                tiles.append(_Tile(
                    name=source.name, path=source.path,
                    gdal_options=tuple(sorted(dict(source.gdal_options).items())),
                    band=index + 1, alpha=alpha, nodata=header.nodata, scale=float(scale),
                    offset=offset, footprint=_footprint(header, grid, offset),
                ))
    return tiles


def mosaic(
    *,
    sources: Sequence[ImageSource],
    reflectance_scale: float,
    chunks: int = 2048,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Mosaic:
    """Lazy band-wise mosaic of `sources` (see the module docstring); reads headers only.

    Returns one float32 reflectance DataArray (DN × reflectance_scale, NaN = nodata) per optical
    band present, on the batch grid, and the thermal digital numbers (unscaled, NaN = nodata) on
    the thermal grid: CRS and resolution of the first thermal image, extent = union of the thermal
    images. Thermal units are applied later by `thermal.to_celsius`.
    """
    headers = {s.name: open_header(s) for s in sources}
    optical = [s for s in sources if any(b in OPTICAL_BANDS for b in s.bands)]
    thermal = [s for s in sources if "thermal" in s.bands]
    grid = batch_grid(optical, max_pixels=max_pixels) if optical else None
    bands: dict[str, xr.DataArray] = {}
    band_tiles: dict[str, tuple[_Tile, ...]] = {}
    for band in OPTICAL_BANDS:
        carriers = [s for s in optical if band in s.bands]
        if carriers:
            band_tiles[band] = tuple(_tiles(carriers, band, headers, grid, reflectance_scale))
            bands[band] = _band_array(band_tiles[band], grid=grid, chunks=chunks, name=band)
    thermal_grid = thermal_dn = None
    if thermal:
        thermal_grid = batch_grid(thermal, bands=("thermal",), max_pixels=max_pixels)
        thermal_dn = _band_array(_tiles(thermal, "thermal", headers, thermal_grid, 1.0),
                                 grid=thermal_grid, chunks=chunks, name="thermal_dn")
    return Mosaic(grid=grid, bands=bands, thermal_dn=thermal_dn, thermal_grid=thermal_grid,
                  tiles=band_tiles)
