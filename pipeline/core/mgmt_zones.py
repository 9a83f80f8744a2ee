"""Management zones from a vigour index raster (DESIGN.md §3.4): classes, merged parts, polygons.

Designed around the cost of a 16384² (or larger) float32 index COG, which must never be held
whole, and around files a farm terminal accepts:

- **Two streaming passes over the full-resolution raster**, window by window (windows of about
  2048², aligned to the working cells). Pass 1 sums values and valid counts per working cell
  (an exact area-weighted block mean, no dependence on the COG's overviews) and counts canopy
  pixels per field. Pass 2 writes the uint8 class raster and the exact per-class areas and means.
  Peak memory: a few windows plus the working grid.
- **A working grid for zoning**: cells of `factor`² pixels, with `factor` the larger of
  (a) what keeps the working grid within `WORK_MAX_SIDE` (2048) cells on its long side and
  (b) what makes a minimum-mapping-unit part at least `MIN_MMU_CELLS` (64, i.e. 8 × 8) cells.
  Zones are a management decision at machine scale (a sprayer boom is 12-36 m), so vectorising at
  centimetre pixels would only produce staircases and megabytes. A cell is valid when at least half
  its pixels are.
- **Smoothing**: the block mean (a box filter of `factor` pixels) followed by a 3 × 3 median on
  the working grid. The median removes speckle (single plants, gaps, shadows) without blurring a
  sharp boundary between a low and a high area into a strip of the middle class, which a Gaussian
  would do and which becomes exactly the slivers users complain about.
- **Classes by natural breaks (Fisher-Jenks)** on a 1024-bin histogram of the smoothed values,
  weighted by each cell's valid pixel count. In one dimension Fisher's dynamic programme finds the
  globally optimal split for the k-means objective (least within-class squared deviation), so it
  is deterministic and needs no random start (Lloyd's k-means can stop in a local optimum and
  depends on its seeds). On a histogram it costs O(k · bins²), independent of the raster size.
  Class 1 is the lowest mean index; classes are renumbered by mean after merging.
- **Minimum mapping unit**: connected parts (4-connectivity) of one class inside one field (or
  outside every field) smaller than `min_ha` are merged into their largest neighbour in the same
  field, smallest first, repeatedly, until none is smaller; a part with no neighbour in its field
  (a whole field, or an island surrounded by no-data) stays.
- **Polygons** per (class, field) from the working grid, then simplified together as a coverage
  (GEOS coverage simplification: shared edges stay shared, no gaps or overlaps), tolerance one
  working cell, doubled until the total vertex count is within `VERTEX_BUDGET` (20 000).

Measured (2 shared cores): a 4096² NDVI at 5 cm (working cells of 55 px) zones into 5 classes,
files included, in 4.6 s; the worst case for the working grid, 2048² cells of noisy NDVI with
~40 000 speckle parts to merge, takes 12 s at 640 MB peak RSS (~200 MB of it imports).

Dagster-free; the caller opens nothing: paths are GDAL paths (local or /vsis3/ with options).
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import MultiPolygon, box, shape
from shapely.geometry.base import BaseGeometry

from pipeline.core.errors import NoValidData
from pipeline.core.grid import Grid
from pipeline.core.units import M2_PER_HA
from pipeline.core.zones import burn_labels

WORK_MAX_SIDE = 2048
MIN_MMU_CELLS = 64
MEDIAN_SIZE = 3
HIST_BINS = 1024
VERTEX_BUDGET = 20_000
WINDOW = 1024  # pixels per read: ~4 MB of float32 (2048 measured +100 MB peak RSS at 16384²)
METHOD = ("Fisher-Jenks natural breaks on the {index} block mean over {factor}×{factor} px cells "
          "smoothed by a 3×3 median; parts under {min_ha:g} ha merged into their largest "
          "neighbour; coverage-simplified polygons")


@dataclass(frozen=True)
class ZonePart:
    """One feature of the zone files: every part of one class in one field (None: outside)."""

    zone_class: int
    field: str | None
    area_m2: float  # imaged (valid) pixels of the grid inside the feature's cells
    ndvi_mean: float | None
    geometry: BaseGeometry  # (Multi)Polygon in the grid's CRS, simplified


@dataclass(frozen=True)
class ClassStat:
    zone_class: int
    area_m2: float
    ndvi_mean: float | None
    pixels: int


@dataclass
class Zonation:
    grid: Grid
    index: str
    classes: int
    breaks: tuple[float, ...]
    factor: int
    class_stats: list[ClassStat]
    parts: list[ZonePart]
    valid_area_m2: float
    valid_pixels: int
    canopy_cover: dict[str, float | None]
    merged_parts: int
    vertices: int
    tolerance: float
    method: str
    stage: Path  # staged uint8 class raster (uncompressed GeoTIFF); `zone_outputs` makes the COG
    notes: list[str] = field(default_factory=list)


# ---- natural breaks -----------------------------------------------------------------------------


def fisher_jenks(*, values: np.ndarray, weights: np.ndarray, classes: int) -> list[float]:
    """Upper bounds between classes (len ≤ classes - 1) of weighted 1-D `values`, optimal for the
    within-class sum of squared deviations. `values` sorted ascending, distinct; fewer distinct
    values than classes give fewer breaks. A value ≥ a break belongs to the class above it."""
    x = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    n = x.size
    k = min(classes, n)
    if k <= 1:
        return []
    cw = np.concatenate([[0.0], np.cumsum(w)])
    c1 = np.concatenate([[0.0], np.cumsum(w * x)])
    c2 = np.concatenate([[0.0], np.cumsum(w * x * x)])

    def cost(i: np.ndarray, j: int) -> np.ndarray:  # bins i..j inclusive, vector over i
        ww = cw[j + 1] - cw[i]
        s1 = c1[j + 1] - c1[i]
        s2 = c2[j + 1] - c2[i]
        return s2 - np.divide(s1 * s1, ww, out=np.zeros_like(s1), where=ww > 0)

    best = np.array([cost(np.array([0]), j)[0] for j in range(n)])  # one class over 0..j
    choice = np.zeros((k, n), dtype=np.int64)
    for c in range(1, k):
        nxt = np.full(n, np.inf)
        for j in range(c, n):
            starts = np.arange(c, j + 1)  # first bin of the last class
            total = best[starts - 1] + cost(starts, j)
            at = int(np.argmin(total))
            nxt[j], choice[c, j] = total[at], starts[at]
        best = nxt
    bounds = []
    j = n - 1
    for c in range(k - 1, 0, -1):
        start = int(choice[c, j])
        bounds.append((x[start - 1] + x[start]) / 2)
        j = start - 1
    return sorted(bounds)


def natural_breaks(*, values: np.ndarray, weights: np.ndarray, classes: int,
                   bins: int = HIST_BINS) -> list[float]:
    """Fisher-Jenks breaks of weighted `values` (NaN-free) on a `bins`-bin histogram."""
    if values.size == 0:
        return []
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return []
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi), weights=weights)
    centres = (edges[:-1] + edges[1:]) / 2
    keep = counts > 0
    return fisher_jenks(values=centres[keep], weights=counts[keep], classes=classes)


# ---- minimum mapping unit -----------------------------------------------------------------------


def _components(key: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """4-connected components of equal nonzero `key`: ids (0 = none), count, key per id."""
    codes, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(key.shape).astype(np.int32) + 1  # find_objects: 0 is background
    comp = np.zeros(key.shape, dtype=np.int32)
    comp_key = [0]
    count = 0
    for label, where in enumerate(ndimage.find_objects(inverse), start=1):
        if where is None or codes[label - 1] == 0:
            continue
        labels, m = ndimage.label(inverse[where] == label)
        view = comp[where]
        view[labels > 0] = labels[labels > 0] + count
        comp_key.extend([int(codes[label - 1])] * m)
        count += m
    return comp, count, np.asarray(comp_key, dtype=np.int64)


def _adjacent_pairs(comp: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Unique unordered pairs of distinct components that share an edge and a field."""
    pairs = []
    for a, b in ((comp[:, :-1], comp[:, 1:]), (comp[:-1, :], comp[1:, :])):
        mask = (a != b) & (a > 0) & (b > 0)
        pa, pb = a[mask], b[mask]
        ok = same[pa] == same[pb]
        pa, pb = pa[ok], pb[ok]
        pairs.append(np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1))
    both = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int32)
    return np.unique(both, axis=0) if both.size else both


