"""The report model: summary.json (DESIGN.md §3), the PDF's extra context, and distribution.json.

`Summary` is the contract field for field (`extra="forbid"`, schema_version 2); the JSON Schema in
`schemas/summary.schema.json` is generated from it by `scripts/export_schema.py`. Statistics that are
undefined (an index or zone without a single valid pixel) are `null`, never NaN: NaN is not JSON.
A NaN handed to a nullable statistic becomes `None`; a NaN or infinity anywhere else is rejected.

`ReportContext` holds what only the PDF needs (capture time, platform, histograms, PNG map paths), so
summary.json stays exactly the contract. `DistributionRecord` is reports/<id>/distribution.json.
"""

from __future__ import annotations

import builtins
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

from pipeline.core.manifest import BATCH_ID_PATTERN
from pipeline.core.values import Histogram, Hotspot, Scale  # re-exported: fields of the model



def _no_dotdot(value: str) -> str:
    if ".." in value:
        raise ValueError(f"batch_id {value!r} contains '..'; DESIGN.md §1 forbids it")
    return value


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (UTC), e.g. 2026-06-14T10:32:00Z")
    return value.astimezone(UTC)


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


#: A statistic that is null where undefined (no valid pixel); NaN input becomes null.
Stat = Annotated[
    float | None,
    BeforeValidator(_nan_to_none),
    Field(description="null where undefined (no valid pixel)"),
]
#: A timestamp in UTC, written as ISO 8601 with a 'Z' suffix (seconds precision).
UtcTime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(_iso_z, return_type=str, when_used="json"),
    Field(
        description="UTC, ISO 8601 with a 'Z' suffix",
        json_schema_extra={"format": "date-time", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"},
    ),
]
#: DESIGN.md §1: the pattern, and no '..' anywhere.
BatchId = Annotated[
    str,
    Field(pattern=BATCH_ID_PATTERN, json_schema_extra={"not": {"pattern": "\\.\\."}}),
    AfterValidator(_no_dotdot),
]
NonNeg = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, json_schema_serialization_defaults_required=True
    )


class GridInfo(_Model):
    crs: str = Field(description="e.g. EPSG:32633")
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    pixel_size: tuple[NonNeg, NonNeg] = Field(description="[x, y] in CRS units (metres)")
    bounds: tuple[float, float, float, float] = Field(description="[minx, miny, maxx, maxy]")


class ClassSummary(_Model):
    name: str
    lower: float = Field(description="inclusive lower bound")
    upper: float = Field(description="exclusive upper bound")
    fraction: Stat = Field(ge=0, le=1, description="of valid pixels; null if none is valid")
    area_m2: NonNeg


class IndexSummary(_Model):
    mean: Stat
    std: Stat
    min: Stat
    max: Stat
    p10: Stat
    p50: Stat
    p90: Stat
    valid_fraction: Fraction = Field(description="valid pixels over all pixels of the grid")
    valid_area_m2: NonNeg
    scale: Scale
    classes: list[ClassSummary] = Field(default_factory=list)


class ThermalSummary(_Model):
    mean_c: Stat
    min_c: Stat
    max_c: Stat
    p90_c: Stat
    hotspot_threshold_c: Stat
    hotspot_area_m2: NonNeg
    hotspots: list[Hotspot] = Field(default_factory=list)


class ZoneIndex(_Model):
    mean: Stat
    p10: Stat
    p50: Stat
    p90: Stat
    classes: list[ClassSummary] = Field(
        default_factory=list, description="the index's classes over the zone's valid pixels "
        "(NDVI: bare, stressed, moderate, healthy); fraction null without a valid pixel")


class ZoneThermal(_Model):
    mean_c: Stat
    max_c: Stat


class ChangeSummary(_Model):
    """Statistics of a change raster (this batch's index minus the previous one's), DESIGN §3.5."""

    mean: Stat
    p10: Stat
    p50: Stat
    p90: Stat
    gain_area_m2: NonNeg = Field(description="valid change pixels strictly above +0.1")
    loss_area_m2: NonNeg = Field(description="valid change pixels strictly below -0.1")


