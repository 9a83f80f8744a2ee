"""A site's series of batches (DESIGN.md §3.3): records, previous batch, staleness, history, STAC.

Designed around concurrency and late arrivals. Every successfully processed batch of a site leaves
ONE record, `reports/sites/<site_id>/batches/<batch_id>.json`, written whole by that batch's own
run (an object PUT is atomic), so two batches of one site processed at once never lose each
other's rows, and processing a batch again replaces its record instead of appending. Everything
else is derived from the set of records: the previous batch of a batch (the latest record with an
earlier `captured_at`), `history.parquet` and `collection.json` (rebuilt whole from the records),
and which batches compare against the wrong flight (a late older batch slipped in before them, or
their previous batch was processed again with different results): those are *stale* and
`reprocess_stale_batches` re-runs them. Dagster-free.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.core.change import ChangeAnalysis, Comparability
from pipeline.core.outputs import lookup, object_name, site_key

HISTORY_COLUMNS = (
    "site_id",
    "batch_id",
    "captured_at",
    "zone",
    "index",
    "mean",
    "p10",
    "p50",
    "p90",
    "valid_fraction",
    "area_m2",
)
STAC_VERSION = "1.1.0"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


def site_prefix(site_id: str) -> str:
    return f"sites/{site_id}/"


def record_key(site_id: str, batch_id: str) -> str:
    """Key (in the report bucket) of a batch's record in its site's series."""
    return f"sites/{site_id}/batches/{batch_id}.json"


def history_key(site_id: str) -> str:
    return site_key(site_id, object_name("history.parquet"))


def collection_key(site_id: str) -> str:
    return site_key(site_id, object_name("collection.json"))


class HistoryRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: str  # "" for the whole grid
    index: str
    mean: float | None
    p10: float | None
    p50: float | None
    p90: float | None
    valid_fraction: float
    area_m2: float


class BatchRecord(BaseModel):
    """One successfully processed batch of a site, as its later batches and the history see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site_id: str
    batch_id: str
    captured_at: datetime  # UTC
    reflectance_explicit: bool
    indices: tuple[str, ...]
    crs: str
    bbox_4326: tuple[float, float, float, float]
    previous_batch_id: str | None = None
    previous_fingerprint: str | None = None  # the previous record's fingerprint when compared
    comparable: bool = False
    rows: tuple[HistoryRow, ...] = ()
    processed_at: datetime

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.captured_at, self.batch_id)

    def fingerprint(self) -> str:
        """What a later batch's change depends on: calibration, indices and their statistics."""
        text = json.dumps(
            [
                self.reflectance_explicit,
                self.indices,
                self.crs,
                [r.model_dump() for r in self.rows],
            ],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()


def parse_records(blobs: Iterable[bytes]) -> list[BatchRecord]:
    return sorted((BatchRecord.model_validate_json(b) for b in blobs), key=lambda r: r.order)


def read_records(store, bucket: str, site_id: str) -> list[BatchRecord]:
    """Every record of the site's series in `bucket` (any object store), in capture order."""
    prefix = f"sites/{site_id}/batches/"
    return parse_records(
        store.get_bytes(bucket, o.key)
        for o in store.list_objects(bucket, prefix=prefix)
        if o.key.endswith(".json")
    )


def read_stale(store, bucket: str) -> dict[str, str]:
    """batch_id -> why, for every site in `bucket` (see `stale_records`)."""
    stale: dict[str, str] = {}
    for prefix in store.list_prefixes(bucket, prefix="sites/"):
        site_id = prefix[len("sites/") :].strip("/")
        stale.update(stale_records(read_records(store, bucket, site_id)))
    return stale


def previous_record(
    records: Sequence[BatchRecord], *, batch_id: str, captured_at: datetime
) -> BatchRecord | None:
    """The latest record with an earlier (captured_at, batch_id) than this batch; never itself."""
    mine = (captured_at, batch_id)
    earlier = [r for r in records if r.batch_id != batch_id and r.order < mine]
    return max(earlier, key=lambda r: r.order) if earlier else None


def stale_records(records: Sequence[BatchRecord]) -> dict[str, str]:
    """batch_id -> why its change no longer compares with the right flight (DESIGN.md §3.3)."""
    stale = {}
    for record in records:
        expected = previous_record(
            records, batch_id=record.batch_id, captured_at=record.captured_at
        )
        expected_id = expected.batch_id if expected else None
        if record.previous_batch_id != expected_id:
            stale[record.batch_id] = (
                f"compared with {record.previous_batch_id or 'no batch'}, but "
                f"its previous batch is now {expected_id or 'none'}"
            )
        elif expected is not None and record.previous_fingerprint != expected.fingerprint():
            stale[record.batch_id] = f"its previous batch {expected_id} was processed again"
    return stale


def history_rows(
    *, indices: Mapping[str, Any], zone_areas_m2: Mapping[str, float]
) -> list[HistoryRow]:
    """Rows of one batch from its index results (`IndexResult`s by name): the grid (zone "") and
    every zone, per index."""
    rows = []
    for name, result in indices.items():
        s = result.stats
        rows.append(
            HistoryRow(
                zone="",
                index=name,
                mean=s["mean"],
                p10=s["p10"],
                p50=s["p50"],
                p90=s["p90"],
                valid_fraction=s["valid_fraction"],
                area_m2=s["valid_area_m2"],
            )
        )
        for zone, z in result.zones.items():
            total = zone_areas_m2.get(zone, 0.0)
            valid = z.get("valid_area_m2", 0.0)
            rows.append(
                HistoryRow(
                    zone=zone,
                    index=name,
                    mean=z["mean"],
                    p10=z["p10"],
                    p50=z["p50"],
                    p90=z["p90"],
                    valid_fraction=valid / total if total else 0.0,
                    area_m2=valid,
                )
            )
    return rows


def history_table(records: Sequence[BatchRecord]):
    """The site's history as a pandas DataFrame (§3.3 columns), ordered by capture time."""
    import pandas as pd

    data = [
        {
            "site_id": r.site_id,
            "batch_id": r.batch_id,
            "captured_at": r.captured_at,
            **row.model_dump(),
        }
        for r in sorted(records, key=lambda r: r.order)
        for row in r.rows
    ]
    frame = pd.DataFrame(data, columns=list(HISTORY_COLUMNS))
    frame["captured_at"] = pd.to_datetime(frame["captured_at"], utc=True)
    for column in ("mean", "p10", "p50", "p90", "valid_fraction", "area_m2"):
        frame[column] = frame[column].astype("float64")
    return frame.reset_index(drop=True)


def history_parquet(records: Sequence[BatchRecord]) -> bytes:
    buffer = io.BytesIO()
    history_table(records).to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


# ---- the batch's place in its series, for summary.json and the report -------------------------


@dataclass
class SiteChange:
    """What summary.json `site`, `change` and `zones[].change` say, and the report's page."""

    site_id: str
    batch_id: str
    captured_at: datetime
    previous: BatchRecord | None
    comparability: Comparability | None
    analysis: ChangeAnalysis | None  # only when comparable

    def site_fields(self) -> dict[str, Any]:
        c = self.comparability
        reasons = list(c.reasons) if c else []
        if self.previous is None:
            reasons = [
                "this is the site's first batch: no successfully processed batch of the site "
                "has an earlier captured_at"
            ]
        return {
            "site_id": self.site_id,
            "previous_batch_id": self.previous.batch_id if self.previous else None,
            "previous_captured_at": self.previous.captured_at if self.previous else None,
            "comparable": bool(c and c.comparable and self.analysis is not None),
            "reasons": reasons,
            "shift_px": c.shift_px if c else None,
        }


# ---- STAC ---------------------------------------------------------------------------------------


def _asset(obj: StacObject) -> dict[str, Any]:
    """A STAC asset of an object of the batch: media type, title and roles from the catalogue."""
    found = lookup(obj.name)
    if found is None:
        return {
            "href": obj.href,
            "type": "application/octet-stream",
            "title": obj.name,
            "roles": ["data"],
        }
    entry, index = found
    title = f"{entry.title} ({index})" if index else entry.title
    return {"href": obj.href, "type": entry.media_type, "title": title, "roles": list(entry.roles)}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class StacObject:
    name: str  # e.g. "ndvi.tif", "report.pdf"
    href: str  # s3://bucket/key


def stac_item(
    *,
    batch_id: str,
    captured_at: datetime | None,
    generated_at: datetime,
    footprint_4326: Mapping[str, Any],
    bbox_4326: Sequence[float],
    proj_code: str | None,
    proj_wkt2: str | None,
    shape: tuple[int, int],
    transform: Sequence[float],
    objects: Sequence[StacObject],
    site_id: str | None,
    collection_href: str | None,
    self_href: str,
) -> dict[str, Any]:
    """reports/<id>/item.json: a STAC 1.1.0 Item with the projection extension (DESIGN.md §3.3)."""
    props: dict[str, Any] = {
        "datetime": _iso(captured_at) if captured_at else None,
        "created": _iso(generated_at),
        "proj:shape": list(shape),
        "proj:transform": [float(v) for v in transform[:6]],
    }
    if captured_at is None:  # STAC needs a time: a batch without captured_at spans "unknown"
        props["datetime"] = _iso(generated_at)
    if proj_code:
        props["proj:code"] = proj_code
    else:
        props["proj:code"] = None
        props["proj:wkt2"] = proj_wkt2
    if site_id:
        props["site_id"] = site_id
    links = [{"rel": "self", "href": self_href, "type": "application/geo+json"}]
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJECTION_EXTENSION],
        "id": batch_id,
        "geometry": dict(footprint_4326),
        "bbox": [float(v) for v in bbox_4326],
        "properties": props,
        "links": links,
        "assets": {},
    }
    if collection_href and site_id:
        item["collection"] = site_id
        links += [
            {"rel": "collection", "href": collection_href, "type": "application/json"},
            {"rel": "parent", "href": collection_href, "type": "application/json"},
        ]
    for obj in sorted(objects, key=lambda o: o.name):
        item["assets"][obj.name] = _asset(obj)
    return item