def merge_small_parts(*, classes: np.ndarray, fields: np.ndarray, weights: np.ndarray,
                      min_weight: float) -> tuple[np.ndarray, int]:
    """`classes` (0 = no data) with every part of one class in one field whose summed `weights`
    is below `min_weight` merged into its largest neighbour in the same field, smallest first,
    repeatedly. Parts without a neighbour in their field stay. Returns (classes, parts merged)."""
    key = np.where(classes > 0, fields.astype(np.int64) * 256 + classes, 0)
    comp, n, comp_key = _components(key)
    if n <= 1:
        return classes.copy(), 0
    size = np.bincount(comp.ravel(), weights=weights.ravel(), minlength=n + 1).tolist()
    cls = (comp_key % 256).tolist()
    fld = comp_key // 256
    nbrs: dict[int, set[int]] = {i: set() for i in range(1, n + 1)}
    for a, b in _adjacent_pairs(comp, fld).tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    parent = list(range(n + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def absorb(into: int, part: int) -> None:
        parent[part] = into
        size[into] += size[part]
        nbrs[into] |= nbrs.pop(part)

    heap = [(size[i], i) for i in range(1, n + 1) if size[i] < min_weight]
    heapq.heapify(heap)
    merged = 0
    while heap:
        s, c = heapq.heappop(heap)
        if find(c) != c or size[c] != s or s >= min_weight:
            continue
        around = {find(x) for x in nbrs[c]} - {c}
        nbrs[c] = around
        if not around:
            continue  # a whole field, or an island in no-data
        target = max(around, key=lambda r: (size[r], -r))
        absorb(target, c)
        merged += 1
        for other in around - {target}:  # now touching the target with its class: one part
            if cls[other] == cls[target] and find(other) == other:
                absorb(target, other)
        # stale ids in the target's set resolve through find() when it is popped (normalising
        # a large target's set here at every merge made this quadratic)
        nbrs[target].discard(target)
        if size[target] < min_weight:
            heapq.heappush(heap, (size[target], target))
    roots = np.array([find(i) for i in range(n + 1)], dtype=np.int64)
    final = np.asarray(cls, dtype=np.uint8)[roots]
    final[0] = 0
    return final[comp], merged


# ---- passes over the full-resolution raster -----------------------------------------------------


def _windows(height: int, width: int, step: int) -> Iterator[Window]:
    for r in range(0, height, step):
        for c in range(0, width, step):
            yield Window(c, r, min(step, width - c), min(step, height - r))


def _block_sums(values: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Per factor × factor block: sum of finite values and their count (window padded)."""
    h, w = values.shape
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        values = np.pad(values, ((0, ph), (0, pw)), constant_values=np.nan)
    blocks = values.reshape(values.shape[0] // factor, factor, values.shape[1] // factor, factor)
    valid = np.isfinite(blocks)
    return (np.where(valid, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64),
            valid.sum(axis=(1, 3), dtype=np.int32))


def work_factor(*, grid: Grid, min_ha: float, max_side: int = WORK_MAX_SIDE,
                min_mmu_cells: int = MIN_MMU_CELLS) -> int:
    """Pixels per working-cell side (module docstring)."""
    by_size = math.ceil(max(grid.width, grid.height) / max_side)
    pixel_m = math.sqrt(grid.pixel_area_m2)
    by_mmu = (math.floor(math.sqrt(min_ha * M2_PER_HA / min_mmu_cells) / pixel_m) if min_ha > 0
              else 1)
    return max(1, by_size, by_mmu)


def _median_smooth(mean: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """3 × 3 median of the valid cells (no-data filled from the nearest valid cell first, so
    edges are not pulled towards a fill value), NaN where not valid."""
    if MEDIAN_SIZE <= 1:
        return np.where(valid, mean, np.nan)
    filled = mean
    if not valid.all():
        iy, ix = ndimage.distance_transform_edt(~valid, return_distances=False,
                                                return_indices=True)
        filled = mean[iy, ix]
    smooth = ndimage.median_filter(filled, size=MEDIAN_SIZE, mode="nearest")
    return np.where(valid, smooth, np.nan)


def _polygonal(geometry: BaseGeometry) -> MultiPolygon:
    polygons = [g for g in getattr(geometry, "geoms", [geometry]) if g.geom_type == "Polygon"]
    polygons += [p for g in getattr(geometry, "geoms", []) if g.geom_type == "MultiPolygon"
                 for p in g.geoms]
    return MultiPolygon(polygons)


def _vectorise(key: np.ndarray, transform: Affine) -> dict[int, list[BaseGeometry]]:
    polygons: dict[int, list[BaseGeometry]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for geom, value in shapes(key.astype(np.int32), mask=key > 0, connectivity=4,
                                  transform=transform):
            polygons.setdefault(int(value), []).append(shape(geom))
    return polygons


def simplify_coverage(geometries: Sequence[BaseGeometry], *, tolerance: float,
                      vertex_budget: int = VERTEX_BUDGET) -> tuple[list[BaseGeometry], float, int]:
    """The coverage simplified with `tolerance`, doubled until the total vertex count is within
    `vertex_budget` (at most 12 doublings). Shared edges stay shared. Returns (geometries,
    tolerance used, vertices)."""
    array = np.asarray(list(geometries), dtype=object)
    if array.size == 0:
        return [], tolerance, 0
    for _ in range(13):
        simplified = shapely.coverage_simplify(array, tolerance)
        vertices = int(shapely.get_num_coordinates(simplified).sum())
        if vertices <= vertex_budget:
            break
        tolerance *= 2
    return list(simplified), tolerance, vertices


def polygon_area_tolerance(*, geometries: Sequence[BaseGeometry], valid_area: float,
                           cell: float, relative: float = 0.01) -> float:
    """How far (relative) the zone polygons' total area may be from the valid pixels' area. The
    polygons are working cells of side `cell`, a cell drawn when at least half its pixels are
    valid, so each cell along the coverage's outline may gain or lose up to half a cell:
    outline × cell / 2 in all. The larger of that and `relative` (which binds for fields of more
    than ~200 cells across; small scenes have few cells and a long outline for their area)."""
    if valid_area <= 0 or not geometries:
        return relative
    outline = shapely.union_all(np.asarray(list(geometries), dtype=object)).length
    return max(relative, outline * cell / 2 / valid_area)


def _class_minority_cells(*, cells: np.ndarray, minority: np.ndarray, fields: np.ndarray,
                          own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes for the cells holding fewer than half valid pixels (field edges, no-data streaks),
    which the zoning left at 0, and the cells the polygons are drawn from.

    A minority cell takes the class of the nearest classed (majority) cell of its field: its
    pixels then belong to a feature that exists, next to them, so the class raster, the features'
    areas and the polygons agree, while the polygons keep the majority rule at the edges (a cell
    drawn when at least half valid), whose area stays within about 1 % of the valid area where
    drawing every touched cell would overshoot by half the edge cells. A field with no majority
    cell (smaller than about one cell) has its cells classed by their own mean and drawn.
    Returns (classes, drawn)."""
    drawn = cells > 0
    if not minority.any():
        return cells, drawn
    cells = cells.copy()
    boxes = ndimage.find_objects(fields.astype(np.int32) + 1)  # label + 1: outside fields is 0
    for label in np.unique(fields[minority]).tolist():
        where = boxes[label]
        target = minority[where] & (fields[where] == label)
        source = drawn[where] & (fields[where] == label)
        view = cells[where]
        if source.any():
            iy, ix = ndimage.distance_transform_edt(~source, return_distances=False,
                                                    return_indices=True)
            view[target] = view[iy[target], ix[target]]
        else:
            view[target] = own[where][target]
            drawn[where] |= target
    return cells, drawn


def zonate(
    *,
    index_path: str,
    index: str,
    classes: int,
    min_ha: float,
    canopy_ndvi: float,
    fields: Sequence[tuple[str, BaseGeometry]] = (),
    workdir: Path,
    gdal_options: Mapping[str, str] | None = None,
    factor: int | None = None,
    vertex_budget: int = VERTEX_BUDGET,
    window: int = WINDOW,
) -> Zonation:
    """Zones of the single-band float index raster at `index_path` (NaN = no data).

    `fields` are (name, geometry in the raster's CRS), e.g. `pipeline.core.zones.load_zones`.
    Writes the staged uint8 class raster (0 = no data, else 1..classes) into `workdir`; raises
    NoValidData when the raster has no valid pixel.
    """
    if classes < 1 or classes > 254:
        raise ValueError(f"classes must be 1..254, got {classes}")
    workdir = Path(workdir)
    names = [n for n, _ in fields]
    geometries = [g for _, g in fields]
    with rasterio.Env(**dict(gdal_options or {})), rasterio.open(index_path) as src:
        grid = Grid.from_dataset(src)
        f = factor or work_factor(grid=grid, min_ha=min_ha)
        step = max(f, (window // f) * f)
        wh, ww = math.ceil(grid.height / f), math.ceil(grid.width / f)
        sums = np.zeros((wh, ww), dtype=np.float64)
        counts = np.zeros((wh, ww), dtype=np.int32)
        canopy = np.zeros((len(fields) + 1, 2), dtype=np.int64)  # [valid, >= threshold]
        for win in _windows(grid.height, grid.width, step):
            values = src.read(1, window=win).astype(np.float32, copy=False)
            s, c = _block_sums(values, f)
            r0, c0 = int(win.row_off) // f, int(win.col_off) // f
            sums[r0:r0 + s.shape[0], c0:c0 + s.shape[1]] = s
            counts[r0:r0 + s.shape[0], c0:c0 + s.shape[1]] = c
            if fields:
                labels = burn_labels(geometries, transform=src.window_transform(win),
                                     shape=values.shape)
                valid = np.isfinite(values)
                canopy[:, 0] += np.bincount(labels[valid], minlength=len(fields) + 1)
                canopy[:, 1] += np.bincount(labels[valid & (values >= canopy_ndvi)],
                                            minlength=len(fields) + 1)
        valid_pixels = int(counts.sum(dtype=np.int64))
        if valid_pixels == 0:
            raise NoValidData(f"{index} raster holds no valid pixel; no management zones",
                              file=f"{index}.tif")
        mean = np.divide(sums, counts, out=np.full(sums.shape, np.nan, dtype=np.float32),
                         where=counts > 0, dtype=np.float32)
        # pixels of each cell inside the grid (the last row and column of cells may be partial)
        inside = np.outer(np.minimum(f, grid.height - np.arange(wh) * f),
                          np.minimum(f, grid.width - np.arange(ww) * f))
        cell_valid = counts * 2 >= inside
        if not cell_valid.any():  # a sparse raster: every cell under half full
            cell_valid = counts > 0
        smooth = _median_smooth(mean, cell_valid)
        breaks = natural_breaks(values=smooth[cell_valid], weights=counts[cell_valid],
                                classes=classes)
        raw = np.where(cell_valid, np.digitize(smooth, breaks) + 1, 0).astype(np.uint8)
        wt = grid.transform @ Affine.scale(f, f)
        field_cells = burn_labels(geometries, transform=wt, shape=(wh, ww))
        pixel_area = grid.pixel_area_m2
        mmu_pixels = min_ha * M2_PER_HA / pixel_area
        merged_classes, merged = merge_small_parts(classes=raw, fields=field_cells,
                                                   weights=counts.astype(np.float64),
                                                   min_weight=mmu_pixels)
        # Renumber by mean index: class 1 = lowest vigour.
        present = [c for c in range(1, classes + 1) if (merged_classes == c).any()]
        means = {c: sums[merged_classes == c].sum() / max(counts[merged_classes == c].sum(), 1)
                 for c in present}
        order = sorted(present, key=lambda c: means[c])
        relabel = np.zeros(256, dtype=np.uint8)
        for new, old in enumerate(order, start=1):
            relabel[old] = new
        unused = [c for c in range(1, classes + 1) if c not in present]
        for new, old in enumerate(unused, start=len(order) + 1):
            relabel[old] = new
        cells, drawn = _class_minority_cells(
            cells=relabel[merged_classes], minority=(counts > 0) & ~cell_valid,
            fields=field_cells, own=relabel[np.digitize(mean, breaks) + 1])

        # Pass 2: the full-resolution class raster and the exact class statistics.
        stage = workdir / "management_zones.stage.tif"
        workdir.mkdir(parents=True, exist_ok=True)
        class_pixels = np.zeros(classes + 1, dtype=np.int64)
        class_sums = np.zeros(classes + 1, dtype=np.float64)
        profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
                   "dtype": "uint8", "crs": grid.crs, "transform": grid.transform, "nodata": 0,
                   "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "NONE",
                   "sparse_ok": True, "bigtiff": "IF_NEEDED"}
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(stage, "w", **profile) as dst:
            for win in _windows(grid.height, grid.width, step):
                values = src.read(1, window=win)
                valid = np.isfinite(values)
                rows = (np.arange(win.height) + int(win.row_off)) // f
                cols = (np.arange(win.width) + int(win.col_off)) // f
                # a valid pixel's cell always has a class (above): the pixel takes it
                out = np.where(valid, cells[rows[:, None], cols[None, :]], 0).astype(np.uint8)
                class_pixels += np.bincount(out[valid], minlength=classes + 1)
                class_sums += np.bincount(out[valid], weights=values[valid].astype(np.float64),
                                          minlength=classes + 1)
                dst.write(out, 1, window=win)

    stats = [ClassStat(zone_class=c, area_m2=float(class_pixels[c] * pixel_area),
                       ndvi_mean=(float(class_sums[c] / class_pixels[c]) if class_pixels[c]
                                  else None),
                       pixels=int(class_pixels[c])) for c in range(1, classes + 1)]

    # Polygons: one feature per (class, field) from the working grid's drawn cells; its area and
    # mean count every cell of its class and field (minority cells included, see above).
    key = np.where(cells > 0, field_cells.astype(np.int64) * 256 + cells, 0)
    grouped = _vectorise(np.where(drawn, key, 0), wt)
    feature_keys = sorted(grouped, key=lambda k: (k % 256, k // 256))
    # cells of the last row and column reach beyond the grid: clip to it (a coverage stays one)
    extent = box(*grid.bounds)
    geoms = [MultiPolygon([p for poly in grouped[k] for p in getattr(poly, "geoms", [poly])])
             for k in feature_keys]
    geoms = [g if extent.contains(g) else _polygonal(g.intersection(extent)) for g in geoms]
    simplified, tolerance, vertices = simplify_coverage(
        geoms, tolerance=abs(wt.a), vertex_budget=vertex_budget)
    ordered = np.asarray(feature_keys, dtype=np.int64)
    by_key = np.argsort(ordered)
    position = by_key[np.searchsorted(ordered[by_key], key[key > 0])]
    key_pixels = np.bincount(position, weights=counts[key > 0], minlength=len(feature_keys))
    key_sums = np.bincount(position, weights=sums[key > 0], minlength=len(feature_keys))
    parts = []
    for i, (k, geom) in enumerate(zip(feature_keys, simplified, strict=True)):
        field_index = k // 256
        parts.append(ZonePart(
            zone_class=int(k % 256), field=names[field_index - 1] if field_index else None,
            area_m2=float(key_pixels[i] * pixel_area),
            ndvi_mean=float(key_sums[i] / key_pixels[i]) if key_pixels[i] else None,
            geometry=geom))
    canopy_cover = {name: (float(canopy[i + 1, 1] / canopy[i + 1, 0]) if canopy[i + 1, 0] else None)
                    for i, name in enumerate(names)}
    notes = []
    if len(present) < classes:
        notes.append(f"the {index} values allow only {len(present)} distinct class(es) of "
                     f"{classes}; the others are empty")
    return Zonation(
        grid=grid, index=index, classes=classes, breaks=tuple(float(b) for b in breaks),
        factor=f, class_stats=stats, parts=parts, valid_area_m2=float(valid_pixels * pixel_area),
        valid_pixels=valid_pixels, canopy_cover=canopy_cover, merged_parts=merged,
        vertices=vertices, tolerance=float(tolerance),
        method=METHOD.format(index=index.upper(), factor=f, min_ha=min_ha), stage=stage,
        notes=notes)
