"""Zones (fields, management units) from GeoJSON, and their lazy per-block label raster."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import CRSError
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from shapely import make_valid
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as transform_geometry

from pipeline.core.errors import ZonesError
from pipeline.core.grid import Grid, raster_bounds


@dataclass(frozen=True)
class Zone:
    """A named zone; `geometry` is a (Multi)Polygon in the grid's CRS."""

    name: str
    geometry: BaseGeometry


def _crs_of(doc: dict[str, Any], name: str) -> ProjCRS:
    member = doc.get("crs")
    if member is None:
        return ProjCRS.from_epsg(4326)
    text = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
    if not isinstance(text, str):
        raise ZonesError(
            "has a `crs` member that is not of the form {\"type\": \"name\", \"properties\": "
            "{\"name\": \"EPSG:32633\"}}; fix it or drop it and give coordinates in EPSG:4326",
            file=name,
        )
    try:
        crs = ProjCRS.from_user_input(text)
    except CRSError as exc:
        raise ZonesError(f"names an unknown CRS {text!r} ({exc}); use e.g. \"EPSG:32633\"",
                         file=name) from exc
    if crs.equals(ProjCRS.from_user_input("OGC:CRS84")):
        return ProjCRS.from_epsg(4326)
    return crs


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """Keep the polygonal part (make_valid may split a bow-tie into polygons and lines)."""
    if isinstance(geometry, (Polygon, MultiPolygon)):
        return geometry
    parts = [g for g in getattr(geometry, "geoms", ()) if isinstance(g, (Polygon, MultiPolygon))]
    polys = [p for g in parts for p in (g.geoms if isinstance(g, MultiPolygon) else [g])]
    return MultiPolygon(polys) if polys else Polygon()


def load_zones(geojson_bytes: bytes, *, name: str, grid: Grid) -> list[Zone]:
    """Zones of a GeoJSON FeatureCollection of (Multi)Polygons, in the grid's CRS.

    Coordinates are EPSG:4326 (longitude, latitude) unless the legacy `crs` member names another
    CRS ("EPSG:32633", "urn:ogc:def:crs:EPSG::32633", CRS84). Every feature needs a unique
    `properties.name`. Invalid rings (self-intersections) are repaired with `make_valid`. Raises
    ZonesError naming the feature and the fix. A zone that misses the grid is kept (a field not
    flown that day: no pixel, area 0, null statistics); `outside_grid` lists such zones.
    """
    try:
        doc = json.loads(geojson_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZonesError(f"is not valid JSON ({exc}); export the zones as GeoJSON", file=name) from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" \
            or not isinstance(doc.get("features"), list):
        raise ZonesError("is not a GeoJSON FeatureCollection; export the zones as a "
                         "FeatureCollection of Polygon/MultiPolygon features", file=name)
    source_crs = _crs_of(doc, name)
    to_grid = Transformer.from_crs(source_crs, ProjCRS.from_user_input(grid.crs.to_wkt()),
                                   always_xy=True)
    zones: list[Zone] = []
    seen: set[str] = set()
    for index, feature in enumerate(doc["features"]):
        props = (feature or {}).get("properties") or {}
        zone_name = props.get("name")
        label = f"feature {index}" + (f" ({zone_name!r})" if zone_name else "")
        if not isinstance(zone_name, str) or not zone_name.strip():
            raise ZonesError(f"{label} has no `properties.name`; give every zone a name",
                             file=name)
        if zone_name in seen:
            raise ZonesError(f"{label}: the name is used twice; names must be unique (merge the "
                             "parts into one MultiPolygon feature)", file=name)
        seen.add(zone_name)
        geometry_doc = (feature or {}).get("geometry") or {}
        if geometry_doc.get("type") not in ("Polygon", "MultiPolygon"):
            raise ZonesError(f"{label} is a {geometry_doc.get('type')!r}, not a Polygon or "
                             "MultiPolygon; draw zones as polygons", file=name)
        try:
            geometry = shape(geometry_doc)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ZonesError(f"{label} has malformed coordinates ({exc}); fix the polygon rings",
                             file=name) from exc
        if not geometry.is_valid:
            geometry = _polygonal(make_valid(geometry))
        geometry = transform_geometry(to_grid.transform, geometry)
        if geometry.is_empty or not np.all(np.isfinite(geometry.bounds)):
            raise ZonesError(f"{label} is empty or cannot be transformed to the imagery's CRS; "
                             "check its coordinates (EPSG:4326 is longitude, latitude)", file=name)
        # A field not flown that day (outside the imagery, or under its nodata) is kept: it gets
        # area 0 and null statistics (DESIGN.md §2), never a refusal.
        zones.append(Zone(name=zone_name, geometry=geometry))
    if not zones:
        raise ZonesError("holds no features; add at least one named polygon", file=name)
    return zones


def outside_grid(zones: Sequence[Zone], *, grid: Grid) -> list[str]:
    """Names of the zones that do not touch the grid at all (no imagery that day)."""
    grid_box = box(*grid.bounds)
    return [z.name for z in zones if not z.geometry.intersects(grid_box)]


def burn_labels(geometries: Sequence[BaseGeometry], *, transform: Affine,
                shape: tuple[int, int]) -> np.ndarray:
    """int32 labels of a (rows, cols) raster whose pixel corners `transform` maps to CRS
    coordinates: i + 1 where a pixel's centre is inside geometries[i] (all_touched=False), the
    first geometry in order winning where they overlap; 0 elsewhere."""
    extent = box(*raster_bounds(transform=transform, width=shape[1], height=shape[0]))
    # burn in reverse so that the first geometry in order wins where they overlap
    burn = [(g, i + 1) for i, g in reversed(list(enumerate(geometries))) if g.intersects(extent)]
    if not burn:
        return np.zeros(shape, dtype=np.int32)
    with warnings.catch_warnings():  # rasterio's in-memory target warns needlessly
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterize(burn, out_shape=shape, transform=transform, fill=0, all_touched=False,
                         dtype="int32")


def window_labels(geometries: Sequence[BaseGeometry], *, transform: tuple,
                  rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """`burn_labels` in the window rows × cols of the grid whose transform is `transform` (its
    six coefficients, picklable)."""
    (r0, r1), (c0, c1) = rows, cols
    return burn_labels(geometries, transform=Affine(*transform) @ Affine.translation(c0, r0),
                       shape=(r1 - r0, c1 - c0))


def _label_block(zones: tuple[BaseGeometry, ...], transform: tuple, block_info=None) -> np.ndarray:
    rows, cols = block_info[None]["array-location"]
    return window_labels(zones, transform=transform, rows=tuple(rows), cols=tuple(cols))


def zone_labels(zones: Sequence[Zone], *, grid: Grid, chunks: int | tuple = 2048) -> xr.DataArray:
    """int32 labels on `grid`, lazily rasterized per block: 0 outside every zone, i + 1 in zone i.

    A pixel belongs to a zone when its centre is inside (all_touched=False). Where zones overlap
    the first zone in file order wins, so every pixel counts for at most one zone. `chunks` (an
    int or dask chunks) should match the rasters the labels are used with.
    """
    geometries = tuple(z.geometry for z in zones)
    transform = tuple(grid.transform)[:6]
    block_chunks = chunks if isinstance(chunks, tuple) else (chunks, chunks)
    data = dsa.map_blocks(
        _label_block, geometries, transform,
        chunks=dsa.core.normalize_chunks(block_chunks, grid.shape),
        dtype=np.int32, meta=np.empty((0, 0), dtype=np.int32),
    )
    x, y = grid.coords()
    labels = xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name="zone")
    return labels.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
