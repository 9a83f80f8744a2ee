"""The batch grid: one north-up raster grid (CRS, transform, size) that every band is mosaicked onto.

`batch_grid` builds it from image headers only (DESIGN.md §2): CRS and resolution of the first
image, extent = union of all images' bounds transformed into that CRS, snapped to the first image's
pixel origin so that its pixels stay exactly aligned (and are read without resampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import box
from shapely.ops import unary_union

from pipeline.core.errors import MissingCRS, NoOverlap, RasterTooLarge
from pipeline.core.manifest import OPTICAL_BANDS
from pipeline.core.sources import HeaderInfo, ImageSource, open_header

DEFAULT_MAX_PIXELS = 2_000_000_000
_SNAP_EPS = 1e-6  # in pixels: bounds within this of a pixel edge are treated as on it
_WGS84 = Geod(ellps="WGS84")


def raster_bounds(*, transform: Affine, width: int,
                  height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a `width` × `height` raster whose pixel corners `transform`
    maps to CRS coordinates: the extremes of its four corners (rotated transforms included)."""
    corners = [transform @ (x, y) for x in (0, width) for y in (0, height)]
    xs, ys = [float(x) for x, _ in corners], [float(y) for _, y in corners]
    return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid. `transform` maps (col, row) of pixel corners to CRS coordinates."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def from_dataset(cls, dataset) -> Grid:
        """The grid of an open rasterio dataset (or anything with crs/transform/width/height)."""
        return cls(crs=CRS.from_user_input(dataset.crs), transform=dataset.transform,
                   width=int(dataset.width), height=int(dataset.height))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y), positive, in CRS units."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return raster_bounds(transform=self.transform, width=self.width, height=self.height)

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """x (length width) and y (length height) coordinates of pixel centres, float64."""
        t = self.transform
        x = t.c + t.a * (np.arange(self.width, dtype=np.float64) + 0.5)
        y = t.f + t.e * (np.arange(self.height, dtype=np.float64) + 0.5)
        return x, y

    def row_areas_m2(self) -> np.ndarray:
        """Area of one pixel in each row, in m² (length height, float64).

        Projected CRSs: |det(transform)| × (metres per CRS unit)², the same in every row.
        Geographic CRSs: the geodesic area on the WGS84 ellipsoid of a pixel-sized cell in that
        row (pyproj `Geod.polygon_area_perimeter`), which varies with latitude.
        """
        if not self.crs.is_geographic:
            factor = self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0
            area = abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)
            return np.full(self.height, area * factor * factor)
        t = self.transform
        dx = abs(t.a)
        tops = t.f + t.e * np.arange(self.height, dtype=np.float64)
        bottoms = tops + t.e
        out = np.empty(self.height)
        for i, (y0, y1) in enumerate(zip(tops, bottoms)):
            lons = [0.0, dx, dx, 0.0]
            lats = [float(np.clip(y0, -90, 90)), float(np.clip(y0, -90, 90)),
                    float(np.clip(y1, -90, 90)), float(np.clip(y1, -90, 90))]
            out[i] = abs(_WGS84.polygon_area_perimeter(lons, lats)[0])
        return out

    @property
    def pixel_area_m2(self) -> float:
        """Mean area of one pixel in m².

        Exact for projected CRSs (in the CRS's own metric; UTM scale error ≤ 0.04 %). For
        geographic CRSs this is the mean of the per-row geodesic areas (`row_areas_m2`), so
        `pixel_area_m2 × width × height` is the grid's true geodesic area; area of a subset of
        rows is then approximate by the latitude spread of the grid (≪ 0.1 % for a field).
        """
        return float(self.row_areas_m2().mean())


def _georeferenced(header: HeaderInfo, name: str) -> None:
    if header.crs is None:
        raise MissingCRS(
            "has no CRS; it is not georeferenced. Export a georeferenced GeoTIFF from the "
            "photogrammetry or camera software, or assign one with "
            "`gdal_translate -a_srs EPSG:XXXX -a_ullr ulx uly lrx lry in.tif out.tif`",
            file=name,
        )
    if header.transform is None or tuple(header.transform)[:6] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        raise MissingCRS(
            "has no geotransform (pixel coordinates only); georeference it, e.g. "
            "`gdal_translate -a_srs EPSG:XXXX -a_ullr ulx uly lrx lry in.tif out.tif`",
            file=name,
        )


def _too_large(name: str, width: int, height: int, max_pixels: int, what: str) -> None:
    if int(width) * int(height) > max_pixels:
        raise RasterTooLarge(
            f"{what} {width} x {height} pixels, above the limit of {max_pixels:,} pixels; "
            "split the mosaic into tiles (or into batches) or raise the limit",
            file=name,
        )


