"""Colour ramps as data, and colourisation of a float raster into RGBA (DESIGN.md §3 `scale`).

A ramp is a 256-entry uint8 RGB lookup table taken from a matplotlib colormap the first time it is
asked for (matplotlib is imported then, not at module import) and cached. A value v maps to entry
``min(floor((clip(v, vmin, vmax) - vmin) / (vmax - vmin) * 256), 255)`` -- matplotlib's own
convention -- so the heatmap COG, the PNG preview and the PDF legend agree on what a colour means.

vmin/vmax are fixed per index (see `pipeline.core.registry`), never stretched per raster or per
chunk: a ramp stretched per dask chunk would colour each chunk differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import dask.array as dsa
import numpy as np
import xarray as xr

N_COLOURS = 256


@dataclass(frozen=True)
class Scale:
    """A colour ramp (a matplotlib colormap name) over a fixed value range [vmin, vmax]."""

    ramp: str
    vmin: float
    vmax: float

    def __post_init__(self) -> None:
        if not self.vmin < self.vmax:
            raise ValueError(
                f"Scale {self.ramp!r}: vmin ({self.vmin}) must be below vmax ({self.vmax})"
            )

    def as_dict(self) -> dict[str, str | float]:
        """The `scale` object of summary.json: {"ramp", "vmin", "vmax"}."""
        return {"ramp": self.ramp, "vmin": float(self.vmin), "vmax": float(self.vmax)}


@lru_cache(maxsize=None)
def _lut(ramp: str) -> np.ndarray:
    from matplotlib import colormaps  # deferred: matplotlib is slow to import

    try:
        cmap = colormaps[ramp]
    except KeyError:
        raise ValueError(f"unknown colour ramp {ramp!r}; use a matplotlib colormap name") from None
    rgba = cmap(np.linspace(0.0, 1.0, N_COLOURS))
    table = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    table.flags.writeable = False
    return table


def lut(ramp: str) -> np.ndarray:
    """The (256, 3) uint8 RGB lookup table of `ramp` (read-only, cached)."""
    return _lut(ramp)


def _lut_index(values: np.ndarray, *, vmin: float, vmax: float) -> np.ndarray:
    """LUT entry of each value (float64 arithmetic; NaN maps to entry 0, masked by the caller)."""
    t = (np.clip(values.astype(np.float64), vmin, vmax) - vmin) / (vmax - vmin)
    index = np.floor(np.nan_to_num(t, nan=0.0) * N_COLOURS)
    return np.minimum(index, N_COLOURS - 1).astype(np.intp)


def _colorize_block(
    block: np.ndarray, *, table: np.ndarray, vmin: float, vmax: float
) -> np.ndarray:
    valid = ~np.isnan(block)
    out = np.zeros((4, *block.shape), dtype=np.uint8)
    rgb = table[_lut_index(block, vmin=vmin, vmax=vmax)]  # (y, x, 3)
    out[:3] = np.moveaxis(rgb, -1, 0)
    out[:3, ~valid] = 0
    out[3] = np.where(valid, 255, 0).astype(np.uint8)
    return out


def colorize(da: xr.DataArray, *, scale: Scale) -> xr.DataArray:
    """RGBA uint8 heatmap of a 2-D float raster, dims (band=4, y, x); alpha 0 where NaN.

    Values are clipped to [scale.vmin, scale.vmax]. Dask input stays lazy (one `map_blocks` with the
    same fixed mapping for every chunk); coords and the rio CRS/transform are kept.
    """
    if da.ndim != 2:
        raise ValueError(f"colorize expects a 2-D (y, x) raster, got dims {da.dims}")
    table = lut(scale.ramp)
    kwargs = {"table": table, "vmin": float(scale.vmin), "vmax": float(scale.vmax)}
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
    """`n` evenly spaced values from vmin to vmax, each with the RGB colour `colorize` gives it."""
    if n < 2:
        raise ValueError(f"legend_stops needs n >= 2, got {n}")
    values = np.linspace(scale.vmin, scale.vmax, n)
    table = lut(scale.ramp)
    index = _lut_index(values, vmin=float(scale.vmin), vmax=float(scale.vmax))
    return [
        (float(v), (int(table[i, 0]), int(table[i, 1]), int(table[i, 2])))
        for v, i in zip(values, index, strict=True)
    ]