class ZoneSummary(_Model):
    name: str
    area_m2: NonNeg
    indices: dict[str, ZoneIndex] = Field(default_factory=dict)
    thermal: ZoneThermal | None = None
    canopy_cover: Fraction | None = Field(
        default=None, description="share of the zone's valid pixels with NDVI ≥ "
        "IMAGERY_CANOPY_NDVI (pixel centres inside); null without valid pixels or zoning")
    change: dict[str, ChangeSummary] | None = Field(
        default=None, description="absent when there is no comparable previous batch; a zone's "
        "change statistics over its pixels valid in both batches")


class ManagementZoneClass(_Model):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False,
        json_schema_serialization_defaults_required=True,
        populate_by_name=True, serialize_by_alias=True,
    )

    zone_class: int = Field(alias="class", ge=1, le=254, description="1 = lowest vigour")
    area_m2: NonNeg
    ndvi_mean: Stat = Field(description="mean of the zoning index (NDVI, or VARI without NIR)")
    rate: float | None = Field(description="the manifest's prescription rate; null without one")


class ManagementZonesSummary(_Model):
    """`management_zones` (DESIGN.md §3.4): classes with their area, mean index and rate."""

    classes: list[ManagementZoneClass]
    method: str
    product: str | None = None
    unit: str | None = None


class SiteSummary(_Model):
    """The batch's place in its site's series; whether it compares with the previous batch."""

    site_id: BatchId
    previous_batch_id: BatchId | None = Field(description="null for a site's first batch")
    previous_captured_at: UtcTime | None
    comparable: bool
    reasons: list[str] = Field(description="every failed comparability condition")
    shift_px: tuple[float, float] | None = Field(
        description="[dx, dy] in pixels of this batch's grid: how far the previous batch's content "
        "must move to match this batch's; null when not estimated")


class IgnoredImage(_Model):
    """An image of the manifest that was skipped, not refused (DESIGN.md §2: only `other` bands)."""

    path: str
    reason: str


class ArtifactsEncoding(_Model):
    """How the batch's COGs are encoded (DESIGN.md §3.1)."""

    float: Literal["ZSTD", "DEFLATE", "LERC_ZSTD"] = Field(
        default="ZSTD", description="compression of the float32 COGs (index, change, thermal °C)")
    max_z_error: Annotated[builtins.float, Field(gt=0)] | None = Field(
        default=None, description="LERC's error bound in the value's unit; null when lossless")
    heatmap: Literal["PALETTE"] = Field(
        default="PALETTE", description="heatmap COGs: one paletted uint8 band, nodata 0")