def header_bounds(header: HeaderInfo, *, crs: CRS) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of an image in `crs` (its own bounds when it is in `crs`,
    else transformed with 21 points densified along each edge)."""
    bounds = raster_bounds(transform=header.transform, width=header.width, height=header.height)
    if CRS.from_user_input(header.crs) == crs:
        return bounds
    return tuple(transform_bounds(header.crs, crs, *bounds, densify_pts=21))  # type: ignore[return-value]


def _snap(value: float, origin: float, step: float, up: bool) -> float:
    n = (value - origin) / step
    n = math.ceil(n - _SNAP_EPS) if up else math.floor(n + _SNAP_EPS)
    return origin + n * step


def _refuse_outliers(names: Sequence[str], bounds: Sequence[tuple[float, float, float, float]],
                    crs: CRS) -> None:
    """Raise NoOverlap naming the images outside the batch's main group of images.

    Images that overlap or touch are linked; the largest linked group is the batch (on a tie the
    group holding the first image), and the refusal names the others, e.g. the tile 500 km away
    rather than the tiles that overlap each other (with two images that do not meet: the second,
    since the first sets the grid).
    """
    if len(bounds) < 2:
        return
    boxes = [box(*b) for b in bounds]
    group = list(range(len(boxes)))  # union-find over "overlaps or touches"

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if boxes[i].intersects(boxes[j]):
                group[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        members.setdefault(root(i), []).append(i)
    main = max(members.values(), key=lambda m: (len(m), -m[0]))
    outside = [i for i in range(len(boxes)) if i not in main]
    if not outside:
        return
    first = outside[0]
    others = unary_union([boxes[i] for i in main]).bounds
    more = f" (so do {', '.join(names[i] for i in outside[1:])})" if len(outside) > 1 else ""
    raise NoOverlap(
        f"covers {tuple(round(v, 3) for v in bounds[first])} (in {crs.to_string()}), which does "
        f"not overlap or touch the other images of the batch (together "
        f"{tuple(round(v, 3) for v in others)}){more}; remove it or upload it in its own batch",
        file=names[first],
    )


def check_header(*, header: HeaderInfo, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse an image without CRS or geotransform (MissingCRS) or above `max_pixels`."""
    _georeferenced(header, name)
    _too_large(name, header.width, header.height, max_pixels, "declares")


def check_overlap(*, names: Sequence[str], headers: Sequence[HeaderInfo]) -> None:
    """Refuse (NoOverlap) the images that do not overlap the batch's main group, in any family
    (an optical tile or a thermal frame far from the rest); see `_refuse_outliers`."""
    if len(headers) < 2:
        return
    crs = CRS.from_user_input(headers[0].crs)
    _refuse_outliers(list(names), [header_bounds(h, crs=crs) for h in headers], crs)


def batch_grid(
    sources: Sequence[ImageSource],
    *,
    bands: Sequence[str] = OPTICAL_BANDS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Grid:
    """The grid that the images carrying any of `bands` are mosaicked onto.

    CRS and resolution of the first such image (sources with empty `bands` count too, for
    header-only callers), extent = union of their bounds in that CRS, snapped outwards to the first
    image's pixel origin. Reads headers only. Raises MissingCRS, RasterTooLarge (checked from the
    declared size, before anything is allocated) and NoOverlap (an image that does not touch the
    union of the others).
    """
    chosen = [s for s in sources if not s.bands or any(b in bands for b in s.bands)]
    if not chosen:
        raise ValueError(f"no image carries any of the bands {', '.join(bands)}")
    headers = []
    for source in chosen:
        header = open_header(source)
        check_header(header=header, name=source.name, max_pixels=max_pixels)
        headers.append(header)
    first = headers[0]
    crs = CRS.from_user_input(first.crs)
    t = first.transform
    xres = math.hypot(t.a, t.d)
    yres = math.hypot(t.b, t.e)
    all_bounds = [header_bounds(h, crs=crs) for h in headers]
    _refuse_outliers([s.name for s in chosen], all_bounds, crs)
    left = _snap(min(b[0] for b in all_bounds), t.c, xres, up=False)
    right = _snap(max(b[2] for b in all_bounds), t.c, xres, up=True)
    bottom = _snap(min(b[1] for b in all_bounds), t.f, yres, up=False)
    top = _snap(max(b[3] for b in all_bounds), t.f, yres, up=True)
    width = max(1, round((right - left) / xres))
    height = max(1, round((top - bottom) / yres))
    _too_large(chosen[0].name, width, height, max_pixels,
               "with the other images of the batch, spans")
    return Grid(crs=crs, transform=Affine(xres, 0.0, left, 0.0, -yres, top),
                width=int(width), height=int(height))