def stac_collection(
    *, site_id: str, records: Sequence[BatchRecord], item_hrefs: Mapping[str, str], self_href: str
) -> dict[str, Any]:
    """reports/sites/<site_id>/collection.json: a STAC 1.1.0 Collection linking the site's items."""
    ordered = sorted(records, key=lambda r: r.order)
    boxes = [r.bbox_4326 for r in ordered] or [(-180.0, -90.0, 180.0, 90.0)]
    bbox = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    start = _iso(ordered[0].captured_at) if ordered else None
    end = _iso(ordered[-1].captured_at) if ordered else None
    links = [{"rel": "self", "href": self_href, "type": "application/json"}]
    links += [
        {
            "rel": "item",
            "href": item_hrefs[r.batch_id],
            "type": "application/geo+json",
            "title": r.batch_id,
        }
        for r in ordered
        if r.batch_id in item_hrefs
    ]
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": site_id,
        "title": f"Site {site_id}",
        "description": f"Every successfully processed imagery batch of site {site_id}, "
        "ordered by capture time.",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[start, end]]}},
        "links": links,
    }


def to_json_bytes(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


__all__ = [
    "BatchRecord",
    "HistoryRow",
    "SiteChange",
    "StacObject",
    "collection_key",
    "history_key",
    "history_parquet",
    "history_rows",
    "history_table",
    "parse_records",
    "previous_record",
    "read_records",
    "read_stale",
    "record_key",
    "stac_collection",
    "stac_item",
    "stale_records",
]
