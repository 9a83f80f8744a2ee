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
    """Write an RGBA PNG of the uint8 RGBA COG `cog_path`, at most `max_size` px on the long side.

    Reads a decimated view (`out_shape`, so GDAL serves it from the COG's overviews, never the full
    raster) with NEAREST resampling, so every preview pixel is a ramp colour, exactly as in the COG.
    Written to a temporary name and renamed. Returns (width, height) of the PNG.
    """
    dst = Path(dst)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(cog_path) as src:
        if src.count != 4 or src.dtypes[0] != "uint8":
            raise ValueError(
                f"{cog_path}: a preview needs a 4-band uint8 RGBA heatmap, got {src.count} band(s) "
                f"of {src.dtypes[0]}; colourise the raster first (pipeline.core.ramps.colorize)"
            )
        width, height = preview_shape(width=src.width, height=src.height, max_size=max_size)
        rgba = src.read(out_shape=(4, height, width), resampling=Resampling.nearest)
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
