"""The summary.json model against DESIGN.md §3 and the committed JSON Schema."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from pipeline.core.summary import (
    DistributionRecord,
    Histogram,
    IndexSummary,
    Summary,
    summary_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "summary.schema.json"
NDVI_CLASSES = [("bare", -1.0, 0.2), ("stressed", 0.2, 0.4), ("moderate", 0.4, 0.6), ("healthy", 0.6, 1.0)]


def make_summary(*, n_zones: int = 3, thermal: bool = True,
                 batch_id: str = "farm7-north-2026-06-14", zoning: bool = True) -> Summary:
    """A plausible summary of a 400 x 300 px, 0.05 m grid (20 m × 15 m = 300 m²) with NDVI, NDRE and thermal."""
    area = 400 * 300 * 0.05 * 0.05
    fractions = [0.1, 0.2, 0.3, 0.4]
    indices = {
        "ndvi": {
            "mean": 0.52, "std": 0.21, "min": -0.1, "max": 0.93, "p10": 0.18, "p50": 0.55, "p90": 0.81,
            "valid_fraction": 0.95, "valid_area_m2": area * 0.95,
            "scale": {"ramp": "RdYlGn", "vmin": -0.2, "vmax": 1.0},
            "classes": [
                {"name": n, "lower": lo, "upper": up, "fraction": f, "area_m2": area * 0.95 * f}
                for (n, lo, up), f in zip(NDVI_CLASSES, fractions, strict=True)
            ],
        },
        "ndre": {
            "mean": 0.31, "std": 0.1, "min": 0.0, "max": 0.6, "p10": 0.2, "p50": 0.3, "p90": 0.45,
            "valid_fraction": 0.95, "valid_area_m2": area * 0.95,
            "scale": {"ramp": "viridis", "vmin": 0.0, "vmax": 0.8},
        },
    }
    zones = [
        {
            "name": f"Field {i + 1:02d}",
            "area_m2": 1200.0 + i,
            "indices": {"ndvi": {"mean": 0.5, "p10": 0.2, "p50": 0.5, "p90": 0.8},
                        "ndre": {"mean": 0.3, "p10": 0.2, "p50": 0.3, "p90": 0.4}},
            "thermal": {"mean_c": 24.5, "max_c": 31.0} if thermal else None,
            "canopy_cover": 0.25 * (i % 4) if zoning else None,
        }
        for i in range(n_zones)
    ]
    management_zones = {
        "classes": [{"class": c, "area_m2": area * 0.95 * f, "ndvi_mean": m, "rate": r}
                    for c, f, m, r in ((1, 0.3, 0.21, 140.0), (2, 0.45, 0.52, 110.0),
                                       (3, 0.25, 0.8, 80.0))],
        "method": "Fisher-Jenks natural breaks on NDVI", "product": "Urea 46", "unit": "kg/ha",
    }
    therm = {
        "mean_c": 24.1, "min_c": 18.2, "max_c": 38.7, "p90_c": 29.9, "hotspot_threshold_c": 32.0,
        "hotspot_area_m2": 1.25,
        "hotspots": [{"centroid": [500010.5, 4649990.25], "area_m2": 1.0, "max_c": 38.7},
                     {"centroid": [500015.0, 4649995.0], "area_m2": 0.25, "max_c": 33.1}],
    }
    return Summary.model_validate({
        "batch_id": batch_id,
        "generated_at": "2026-06-14T11:00:00Z",
        "code_version": "0.1.0+test",
        "grid": {"crs": "EPSG:32633", "width": 400, "height": 300, "pixel_size": [0.05, 0.05],
                 "bounds": [500000.0, 4649985.0, 500020.0, 4650000.0]},
        "indices": indices,
        "thermal": therm if thermal else None,
        "zones": zones,
        "management_zones": management_zones if zoning else None,
        "artifacts": {"ndvi": f"s3://analysis-heatmaps/{batch_id}/ndvi.tif"},
    })


def _committed_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def test_summary__validates_against_committed_schema() -> None:
    for summary in (make_summary(), make_summary(n_zones=0, thermal=False)):
        document = json.loads(summary.to_json())
        jsonschema.Draft202012Validator(_committed_schema()).validate(document)
        assert document["schema_version"] == 2
        assert list(document) == ["schema_version", "batch_id", "generated_at", "code_version", "grid",
                                  "indices", "thermal", "zones", "ignored_images", "site", "change",
                                  "management_zones", "artifacts", "artifacts_encoding"]
        assert document["site"] is None and document["change"] == {}
        assert all("change" not in zone for zone in document["zones"])


def test_summary__site_and_change_validate_against_committed_schema() -> None:
    document = json.loads(make_summary().to_json())
    change = {"mean": -0.15, "p10": -0.2, "p50": -0.15, "p90": -0.1, "gain_area_m2": 0.0,
              "loss_area_m2": 1500.0}
    document["site"] = {"site_id": "farm7-north", "previous_batch_id": "farm7-north-2026-06-04",
                        "previous_captured_at": "2026-06-04T10:00:00Z", "comparable": True,
                        "reasons": [], "shift_px": [0.1, -0.2]}
    document["change"] = {"ndvi": change}
    document["zones"][0]["change"] = {"ndvi": change}
    summary = Summary.model_validate(document)
    again = json.loads(summary.to_json())
    jsonschema.Draft202012Validator(_committed_schema()).validate(again)
    assert again == document
    document["site"]["comparable"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(_committed_schema()).validate(document)


def test_summary__committed_schema_is_up_to_date() -> None:
    assert _committed_schema() == summary_json_schema(), "run scripts/export_schema.py and commit"
    check = subprocess.run([sys.executable, "scripts/export_schema.py", "--check"], cwd=ROOT,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_summary__extra_field_rejected() -> None:
    document = json.loads(make_summary().to_json())
    with pytest.raises(ValidationError, match="extra"):
        Summary.model_validate({**document, "surprise": 1})
    document["indices"]["ndvi"]["median"] = 0.5
    with pytest.raises(ValidationError, match="median"):
        Summary.model_validate(document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, _committed_schema())


def test_summary__roundtrip_is_byte_stable() -> None:
    summary = make_summary()
    again = Summary.model_validate_json(summary.to_json())
    assert again == summary
    assert again.to_json() == summary.to_json()
    assert summary.to_json().endswith(b"}\n")


def test_summary__generated_at_is_utc_z() -> None:
    cest = timezone(timedelta(hours=2))
    data = json.loads(make_summary().to_json())
    data["generated_at"] = datetime(2026, 6, 14, 13, 0, tzinfo=cest).isoformat()
    assert json.loads(Summary.model_validate(data).to_json())["generated_at"] == "2026-06-14T11:00:00Z"
    data["generated_at"] = "2026-06-14T11:00:00"  # naive: ambiguous
    with pytest.raises(ValidationError, match="timezone"):
        Summary.model_validate(data)


def test_index_summary__no_valid_pixel_gives_nulls() -> None:
    empty = IndexSummary(mean=math.nan, std=None, min=None, max=None, p10=None, p50=None, p90=None,
                         valid_fraction=0.0, valid_area_m2=0.0,
                         scale={"ramp": "RdYlGn", "vmin": -0.2, "vmax": 1.0})
    assert empty.mean is None
    data = json.loads(make_summary().to_json())
    data["indices"]["ndvi"] = empty.model_dump(mode="json")
    jsonschema.validate(data, _committed_schema())
    assert data["indices"]["ndvi"]["mean"] is None


def test_summary__nan_in_required_number_rejected() -> None:
    data = json.loads(make_summary().to_json())
    data["indices"]["ndvi"]["valid_area_m2"] = math.nan
    with pytest.raises(ValidationError, match="finite"):
        Summary.model_validate(data)


@pytest.mark.parametrize("batch_id", ["../etc", "a..b", "-leading", "", "x" * 101, "has space"])
def test_summary__bad_batch_id_rejected(batch_id: str) -> None:
    data = json.loads(make_summary().to_json())
    data["batch_id"] = batch_id
    with pytest.raises(ValidationError):
        Summary.model_validate(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, _committed_schema())


def test_scale__vmin_must_be_below_vmax() -> None:
    data = json.loads(make_summary().to_json())
    data["indices"]["ndvi"]["scale"]["vmax"] = -0.5
    with pytest.raises(ValidationError, match="vmin"):
        Summary.model_validate(data)


def test_histogram__edges_must_match_counts() -> None:
    assert Histogram(edges=[0.0, 0.5, 1.0], counts=[3, 4]).counts == [3, 4]
    with pytest.raises(ValidationError, match="one edge more"):
        Histogram(edges=[0.0, 1.0], counts=[3, 4])


def test_distribution_record__json_roundtrip() -> None:
    record = DistributionRecord.model_validate({
        "batch_id": "b1", "generated_at": datetime(2026, 6, 14, 11, tzinfo=UTC),
        "links": {"report.pdf": {"url": "https://x/report.pdf?sig=1", "expires_at": "2026-06-21T11:00:00Z"}},
        "notifications": [{"channel": "webhook", "target": "https://hooks.example/in",
                           "attempted_at": "2026-06-14T11:00:01Z", "outcome": "failed", "attempts": 3,
                           "status_code": 500, "error": "HTTP 500"}],
    })
    data = json.loads(record.to_json())
    assert data["generated_at"] == "2026-06-14T11:00:00Z"
    assert data["notifications"][0]["attempts"] == 3
    assert DistributionRecord.model_validate(data) == record


def test_summary__management_zones_serialise_class_as_in_the_contract() -> None:
    document = json.loads(make_summary().to_json())
    mz = document["management_zones"]
    assert [c["class"] for c in mz["classes"]] == [1, 2, 3]
    assert list(mz["classes"][0]) == ["class", "area_m2", "ndvi_mean", "rate"]
    assert document["zones"][1]["canopy_cover"] == 0.25
    assert Summary.model_validate_json(make_summary().to_json()) == make_summary()
    assert json.loads(make_summary(zoning=False).to_json())["management_zones"] is None
