"""The management-zone files (DESIGN.md §3.4): paletted class COG, its map picture, GeoJSON
(EPSG:4326), zipped shapefile (grid CRS, with .prj) and the ISOXML prescription.

Size budget (tested): at most `mgmt_zones.VERTEX_BUDGET` (20 000) vertices over all features;
GeoJSON coordinates rounded to 7 decimals (~1 cm), so the GeoJSON stays under ~1 MB and the
zipped shapefile and ISOXML far below it. Dagster-free.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapefile
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.enums import WktVersion
from rasterio.enums import Resampling
from shapely.geometry.base import BaseGeometry

from pipeline.core import isoxml
from pipeline.core.cog import translate_to_cog
from pipeline.core.mgmt_zones import ZonePart, Zonation
from pipeline.core.units import M2_PER_HA

RAMP = "RdYlGn"  # red = low vigour, as on the NDVI heatmap
GEOJSON_DECIMALS = 7
# §3.1's paletted profile: one uint8 band, nodata 0, NEAREST overviews (every overview pixel
# stays a class colour); the colour table travels with the stage.
COG_PROFILE = "palette"


def class_colours(classes: int) -> list[tuple[int, int, int]]:
    """RGB of classes 1..classes, from red (1, lowest vigour) to green."""
    from matplotlib import colormaps

    cmap = colormaps[RAMP]
    positions = [0.5] if classes == 1 else np.linspace(0.08, 0.92, classes)
    return [tuple(int(round(v * 255)) for v in cmap(p)[:3]) for p in positions]


def palette(classes: int) -> dict[int, tuple[int, int, int, int]]:
    """The colour table: entry 0 transparent (no data), entry c the class colour, rest unused."""
    table = {i: (0, 0, 0, 0) for i in range(256)}
    for c, rgb in enumerate(class_colours(classes), start=1):
        table[c] = (*rgb, 255)
    return table


def write_class_cog(zonation: Zonation, dst: Path) -> Path:
    """The staged class raster as a paletted uint8 COG (nodata 0) at `dst`."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(zonation.stage, "r+") as stage:
        stage.write_colormap(1, palette(zonation.classes))
    translate_to_cog(zonation.stage, Path(dst), profile=COG_PROFILE)
    return Path(dst)


def class_map_png(cog_path: str | Path, dst: Path, *, classes: int, max_size: int = 1024,
                  gdal_options: Mapping[str, str] | None = None) -> Path:
    """An RGBA PNG of the class COG, ≤ `max_size` px, read decimated (overviews, NEAREST)."""
    from PIL import Image

    with rasterio.Env(**dict(gdal_options or {})), rasterio.open(cog_path) as src:
        factor = min(1.0, max_size / max(src.width, src.height))
        w, h = max(1, int(src.width * factor)), max(1, int(src.height * factor))
        values = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    table = np.array([palette(classes)[i] for i in range(256)], dtype=np.uint8)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    Image.fromarray(table[values], "RGBA").save(tmp, format="PNG", optimize=True)
    os.replace(tmp, dst)
    return dst


def _rate(rates: Mapping[int, float] | None, zone_class: int) -> float | None:
    return None if rates is None else rates.get(zone_class)


def _properties(part: ZonePart, rates: Mapping[int, float] | None) -> dict:
    return {"class": part.zone_class, "field": part.field,
            "area_ha": round(part.area_m2 / M2_PER_HA, 4),
            "ndvi_mean": None if part.ndvi_mean is None else round(part.ndvi_mean, 4),
            "rate": _rate(rates, part.zone_class)}


def to_wgs84(geometries: Sequence[BaseGeometry], crs) -> list[BaseGeometry]:
    """Geometries in EPSG:4326 (lon, lat), rounded to `GEOJSON_DECIMALS`."""
    transformer = Transformer.from_crs(ProjCRS.from_user_input(crs.to_wkt()), "EPSG:4326",
                                       always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(coords[:, 0], coords[:, 1])
        return np.round(np.column_stack([lon, lat]), GEOJSON_DECIMALS)

    return [shapely.transform(g, project) for g in geometries]


def geojson_bytes(zonation: Zonation, *, rates: Mapping[int, float] | None) -> bytes:
    """management_zones.geojson: a FeatureCollection in EPSG:4326, exterior rings
    counter-clockwise (RFC 7946), one feature per (class, field)."""
    wgs = to_wgs84([p.geometry for p in zonation.parts], zonation.grid.crs)
    features = []
    for part, geometry in zip(zonation.parts, wgs, strict=True):
        oriented = shapely.orient_polygons(geometry, exterior_cw=False)
        features.append({"type": "Feature", "properties": _properties(part, rates),
                         "geometry": shapely.geometry.mapping(oriented)})
    doc = {"type": "FeatureCollection", "features": features}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def shapefile_zip(zonation: Zonation, *, rates: Mapping[int, float] | None,
                  stem: str = "management_zones") -> bytes:
    """management_zones.shp.zip: .shp/.shx/.dbf/.prj/.cpg in the grid's CRS."""
    shp, shx, dbf = io.BytesIO(), io.BytesIO(), io.BytesIO()
    writer = shapefile.Writer(shp=shp, shx=shx, dbf=dbf, shapeType=shapefile.POLYGON,
                              encoding="utf-8")
    writer.field("class", "N", size=3, decimal=0)
    writer.field("field", "C", size=254)
    writer.field("area_ha", "N", size=18, decimal=4)
    writer.field("ndvi_mean", "N", size=10, decimal=4)
    writer.field("rate", "N", size=18, decimal=4)
    for part in zonation.parts:
        # ESRI rings: exterior clockwise, holes counter-clockwise
        oriented = shapely.orient_polygons(part.geometry, exterior_cw=True)
        rings = []
        for polygon in getattr(oriented, "geoms", [oriented]):
            rings.append([list(c) for c in polygon.exterior.coords])
            rings.extend([list(c) for c in ring.coords] for ring in polygon.interiors)
        writer.poly(rings)
        props = _properties(part, rates)
        writer.record(props["class"], props["field"] or "", props["area_ha"],
                      props["ndvi_mean"], props["rate"])
    writer.close()
    prj = ProjCRS.from_user_input(zonation.grid.crs.to_wkt()).to_wkt(WktVersion.WKT1_ESRI)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for ext, data in ((".shp", shp.getvalue()), (".shx", shx.getvalue()),
                          (".dbf", dbf.getvalue()), (".prj", prj.encode()), (".cpg", b"UTF-8")):
            info = zipfile.ZipInfo(f"{stem}{ext}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def prescription_zip(zonation: Zonation, *, task: str, product: str, unit: str,
                     rates: Mapping[int, float], software_version: str) -> bytes:
    """prescription_isoxml.zip: one task, a treatment zone per class with its rate and polygons."""
    wgs = to_wgs84([p.geometry for p in zonation.parts], zonation.grid.crs)
    zones = []
    for c in range(1, zonation.classes + 1):
        polygons = [(part.field, geometry)
                    for part, geometry in zip(zonation.parts, wgs, strict=True)
                    if part.zone_class == c]
        zones.append(isoxml.TreatmentZone(code=c, rate=rates[c], polygons=polygons))
    xml = isoxml.taskdata_xml(task=task, product=product, unit=unit, zones=zones,
                              software_version=software_version)
    return isoxml.taskdata_zip(xml)
