"""A site's series: previous batch, staleness, history table, STAC documents (offline schemas)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pytest
from affine import Affine
from rasterio.crs import CRS

from pipeline.core.grid import Grid
from pipeline.core.site_plots import footprint_4326
from pipeline.core.sites import (
    BatchRecord,
    HistoryRow,
    StacObject,
    history_parquet,
    previous_record,
    stac_collection,
    stac_item,
    stale_records,
)
from tests.stac import validate_collection, validate_item


def _record(
    batch_id: str,
    day: int,
    *,
    previous: BatchRecord | None = None,
    mean: float = 0.5,
    comparable: bool = True,
) -> BatchRecord:
    return BatchRecord(
        site_id="farm7",
        batch_id=batch_id,
        captured_at=datetime(2026, 6, day, 10, tzinfo=UTC),
        reflectance_explicit=True,
        indices=("ndvi",),
        crs="EPSG:32633",
        bbox_4326=(15.0, 45.0, 15.01, 45.01),
        previous_batch_id=previous.batch_id if previous else None,
        previous_fingerprint=previous.fingerprint() if previous else None,
        comparable=comparable and previous is not None,
        rows=(
            HistoryRow(
                zone="",
                index="ndvi",
                mean=mean,
                p10=mean - 0.1,
                p50=mean,
                p90=mean + 0.1,
                valid_fraction=1.0,
                area_m2=100.0,
            ),
        ),
        processed_at=datetime(2026, 6, 30, tzinfo=UTC),
    )


def test_previous_record__latest_earlier_never_itself():
    a, b, c = _record("a", 10), _record("b", 20), _record("c", 25)
    records = [c, a, b]
    assert previous_record(records, batch_id="c", captured_at=c.captured_at).batch_id == "b"
    assert previous_record(records, batch_id="b", captured_at=b.captured_at).batch_id == "a"
    assert previous_record(records, batch_id="a", captured_at=a.captured_at) is None
    # reprocessing b with a corrected, later time: its previous is now c, never b itself
    later = datetime(2026, 6, 28, tzinfo=UTC)
    assert previous_record(records, batch_id="b", captured_at=later).batch_id == "c"


def test_stale_records__late_older_batch_and_reprocessed_previous():
    b = _record("b", 20)
    c = _record("c", 25, previous=b)
    assert stale_records([b, c]) == {}
    a = _record("a", 10)  # arrives late: b compared with nothing, c is still right
    assert set(stale_records([a, b, c])) == {"b"}
    b2 = _record("b", 20, previous=a, mean=0.6)  # b processed again, with other results
    assert set(stale_records([a, b2, c])) == {"c"}
    same = _record("b", 20, previous=a)  # ... or with the same results: nothing to redo
    assert stale_records([a, same, c]) == {}


def test_history_parquet__columns_order_and_utc():
    a, b = _record("a", 10), _record("b", 20)
    frame = pd.read_parquet(io.BytesIO(history_parquet([b, a])))
    assert list(frame.columns) == [
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
    ]
    assert list(frame.batch_id) == ["a", "b"]
    assert str(frame.captured_at.dt.tz) == "UTC"
    assert frame.loc[0, "captured_at"] == pd.Timestamp("2026-06-10T10:00:00Z")


def _item(**changes):
    grid = Grid(
        crs=CRS.from_epsg(32633),
        transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000),
        width=200,
        height=100,
    )
    footprint, bbox = footprint_4326(grid)
    args = dict(
        batch_id="b",
        captured_at=datetime(2026, 6, 20, 10, tzinfo=UTC),
        generated_at=datetime(2026, 6, 20, 12, tzinfo=UTC),
        footprint_4326=footprint,
        bbox_4326=bbox,
        proj_code="EPSG:32633",
        proj_wkt2=None,
        shape=grid.shape,
        transform=tuple(grid.transform)[:6],
        objects=[
            StacObject("ndvi.tif", "s3://analysis-heatmaps/b/ndvi.tif"),
            StacObject("ndvi_heatmap.png", "s3://analysis-heatmaps/b/ndvi_heatmap.png"),
            StacObject("report.pdf", "s3://reports/b/report.pdf"),
        ],
        site_id="farm7",
        collection_href="s3://reports/sites/farm7/collection.json",
        self_href="s3://reports/b/item.json",
    )
    return stac_item(**(args | changes))


def test_stac_item__valid_with_projection_and_assets():
    item = _item()
    validate_item(item)
    lon0, lat0, lon1, lat1 = item["bbox"]
    assert 14.9 < lon0 < lon1 < 15.1 and 45.0 < lat0 < lat1 < 45.2
    assert item["properties"]["proj:shape"] == [100, 200]
    assert item["assets"]["ndvi.tif"]["type"].startswith("image/tiff; application=geotiff")
    assert item["assets"]["report.pdf"]["roles"] == ["metadata"]
    assert (
        _item(proj_code=None, proj_wkt2=CRS.from_epsg(32633).to_wkt())["properties"]["proj:code"]
        is None
    )
    validate_item(_item(proj_code=None, proj_wkt2=CRS.from_epsg(32633).to_wkt()))


@pytest.mark.parametrize(
    "breaks",
    [
        lambda d: d["properties"].pop("datetime"),
        lambda d: d.update(stac_version="1.0"),
        lambda d: d["properties"].update({"proj:shape": [100]}),
        lambda d: d["assets"]["ndvi.tif"].pop("href"),
    ],
)
def test_stac_item__schema_catches_a_broken_item(breaks):
    item = _item()
    breaks(item)
    with pytest.raises(AssertionError):
        validate_item(item)


def test_stac_collection__valid_and_links_items_in_capture_order():
    a, b = _record("a", 10), _record("b", 20)
    collection = stac_collection(
        site_id="farm7",
        records=[b, a],
        item_hrefs={"a": "s3://reports/a/item.json", "b": "s3://reports/b/item.json"},
        self_href="s3://reports/sites/farm7/collection.json",
    )
    validate_collection(collection)
    assert [link["href"] for link in collection["links"] if link["rel"] == "item"] == [
        "s3://reports/a/item.json",
        "s3://reports/b/item.json",
    ]
    assert collection["extent"]["temporal"]["interval"] == [
        ["2026-06-10T10:00:00Z", "2026-06-20T10:00:00Z"]
    ]