class Summary(_Model):
    """summary.json, schema_version 2 (DESIGN.md §3.5)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, json_schema_serialization_defaults_required=True,
        title="summary.json (schema_version 2)",
    )

    schema_version: Literal[2] = 2
    batch_id: BatchId
    generated_at: UtcTime
    code_version: str
    grid: GridInfo
    indices: dict[str, IndexSummary]
    thermal: ThermalSummary | None = None
    zones: list[ZoneSummary] = Field(default_factory=list)
    ignored_images: list[IgnoredImage] = Field(
        default_factory=list, description="images skipped because they carry no band the "
        "pipeline uses (only `other`/`alpha` bands), with the reason")
    site: SiteSummary | None = Field(default=None, description="null without site_id")
    change: dict[str, ChangeSummary] = Field(
        default_factory=dict, description="{} when there is no comparable previous batch")
    management_zones: ManagementZonesSummary | None = None
    artifacts: dict[str, str] = Field(default_factory=dict, description="name -> object URL")
    artifacts_encoding: ArtifactsEncoding = Field(default_factory=ArtifactsEncoding)

    def to_json(self) -> bytes:
        """UTF-8 JSON, fields in contract order, indent 2, trailing newline; same model → same bytes."""
        data = self.model_dump(mode="json")
        for zone in data["zones"]:
            if zone.get("change") is None:
                zone.pop("change", None)  # absent, not null (DESIGN.md §3.5)
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def summary_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of summary.json, as committed in schemas/summary.schema.json."""
    schema = Summary.model_json_schema(mode="serialization")
    zone = schema["$defs"]["ZoneSummary"]
    zone["required"] = [name for name in zone["required"] if name != "change"]
    zone["properties"]["change"] = zone["properties"]["change"]["anyOf"][0] | {
        "description": zone["properties"]["change"]["description"]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# ---- what the PDF needs beyond summary.json ---------------------------------------------------


class IndexInfo(_Model):
    """What the PDF says about an index beyond its numbers (from the index registry)."""

    long_name: str = ""
    formula: str = ""
    description: str = ""
    custom: bool = False


class ZonePartRow(_Model):
    """One feature of the management-zone files (a class within a field; field None: outside)."""

    zone_class: int = Field(ge=1, le=254)
    field: str | None
    area_m2: NonNeg
    ndvi_mean: Stat
    rate: float | None = None


class FieldOutline(_Model):
    """A field on the maps of one grid (`report_maps.outlines_on_grid`): its rings and label
    anchor in map fractions, u west to east and v north to south over the grid's extent."""

    name: str
    rings: list[list[tuple[float, float]]] = Field(default_factory=list)
    anchor: tuple[float, float] | None = Field(default=None, description="None: off the map")


class ReportContext(_Model):
    """Batch metadata and local PNG maps for the PDF. Keys of `maps`/`histograms`: index names,
    "thermal" and "management_zones". `thermal_scale` is the ramp of the thermal heatmap
    (summary.json has none); `index_info` is the registry's word on each index of the batch.
    `area_unit` is IMAGERY_AREA_UNIT; the management-zone page lists `zone_parts` per field with
    `zone_colours` (RGB of classes 1..n, as in the class COG); `field_outlines` are drawn over
    every map."""

    captured_at: UtcTime | None = None
    platform: str = ""
    sensor: str = ""
    maps: dict[str, Path] = Field(default_factory=dict)
    histograms: dict[str, Histogram] = Field(default_factory=dict)
    thermal_scale: Scale | None = None
    index_info: dict[str, IndexInfo] = Field(default_factory=dict)
    # per image: optical values treated as nodata because their reflectance is not finite or
    # outside [-1, 10] (DESIGN.md §2; stated on the first page)
    masked_values: dict[str, int] = Field(default_factory=dict)
    area_unit: Literal["ha", "acre"] = "ha"
    zone_parts: list[ZonePartRow] = Field(default_factory=list)
    zone_colours: list[tuple[int, int, int]] = Field(default_factory=list)
    zone_notes: list[str] = Field(default_factory=list)
    zone_index: str = "ndvi"  # the index the zones were made from (vari without NIR)
    # sites (DESIGN.md §3.3): the previous flight's field means, and each field's NDVI mean over
    # the site's flights up to this one ("" = whole grid)
    previous_zone_means: dict[str, float | None] = Field(default_factory=dict)
    site_series: dict[str, list[tuple[UtcTime, float]]] = Field(default_factory=dict)
    # the fields drawn on the maps, in summary.json `zones` order (their numbers on the maps):
    # "grid" for the maps of the optical grid (indices, change, management zones), "thermal"
    field_outlines: dict[str, list[FieldOutline]] = Field(default_factory=dict)


# ---- distribution.json ------------------------------------------------------------------------


class Link(_Model):
    url: str
    expires_at: UtcTime | None = None


class NotificationResult(_Model):
    channel: Literal["webhook", "email"]
    target: str = Field(description="URL without query or credentials, or an e-mail address")
    attempted_at: UtcTime
    outcome: Literal["delivered", "failed"]
    attempts: int = Field(ge=0)
    status_code: int | None = None
    error: str | None = None


class DistributionRecord(_Model):
    """reports/<id>/distribution.json: who was notified, when, with which links."""

    batch_id: BatchId
    generated_at: UtcTime
    links: dict[str, Link] = Field(default_factory=dict)
    notifications: list[NotificationResult] = Field(default_factory=list)

    def to_json(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n").encode()
