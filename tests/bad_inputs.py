"""Generators of bad uploads for the fault matrix (tests/test_faults.py, README "Reliability").

Each writer makes one small file of one kind of bad input at `path` and returns the path; the
`BAD_FILES` table pairs each with the words the refusal must contain (the file is always named,
and the message says how to fix the input). Every file is tiny: the decompression bomb declares
200,000 × 200,000 pixels in about 150 kB (its tile index) (a sparse, tiled, compressed GeoTIFF).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from tests.rasters import UTM33, north_up, ramp, write_raster

SIZE = 64
ORIGIN = (500_000.0, 5_300_000.0)
GOOD_BANDS = ["blue", "green", "red", "red_edge", "nir"]


def transform(*, shift_m: float = 0.0):
    return north_up(left=ORIGIN[0] + shift_m, top=ORIGIN[1], res=0.5)


def good_ortho(path: Path, *, size: int = SIZE, seed: int = 1, shift_m: float = 0.0) -> Path:
    """A valid 5-band uint16 reflectance orthomosaic (DN × 0.0001), nodata 0, tiled."""
    bands = np.stack([ramp(size, size, lo=lo, hi=hi, seed=seed + i)
                      for i, (lo, hi) in enumerate([(0.02, 0.08), (0.05, 0.12), (0.03, 0.2),
                                                    (0.15, 0.3), (0.25, 0.5)])])
    return write_raster(path, (bands * 10_000).astype("uint16"), transform=transform(shift_m=shift_m),
                        nodata=0, tiled=True, blocksize=16, compress="deflate")


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def html_error_page(path: Path) -> Path:
    """What a proxy or a portal hands out instead of the file, saved under the image's name."""
    path.write_bytes(b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
                     b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n")
    return path


def truncated_cog(path: Path) -> Path:
    """A tiled, compressed GeoTIFF cut at 60 %: the header opens, the later tiles are missing."""
    good_ortho(path, size=256)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def no_crs(path: Path) -> Path:
    return write_raster(path, np.ones((5, SIZE, SIZE), dtype="uint16"), crs=None, transform=None)


def all_nodata(path: Path) -> Path:
    """A georeferenced 5-band image whose every pixel is the nodata value."""
    return write_raster(path, np.zeros((5, SIZE, SIZE), dtype="uint16"), transform=transform(),
                        nodata=0, tiled=True, blocksize=16)


def three_bands(path: Path) -> Path:
    """Three bands where the manifest names five."""
    return write_raster(path, np.ones((3, SIZE, SIZE), dtype="uint16"), transform=transform(),
                        nodata=0)


def complex_pixels(path: Path) -> Path:
    data = np.ones((5, SIZE, SIZE), dtype="complex64")
    return write_raster(path, data, transform=transform(), dtype="complex64")


def int8_pixels(path: Path) -> Path:
    return write_raster(path, np.ones((5, SIZE, SIZE), dtype="int8"), transform=transform(),
                        dtype="int8")


def far_away(path: Path) -> Path:
    """A valid image 10 km east of `good_ortho`: it does not overlap it."""
    return good_ortho(path, shift_m=10_000.0)


def decompression_bomb(path: Path, *, side: int = 200_000) -> Path:
    """A GeoTIFF declaring side × side pixels, ~150 kB on disk (the tile index): no tile is written."""
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 1, "dtype": "uint8",
               "crs": UTM33, "transform": transform(), "tiled": True, "blockxsize": 2048,
               "blockysize": 2048, "compress": "deflate", "sparse_ok": True, "BIGTIFF": "YES"}
    with rasterio.open(path, "w", **profile):
        pass
    return path


@dataclass(frozen=True)
class BadFile:
    """One row-6/8 case: how to write it, the manifest entry's bands, and what the refusal says."""

    case: str
    write: Callable[[Path], Path]
    expect: tuple[str, ...]  # substrings of the failure text (besides the file name)
    bands: tuple[str, ...] = tuple(GOOD_BANDS)
    with_good_tiles: bool = False  # two overlapping good tiles come first (for "does not overlap")


BAD_FILES = [
    BadFile("zero_bytes", zero_bytes, ("is empty (0 bytes)", "upload the file again")),
    BadFile("html_error_page", html_error_page, ("is not a raster GDAL can read", "upload the file again")),
    BadFile("truncated_cog", truncated_cog, ("truncated", "upload the file again")),
    BadFile("no_crs", no_crs, ("has no CRS", "gdal_translate -a_srs")),
    BadFile("all_nodata", all_nodata, ("no valid pixel", "nodata")),
    BadFile("wrong_band_count", three_bands, ("names 5 band(s)", "the file has 3")),
    BadFile("complex_dtype", complex_pixels, ("pixel type complex64", "not supported")),
    BadFile("int8_dtype", int8_pixels, ("pixel type int8", "not supported")),
    BadFile("no_overlap", far_away, ("does not overlap", "own batch"), with_good_tiles=True),
]
