"""A synthetic but plausible sample batch: what `imagery-pipeline demo` and tests upload.

A 5-band multispectral orthomosaic over four fields (healthy, moderate, stressed crops and bare
soil) with a pond, written as two overlapping tiles in UTM 33N, a radiometric thermal tile in
centikelvin with two warm patches, and a zones GeoJSON in EPSG:4326. Dagster-free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

CRS = "EPSG:32633"
ORIGIN = (500_000.0, 5_300_000.0)  # upper-left corner, metres
PIXEL = 0.5  # metres

# (nir, red, red_edge, green, blue) surface reflectance per cover type
COVERS = {
    "healthy": (0.45, 0.04, 0.25, 0.08, 0.03),
    "moderate": (0.32, 0.09, 0.2, 0.09, 0.05),
    "stressed": (0.24, 0.13, 0.18, 0.1, 0.07),
    "bare": (0.25, 0.2, 0.22, 0.15, 0.1),
    "water": (0.02, 0.04, 0.03, 0.06, 0.08),
}


@dataclass(frozen=True)
class SampleBatch:
    batch_id: str
    folder: Path
    files: tuple[str, ...]  # relative names, manifest.json last


def _cover_map(size: int) -> np.ndarray:
    half = size // 2
    cover = np.empty((size, size), dtype=object)
    cover[:half, :half] = "healthy"
    cover[:half, half:] = "moderate"
    cover[half:, :half] = "stressed"
    cover[half:, half:] = "bare"
    yy, xx = np.mgrid[0:size, 0:size]
    cover[(yy - 0.75 * size) ** 2 + (xx - 0.75 * size) ** 2 < (0.12 * size) ** 2] = "water"
    return cover


def _reflectance(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cover = _cover_map(size)
    bands = np.zeros((5, size, size), dtype=np.float64)
    for name, values in COVERS.items():
        mask = cover == name
        for i, v in enumerate(values):
            bands[i][mask] = v
    bands *= 1 + rng.normal(0, 0.04, size=bands.shape)
    return np.clip(bands, 0.001, 1.0)


def _write(path: Path, data: np.ndarray, *, transform, crs: str, nodata, descriptions) -> None:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": crs,
               "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate", "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d)


def write_sample_batch(folder: Path, *, batch_id: str = "demo-farm-2026-06-14", size: int = 1024,
                       seed: int = 7) -> SampleBatch:
    """Write the sample batch's files into `folder` and return their names (manifest last)."""
    folder.mkdir(parents=True, exist_ok=True)
    refl = _reflectance(size, seed)
    dn = np.round(refl * 10_000).astype(np.uint16)  # reflectance_scale 0.0001
    # nir, red, red_edge, green, blue -> file order blue, green, red, red_edge, nir
    ordered = dn[[4, 3, 1, 2, 0]]
    x0, y0 = ORIGIN
    overlap = 32
    west = size // 2 + overlap
    names = ["Blue", "Green", "Red", "RedEdge", "NIR"]
    _write(folder / "ortho_west.tif", ordered[:, :, :west], crs=CRS, nodata=0,
           transform=from_origin(x0, y0, PIXEL, PIXEL), descriptions=names)
    east_start = size // 2 - overlap
    _write(folder / "ortho_east.tif", ordered[:, :, east_start:], crs=CRS, nodata=0,
           transform=from_origin(x0 + east_start * PIXEL, y0, PIXEL, PIXEL), descriptions=names)

    # Thermal: 4x coarser, canopy ~24 degC, bare soil ~38 degC, water ~18 degC, two hot patches.
    tsize = size // 4
    cover = _cover_map(size)[::4, ::4]
    celsius = np.full((tsize, tsize), 24.0)
    celsius[cover == "moderate"] = 27.0
    celsius[cover == "stressed"] = 31.0
    celsius[cover == "bare"] = 38.0
    celsius[cover == "water"] = 18.0
    celsius[20:32, 20:32] = 45.0
    celsius[60:66, 100:110] = 47.5
    rng = np.random.default_rng(seed + 1)
    celsius += rng.normal(0, 0.3, celsius.shape)
    centikelvin = np.round((celsius + 273.15) * 100).astype(np.uint16)[None]
    _write(folder / "thermal.tif", centikelvin, crs=CRS, nodata=None,
           transform=from_origin(x0, y0, PIXEL * 4, PIXEL * 4), descriptions=["LWIR"])

    # Zones in EPSG:4326: the four quadrants as fields.
    to_wgs = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    extent = size * PIXEL
    features = []
    for name, (col, row) in {"North-west field": (0, 0), "North-east field": (1, 0),
                             "South-west field": (0, 1), "South-east field": (1, 1)}.items():
        half = extent / 2
        xa, ya = x0 + col * half + 2, y0 - row * half - 2
        xb, yb = xa + half - 4, ya - half + 4
        ring = [to_wgs.transform(x, y) for x, y in ((xa, ya), (xb, ya), (xb, yb), (xa, yb), (xa, ya))]
        features.append({"type": "Feature", "properties": {"name": name},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    (folder / "fields.geojson").write_text(json.dumps({"type": "FeatureCollection",
                                                       "features": features}))

    images = ["ortho_west.tif", "ortho_east.tif", "thermal.tif"]
    manifest = {
        "schema_version": 1,
        "batch_id": batch_id,
        "captured_at": "2026-06-14T10:32:00Z",
        "platform": "Synthetic quadcopter",
        "sensor": "Synthetic 5-band multispectral + LWIR",
        "images": [
            {"path": "ortho_west.tif", "sha256": _sha256(folder / "ortho_west.tif"),
             "bands": ["blue", "green", "red", "red_edge", "nir"]},
            {"path": "ortho_east.tif", "sha256": _sha256(folder / "ortho_east.tif")},
            {"path": "thermal.tif", "sha256": _sha256(folder / "thermal.tif"),
             "bands": ["thermal"], "thermal_unit": "centikelvin"},
        ],
        "reflectance_scale": 0.0001,
        "zones": "fields.geojson",
        "auto_report": True,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return SampleBatch(batch_id=batch_id, folder=folder,
                       files=(*images, "fields.geojson", "manifest.json"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
