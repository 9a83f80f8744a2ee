"""Synthetic 5-band uint16 orthomosaics (blue, green, red, red_edge, nir), generated strip by strip.

Values are spatially varying and noisy like a real multispectral orthomosaic of fields: a smooth
vigour field per parcel, crop rows, slow illumination change, sensor noise (so DEFLATE sees
realistic entropy), reflectance × 10000 as DN, and a nodata (0) collar outside a rotated flight
footprint (~15 % of the grid). DEFLATE + horizontal predictor, 512² tiles, pixel interleave
(what photogrammetry tools write; `--interleave band` for the other layout). Memory: one strip
of 512 rows at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

BANDS = ("blue", "green", "red", "red_edge", "nir")
DESCRIPTIONS = ("Blue", "Green", "Red", "RedEdge", "NIR")
REFLECTANCE_SCALE = 1e-4
PIXEL_M = 0.05
STRIP = 512
WORK = Path(__file__).resolve().parent / "work"


def input_path(size: int, *, interleave: str = "pixel") -> Path:
    suffix = "" if interleave == "pixel" else f"_{interleave}"
    return WORK / "inputs" / f"ortho_{size}{suffix}.tif"


def _strip(size: int, row0: int, rows: int) -> np.ndarray:
    """(5, rows, size) uint16 DN of rows [row0, row0 + rows); deterministic per strip."""
    rng = np.random.default_rng(row0 * 7919 + size)
    y = np.arange(row0, row0 + rows, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    tau = np.float32(2 * np.pi)
    parcel = ((x // 1500).astype(np.int32) * 31 + (y // 1300).astype(np.int32) * 17) % 11
    vigour = (0.15 + 0.07 * parcel
              + 0.12 * np.sin(tau * x / 2300 + 0.7) * np.sin(tau * y / 1900 + 1.9)
              + 0.08 * np.sin(tau * (0.8 * x + 0.6 * y) / 12.0))  # crop rows, 0.6 m apart
    vigour = np.clip(vigour, 0.0, 1.0).astype(np.float32)
    light = (1.0 + 0.08 * np.sin(tau * (x + 0.3 * y) / 5000)).astype(np.float32)
    base = {
        "blue": 0.07 - 0.03 * vigour, "green": 0.08 + 0.02 * vigour,
        "red": 0.13 - 0.10 * vigour, "red_edge": 0.14 + 0.14 * vigour,
        "nir": 0.20 + 0.40 * vigour,
    }
    c = (size - 1) / 2.0
    cos, sin = np.float32(np.cos(0.21)), np.float32(np.sin(0.21))
    u, w = (x - c) * cos + (y - c) * sin, -(x - c) * sin + (y - c) * cos
    inside = (np.abs(u) < 0.46 * size) & (np.abs(w) < 0.46 * size)
    out = np.empty((len(BANDS), rows, size), dtype=np.uint16)
    for i, band in enumerate(BANDS):
        noise = rng.standard_normal((rows, size), dtype=np.float32) * np.float32(0.004)
        dn = (base[band] * light + noise) / REFLECTANCE_SCALE
        out[i] = np.where(inside, np.clip(dn, 1, 65535), 0).astype(np.uint16)
    return out


def generate(size: int, *, interleave: str = "pixel", force: bool = False) -> Path:
    """Create (or reuse) the cached input of `size`² pixels and return its path."""
    path = input_path(size, interleave=interleave)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": len(BANDS),
        "dtype": "uint16", "nodata": 0, "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 5000000.0, PIXEL_M, PIXEL_M),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "DEFLATE",
        "predictor": 2, "interleave": interleave, "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    with rasterio.Env(GDAL_CACHEMAX=256 * 1024 * 1024), rasterio.open(tmp, "w", **profile) as dst:
        for i, d in enumerate(DESCRIPTIONS, start=1):
            dst.set_band_description(i, d)
        for row0 in range(0, size, STRIP):
            rows = min(STRIP, size - row0)
            dst.write(_strip(size, row0, rows), window=Window(0, row0, size, rows))
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,8192,16384")
    parser.add_argument("--interleave", choices=("pixel", "band"), default="pixel")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        print(generate(size, interleave=args.interleave, force=args.force))


if __name__ == "__main__":
    main()
