"""Colour ramps as data: the ONE colour table of a scale, and the value -> palette index kernel
(DESIGN.md §3.1).

A heatmap is a paletted uint8 raster. A valid (finite) value v maps to the palette index
``p = 1 + min(floor((clip(v, vmin, vmax) - vmin) / (vmax - vmin) * 255), 254)``, computed in
float64; nodata (NaN) and ±inf map to 0. `palette_index` is the only implementation: the heatmap
COGs, the API's map tiles and legends, the PNG preview and the PDF legend all call it.
`colour_table(ramp)` is the (256, 4) RGBA table: entry 0 is (0, 0, 0, 0), entry p is the matplotlib
colormap sampled at (p - 1) / 254 with alpha 255. The heatmap COG carries this table, the PNG
preview expands it, and the PDF legend and histogram take their colours from it
(`colours`), so a colour means the same value in every output. matplotlib is imported the first
time a table is asked for, not at module import, and tables are cached.

vmin/vmax are fixed per index (see `pipeline.core.registry`), never stretched per raster or per
chunk: a ramp stretched per dask chunk would colour each chunk differently.
"""

from __future__ import annotations

from functools import lru_cache

import dask.array as dsa
import numpy as np
import xarray as xr

from pipeline.core.values import Scale  # re-exported: a colour ramp over [vmin, vmax]

N_COLOURS = 256
N_PALETTE = 255  # palette entries 1..255 carry the ramp; 0 is nodata


@lru_cache(maxsize=None)
def _colour_table(ramp: str) -> np.ndarray:
    from matplotlib import colormaps  # deferred: matplotlib is slow to import

    try:
        cmap = colormaps[ramp]
    except KeyError:
        raise ValueError(f"unknown colour ramp {ramp!r}; use a matplotlib colormap name") from None
    table = np.zeros((N_COLOURS, 4), dtype=np.uint8)
    rgba = cmap(np.arange(N_PALETTE) / (N_PALETTE - 1))
    table[1:, :3] = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    table[1:, 3] = 255
    table.flags.writeable = False
    return table


def colour_table(ramp: str) -> np.ndarray:
    """The (256, 4) uint8 RGBA palette of `ramp` (read-only, cached): entry 0 = (0, 0, 0, 0)
    (nodata), entry p in 1..255 = the ramp at (p - 1) / 254, alpha 255 (DESIGN.md §3.1)."""
    return _colour_table(ramp)


def gdal_colormap(ramp: str) -> dict[int, tuple[int, int, int, int]]:
    """`colour_table(ramp)` as the {index: (r, g, b, a)} mapping of rasterio's `write_colormap`."""
    return {i: tuple(int(c) for c in row) for i, row in enumerate(colour_table(ramp))}


def palette_index(values: np.ndarray, *, vmin: float, vmax: float,
                  out: np.ndarray | None = None) -> np.ndarray:
    """The heatmap kernel, the ONE value -> palette index mapping (DESIGN.md §3.1): uint8
    ``1 + min(floor((clip(v, vmin, vmax) - vmin) / (vmax - vmin) * 255), 254)`` for a finite v,
    0 (transparent) for NaN and ±inf.

    Computed in float64, in the formula's order of operations, so a value on a palette boundary
    lands where the formula puts it whatever the input dtype (float32 arithmetic puts some one
    entry low). Called per window or tile, so the float64 temporary is one window's size.
    `vmin`/`vmax` are fixed per scale, never per chunk.
    """
    values = np.asarray(values)
    vmin, vmax = float(vmin), float(vmax)
    t = values.astype(np.float64)  # a copy: the input is never written
    np.clip(t, vmin, vmax, out=t)
    t -= vmin
    t /= vmax - vmin
    t *= N_PALETTE
    np.floor(t, out=t)
    np.minimum(t, N_PALETTE - 1, out=t)
    t += 1
    t[~np.isfinite(values)] = 0
    if out is None:
        out = np.empty(values.shape, dtype=np.uint8)
    np.copyto(out, t, casting="unsafe")
    return out


def colours(scale: Scale, values) -> np.ndarray:
    """(n, 4) uint8 RGBA colour of each value as the heatmap shows it (clipped to the scale;
    NaN, ±inf → transparent): `colour_table` at `palette_index`. For legends, charts, tiles."""
    index = palette_index(np.asarray(values, dtype=np.float64).ravel(), vmin=float(scale.vmin),
                          vmax=float(scale.vmax))
    return colour_table(scale.ramp)[index]


def _colorize_block(block: np.ndarray, *, ramp: str, vmin: float, vmax: float) -> np.ndarray:
    rgba = colour_table(ramp)[palette_index(block, vmin=vmin, vmax=vmax)]  # (y, x, 4)
    return np.ascontiguousarray(np.moveaxis(rgba, -1, 0))


def colorize(da: xr.DataArray, *, scale: Scale) -> xr.DataArray:
    """RGBA uint8 expansion of the paletted heatmap of a 2-D float raster, dims (band=4, y, x);
    (0, 0, 0, 0) where NaN. For pictures (previews, tiles); the COG itself is paletted.

    Values are clipped to [scale.vmin, scale.vmax]. Dask input stays lazy (one `map_blocks` with the
    same fixed mapping for every chunk); coords and the rio CRS/transform are kept.
    """
    if da.ndim != 2:
        raise ValueError(f"colorize expects a 2-D (y, x) raster, got dims {da.dims}")
    kwargs = {"ramp": scale.ramp, "vmin": float(scale.vmin), "vmax": float(scale.vmax)}
    data = da.data
    if isinstance(data, dsa.Array):
        rgba = data.map_blocks(
            _colorize_block,
            dtype=np.uint8,
            new_axis=0,
            chunks=((4,), *data.chunks),
            meta=np.empty((0, 0, 0), dtype=np.uint8),
            **kwargs,
        )
    else:
        rgba = _colorize_block(np.asarray(data), **kwargs)
    coords = {name: coord for name, coord in da.coords.items()}
    coords["band"] = np.arange(1, 5)
    out = xr.DataArray(
        rgba,
        dims=("band", *da.dims),
        coords=coords,
        name=f"{da.name}_heatmap" if da.name is not None else None,
        attrs={"long_name": ("red", "green", "blue", "alpha"), "ramp": scale.ramp,
               "vmin": float(scale.vmin), "vmax": float(scale.vmax)},
    )
    crs = da.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out


def legend_stops(scale: Scale, n: int = 6) -> list[tuple[float, tuple[int, int, int]]]:
    """`n` evenly spaced values from vmin to vmax, each with the RGB colour the heatmap gives it."""
    if n < 2:
        raise ValueError(f"legend_stops needs n >= 2, got {n}")
    values = np.linspace(scale.vmin, scale.vmax, n)
    return [(float(v), (int(c[0]), int(c[1]), int(c[2])))
            for v, c in zip(values, colours(scale, values), strict=True)]
