"""Small pictures of a site: the batch footprint in EPSG:4326 and the per-field NDVI series chart.

The chart is a matplotlib PNG of a few kB (small multiples, one panel per field, one line per
index), embedded in Dagster's asset metadata as a data: URI; the PDF draws its own vector version
(`report_charts.series_chart`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyproj import Transformer
from shapely.geometry import box, mapping
from shapely.ops import transform as transform_geometry

from pipeline.core.grid import Grid


def footprint_4326(grid: Grid, *, densify: int = 16) -> tuple[dict[str, Any], list[float]]:
    """The grid's outline in EPSG:4326 (lon, lat), densified so a projected edge stays close to its
    curve, as a GeoJSON Polygon and its bbox."""
    outline = box(*grid.bounds).segmentize(
        max(grid.res[0] * grid.width, grid.res[1] * grid.height) / densify
    )
    project = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
    shape = transform_geometry(project, outline)
    return mapping(shape) | {"coordinates": [[list(p) for p in shape.exterior.coords]]}, list(
        shape.bounds
    )


def series(records: Sequence, *, index: str = "ndvi") -> dict[str, list[tuple[Any, float]]]:
    """zone ("" = whole grid) -> [(captured_at, mean)] in capture order, for one index."""
    out: dict[str, list] = {}
    for record in sorted(records, key=lambda r: r.order):
        for row in record.rows:
            if row.index == index and row.mean is not None:
                out.setdefault(row.zone, []).append((record.captured_at, row.mean))
    return out


def series_chart_uri(
    records: Sequence, *, workdir: Path, index: str = "ndvi", max_panels: int = 12
) -> str | None:
    """A PNG data: URI of the per-field `index` series (small multiples), or None without data."""
    data = series(records, index=index)
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(data, key=lambda z: (z != "", z))[:max_panels]
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        points = data[name]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#1a7f37")
        ax.set_title(name or "whole grid", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", rotation=30)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"{index.upper()} mean by field", fontsize=9)
    fig.tight_layout()
    path = workdir / "series.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
