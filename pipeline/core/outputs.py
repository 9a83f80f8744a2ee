"""The catalogue of output objects (DESIGN.md §1, §3): every object the pipeline writes, once.

Each entry says the object's name (a template over `{index}`), where it goes (the heatmap or the
report bucket, under `<batch_id>/`, or under `sites/<site_id>/`), its kind and media type, its
STAC roles, and the Dagster asset that publishes it. Nobody else builds an object name by hand or
matches one by regex: the core names its files with `object_name`, the IO manager checks that an
asset publishes only its own objects with `producer_of`, the report and the CLI list objects with
`entries`, the STAC item takes media types and roles from here.

Adding an output is one entry here plus the code that writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    FLOAT_COG = "float_cog"  # float32 COG, nodata NaN (§3.1)
    PALETTE_COG = "palette_cog"  # one uint8 band, PHOTOMETRIC=PALETTE, nodata 0 (§3.1)
    PNG = "png"
    PDF = "pdf"
    JSON = "json"
    GEOJSON = "geojson"
    ZIP = "zip"
    PARQUET = "parquet"


MEDIA_TYPES = {
    Kind.FLOAT_COG: "image/tiff; application=geotiff; profile=cloud-optimized",
    Kind.PALETTE_COG: "image/tiff; application=geotiff; profile=cloud-optimized",
    Kind.PNG: "image/png", Kind.PDF: "application/pdf", Kind.JSON: "application/json",
    Kind.GEOJSON: "application/geo+json", Kind.ZIP: "application/zip",
    Kind.PARQUET: "application/vnd.apache.parquet",
}
_NAME = r"[a-z][a-z0-9_]{0,31}"  # an index name (DESIGN.md §3.2)


@dataclass(frozen=True)
class Entry:
    template: str  # e.g. "{index}_heatmap.tif"; "{index}" is the only parameter
    kind: Kind
    bucket: str  # "heatmap" | "report"
    producer: str  # the Dagster asset that publishes it
    roles: tuple[str, ...]  # STAC asset roles
    title: str
    scope: str = "batch"  # "batch": <batch_id>/<name>; "site": sites/<site_id>/<name>

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.kind]

    @property
    def per_index(self) -> bool:
        return "{index}" in self.template

    def name(self, index: str | None = None) -> str:
        if self.per_index:
            if index is None or not re.fullmatch(_NAME, index):
                raise ValueError(f"{self.template} needs an index name, got {index!r}")
            return self.template.format(index=index)
        return self.template

    def match(self, name: str) -> str | None | bool:
        """The index the name stands for (None for a fixed name), or False when it is not this entry's."""
        if not self.per_index:
            return None if name == self.template else False
        head, tail = self.template.split("{index}")
        m = re.fullmatch(re.escape(head) + f"({_NAME})" + re.escape(tail), name)
        return m.group(1) if m else False


# Fixed names first, then the most specific templates: `match` takes the first that fits, so
# "thermal_heatmap.tif" is the thermal heatmap and "change_ndvi.tif" is not the index "change_ndvi".
CATALOGUE: tuple[Entry, ...] = (
    Entry("thermal_c.tif", Kind.FLOAT_COG, "heatmap", "thermal_raster", ("data",),
          "Surface temperature (°C)"),
    Entry("thermal_heatmap.tif", Kind.PALETTE_COG, "heatmap", "thermal_heatmap", ("visual",),
          "Thermal heatmap"),
    Entry("thermal_heatmap.png", Kind.PNG, "heatmap", "thermal_heatmap", ("overview",),
          "Thermal preview"),
    Entry("management_zones.tif", Kind.PALETTE_COG, "heatmap", "management_zones",
          ("data", "visual"), "Management zones"),
    Entry("management_zones.geojson", Kind.GEOJSON, "heatmap", "management_zones", ("data",),
          "Management zones (EPSG:4326)"),
    Entry("management_zones.shp.zip", Kind.ZIP, "heatmap", "management_zones", ("data",),
          "Management zones (shapefile, grid CRS)"),
    Entry("prescription_isoxml.zip", Kind.ZIP, "heatmap", "management_zones", ("data",),
          "Prescription (ISO 11783-10 TaskData)"),
    Entry("report.pdf", Kind.PDF, "report", "batch_report", ("metadata",), "Report"),
    Entry("summary.json", Kind.JSON, "report", "batch_report", ("metadata",), "Summary"),
    Entry("distribution.json", Kind.JSON, "report", "report_distribution", ("metadata",),
          "Distribution record"),
    Entry("item.json", Kind.JSON, "report", "site_history", ("metadata",), "STAC Item"),
    Entry("history.parquet", Kind.PARQUET, "report", "site_history", ("data",), "Site history",
          scope="site"),
    Entry("collection.json", Kind.JSON, "report", "site_history", ("metadata",),
          "STAC Collection", scope="site"),
    Entry("change_{index}_heatmap.tif", Kind.PALETTE_COG, "heatmap", "change_heatmaps",
          ("visual",), "Change heatmap"),
    Entry("change_{index}_heatmap.png", Kind.PNG, "heatmap", "change_heatmaps", ("overview",),
          "Change preview"),
    Entry("change_{index}.tif", Kind.FLOAT_COG, "heatmap", "change_rasters", ("data",),
          "Change since the previous flight"),
    Entry("{index}_heatmap.tif", Kind.PALETTE_COG, "heatmap", "index_heatmaps", ("visual",),
          "Index heatmap"),
    Entry("{index}_heatmap.png", Kind.PNG, "heatmap", "index_heatmaps", ("overview",),
          "Index preview"),
    Entry("{index}.tif", Kind.FLOAT_COG, "heatmap", "index_rasters", ("data",), "Index"),
)
# Names an index may not take, because its objects would read as another entry's.
RESERVED_INDEX_NAMES = frozenset({"thermal", "thermal_c", "management_zones", "change", "report",
                                  "summary", "distribution", "item", "history", "collection"})


def lookup(name: str) -> tuple[Entry, str | None] | None:
    """(entry, index or None) of an object name of a batch, or None when no entry has it."""
    for entry in CATALOGUE:
        if entry.scope != "batch":
            continue
        index = entry.match(name)
        if index is not False:
            return entry, index
    return None


def entry(template: str) -> Entry:
    """The entry whose template is `template` (e.g. "{index}.tif"); KeyError otherwise."""
    for e in CATALOGUE:
        if e.template == template:
            return e
    raise KeyError(template)


def object_name(template: str, index: str | None = None) -> str:
    """The object name of entry `template`, e.g. object_name("{index}_heatmap.png", "ndvi")."""
    return entry(template).name(index)


def preview_name(layer: str) -> str:
    """The PNG preview of a map layer: an index, "thermal", or "change_<index>"."""
    if layer == "thermal":
        return object_name("thermal_heatmap.png")
    if layer.startswith("change_"):
        return object_name("change_{index}_heatmap.png", layer.removeprefix("change_"))
    return object_name("{index}_heatmap.png", layer)


def producer_of(name: str) -> str | None:
    """The asset that publishes the batch object `name`, or None when no entry has it."""
    found = lookup(name)
    return found[0].producer if found else None


def entries(*, producer: str | None = None, kind: Kind | None = None,
            bucket: str | None = None) -> tuple[Entry, ...]:
    return tuple(e for e in CATALOGUE if (producer is None or e.producer == producer)
                 and (kind is None or e.kind == kind) and (bucket is None or e.bucket == bucket))


def batch_key(batch_id: str, name: str) -> str:
    return f"{batch_id}/{name}"


def site_key(site_id: str, name: str) -> str:
    return f"sites/{site_id}/{name}"
