"""Small PNG previews of heatmap COGs (DESIGN.md §3 `<index>_heatmap.png`)."""

from __future__ import annotations

import math
import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning


def preview_shape(*, width: int, height: int, max_size: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most `max_size`, keeping the aspect ratio."""
    if max_size < 1:
        raise ValueError(f"max_size must be positive, got {max_size}")
    factor = min(1.0, max_size / max(width, height))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def png_preview(cog_path: Path | str, dst: Path, *, max_size: int = 1024) -> tuple[int, int]:
    """Write an RGBA PNG of the paletted heatmap COG `cog_path`, at most `max_size` px on the long
    side, coloured by the COG's own colour table (so by `ramps.colour_table`, DESIGN.md §3.1).

    Reads a decimated view (`out_shape`, so GDAL serves it from the COG's overviews, never the full
    raster) with NEAREST resampling, so every preview pixel is a colour of the scale, exactly as in
    the COG; palette entry 0 (nodata) is transparent. Written to a temporary name and renamed.
    Returns (width, height) of the PNG.
    """
    dst = Path(dst)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(cog_path) as src:
        if (src.count != 1 or src.dtypes[0] != "uint8"
                or src.colorinterp[0] != ColorInterp.palette):
            raise ValueError(
                f"{cog_path}: a preview needs a 1-band uint8 paletted heatmap, got {src.count} "
                f"band(s) of {src.dtypes[0]}; colourise the raster first "
                "(pipeline.core.ramps.palette_index, COG profile 'palette')")
        width, height = preview_shape(width=src.width, height=src.height, max_size=max_size)
        index = src.read(1, out_shape=(height, width), resampling=Resampling.nearest)
        colormap = src.colormap(1)
    table = np.zeros((256, 4), dtype=np.uint8)
    for i, rgba in colormap.items():
        table[i] = rgba
    rgba = np.ascontiguousarray(np.moveaxis(table[index], -1, 0))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp.png")
    try:
        with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
            # A preview is a picture, deliberately without georeferencing (no .aux.xml).
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            _write_png(tmp, rgba)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return width, height


def _write_png(path: Path, rgba: np.ndarray) -> None:
    _, height, width = rgba.shape
    with rasterio.open(
        path, "w", driver="PNG", width=width, height=height, count=4, dtype=np.uint8
    ) as out:
        out.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)
        out.write(rgba)
