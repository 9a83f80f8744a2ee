"""The first page's model: fields ranked by vigour, flagged by the printed rule, in sentences made
of the numbers, and the batch facts."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.core.report_findings import build_findings, day_text, sentence
from pipeline.core.summary import ReportContext, Summary

NDVI_BOUNDS = (("bare", -1.0, 0.2), ("stressed", 0.2, 0.4), ("moderate", 0.4, 0.6),
               ("healthy", 0.6, 1.0))
#: name -> (area m², NDVI mean, bare, stressed, canopy cover, Δ NDVI, max °C)
KNOWN_FIELDS = {
    "North field": (52_000.0, 0.72, 0.02, 0.05, 0.90, 0.03, 29.0),
    "South field": (31_000.0, 0.41, 0.11, 0.20, 0.35, -0.12, 36.5),
    "East field": (18_000.0, 0.55, 0.05, 0.10, 0.60, -0.06, 30.2),
    "West field": (0.0, None, None, None, None, None, None),  # not flown
}


def _zone(name: str, area, mean, bare, stressed, canopy, delta, max_c, *, change: bool) -> dict:
    if mean is None:
        return {"name": name, "area_m2": 0.0, "indices": {"ndvi": {
            "mean": None, "p10": None, "p50": None, "p90": None,
            "classes": [{"name": n, "lower": lo, "upper": up, "fraction": None, "area_m2": 0.0}
                        for n, lo, up in NDVI_BOUNDS]}},
            "thermal": {"mean_c": None, "max_c": None}, "canopy_cover": None}
    shares = (bare, stressed, 0.5 * (1 - bare - stressed), 0.5 * (1 - bare - stressed))
    zone = {
        "name": name, "area_m2": area,
        "indices": {"ndvi": {"mean": mean, "p10": mean - 0.2, "p50": mean, "p90": mean + 0.15,
                             "classes": [{"name": n, "lower": lo, "upper": up, "fraction": f,
                                          "area_m2": f * area}
                                         for (n, lo, up), f in zip(NDVI_BOUNDS, shares,
                                                                   strict=True)]},
                    "ndre": {"mean": mean / 2, "p10": 0.1, "p50": mean / 2, "p90": 0.5}},
        "thermal": {"mean_c": max_c - 5, "max_c": max_c}, "canopy_cover": canopy,
    }
    if change:
        zone["change"] = {"ndvi": {"mean": delta, "p10": delta - 0.1, "p50": delta,
                                   "p90": delta + 0.1, "gain_area_m2": 10.0,
                                   "loss_area_m2": 20.0}}
    return zone


def known_summary(*, comparable: bool = True, site: bool = True) -> Summary:
    """A 4-field batch of 30 June 2026 with known field values, compared with 14 June."""
    total = sum(v[0] for v in KNOWN_FIELDS.values())
    ndvi = {"mean": 0.6, "std": 0.2, "min": -0.1, "max": 0.9, "p10": 0.3, "p50": 0.6,
            "p90": 0.8, "valid_fraction": 0.8, "valid_area_m2": total,
            "scale": {"ramp": "RdYlGn", "vmin": -0.2, "vmax": 1.0},
            "classes": [{"name": n, "lower": lo, "upper": up, "fraction": 0.25,
                         "area_m2": total / 4} for n, lo, up in NDVI_BOUNDS]}
    ndre = {"mean": 0.3, "std": 0.1, "min": 0.0, "max": 0.6, "p10": 0.2, "p50": 0.3, "p90": 0.45,
            "valid_fraction": 0.8, "valid_area_m2": total,
            "scale": {"ramp": "viridis", "vmin": 0.0, "vmax": 0.8}}
    change = {"mean": -0.04, "p10": -0.15, "p50": -0.03, "p90": 0.05, "gain_area_m2": 100.0,
              "loss_area_m2": 900.0}
    doc = {
        "batch_id": "farm7-2026-06-30", "generated_at": "2026-06-30T12:00:00Z",
        "code_version": "0.1.0+test",
        "grid": {"crs": "EPSG:32633", "width": 1000, "height": 500, "pixel_size": [0.5, 0.5],
                 "bounds": [500000.0, 4649750.0, 500500.0, 4650000.0]},
        "indices": {"ndvi": ndvi, "ndre": ndre},
        "thermal": {"mean_c": 27.0, "min_c": 18.0, "max_c": 36.5, "p90_c": 31.0,
                    "hotspot_threshold_c": 32.0, "hotspot_area_m2": 12.5, "hotspots": []},
        "zones": [_zone(name, *values, change=comparable) for name, values in KNOWN_FIELDS.items()],
        "ignored_images": [{"path": "extra/rgb_preview.jpg", "reason": "only `other` bands"}],
        "change": {"ndvi": change} if comparable else {},
        "management_zones": {"classes": [
            {"class": 1, "area_m2": 30_000.0, "ndvi_mean": 0.35, "rate": 140.0},
            {"class": 2, "area_m2": 71_000.0, "ndvi_mean": 0.7, "rate": 80.0}],
            "method": "Fisher-Jenks natural breaks on NDVI", "product": "CAN 27",
            "unit": "kg/ha"},
    }
    if site:
        doc["site"] = {"site_id": "farm7", "previous_batch_id": "farm7-2026-06-14",
                       "previous_captured_at": "2026-06-14T10:00:00Z", "comparable": comparable,
                       "reasons": [] if comparable else ["reflectance scales differ "
                                                         "(0.0001 then 1/255)"],
                       "shift_px": [0.2, -0.1] if comparable else None}
    return Summary.model_validate(doc)


def known_context(**update) -> ReportContext:
    parts = [{"zone_class": 1, "field": "South field", "area_m2": 20_000.0, "ndvi_mean": 0.3,
              "rate": 140.0},
             {"zone_class": 2, "field": "South field", "area_m2": 10_000.0, "ndvi_mean": 0.6,
              "rate": 80.0},
             {"zone_class": 2, "field": "North field", "area_m2": 52_000.0, "ndvi_mean": 0.72,
              "rate": 80.0}]
    return ReportContext.model_validate({
        "captured_at": "2026-06-30T10:15:00Z", "platform": "DJI M300", "sensor": "RedEdge-P",
        "masked_values": {"tile_a.tif": 1200, "tile_b.tif": 34}, "zone_parts": parts,
        "zone_colours": [(215, 48, 39), (26, 152, 80)], **update})


def test_build_findings__fields_ranked_by_ndvi_with_their_figures():
    findings = build_findings(summary=known_summary(), context=known_context())
    assert findings.index == "ndvi"
    assert [f.name for f in findings.fields] == ["South field", "East field", "North field",
                                                 "West field"]
    south, east, north, west = findings.fields
    assert (south.number, south.vigour, south.change, south.hottest_c) == (2, 0.41, -0.12, 36.5)
    assert abs(south.low_share - 0.31) < 1e-9 and south.canopy_cover == 0.35
    assert south.rate == (140.0 * 20_000 + 80.0 * 10_000) / 30_000  # area-weighted
    assert south.reasons == ("low_share", "drop", "hotspot")
    assert east.reasons == ("drop",) and north.reasons == () and not west.flown
    assert findings.previous == datetime(2026, 6, 14, 10, tzinfo=UTC)
    assert findings.rate_unit == "kg/ha"


def test_build_findings__sentences_are_the_numbers_in_words():
    findings = build_findings(summary=known_summary(), context=known_context())
    assert findings.sentences == [
        "South field: 31 % stressed or bare (mean NDVI 0.41), down 0.12 NDVI since 14 June, "
        "hottest spot 36.5 °C.",
        "East field: mean NDVI 0.55, down 0.06 NDVI since 14 June.",  # flagged by its drop
        "Not flown in this batch (1 without imagery, no statistics): West field.",
    ]
    assert "25 %" in findings.rule and "0.05" in findings.rule and "32.0 °C" in findings.rule


def test_build_findings__not_comparable_leaves_change_out_and_says_why():
    findings = build_findings(summary=known_summary(comparable=False), context=known_context())
    assert all(f.change is None for f in findings.fields) and findings.previous is None
    assert not findings.has_change
    assert findings.sentences[0] == ("South field: 31 % stressed or bare (mean NDVI 0.41), "
                                     "hottest spot 36.5 °C.")
    facts = dict(findings.facts)
    assert "NOT comparable" in facts["Compared with"]
    assert "reflectance scales differ" in facts["Compared with"]


def test_batch_facts__trust_figures_in_the_area_unit():
    summary = known_summary()
    facts = dict(build_findings(summary=summary, context=known_context()).facts)
    assert facts["Captured"] == "30 June 2026, 10:15 UTC"
    assert facts["Area flown"] == "10.10 ha with valid data (grid extent 12.50 ha)"
    assert facts["Valid data"] == "80.0 % of the grid's pixels (NDVI)"
    assert facts["Images ignored"] == "1: extra/rgb_preview.jpg (only `other` bands)"
    assert facts["Values masked"].startswith("1,234 band values")
    assert facts["Values masked"].endswith("tile_a.tif 1,200 values; tile_b.tif 34 values")
    assert "farm7-2026-06-14 (14 June): comparable" in facts["Compared with"]
    acres = dict(build_findings(summary=summary, context=known_context(area_unit="acre")).facts)
    assert acres["Area flown"] == "24.96 acre with valid data (grid extent 30.89 acre)"


def test_build_findings__vari_batch_ranks_by_vari_without_class_shares():
    summary = known_summary(site=False)
    doc = summary.model_dump(mode="json")
    doc["indices"] = {"vari": {**doc["indices"]["ndre"],
                               "scale": {"ramp": "RdYlGn", "vmin": -0.5, "vmax": 0.5}}}
    for zone in doc["zones"]:
        zone["indices"] = {"vari": {k: v for k, v in zone["indices"]["ndre"].items()}} \
            if "ndre" in zone["indices"] else {}
    findings = build_findings(summary=Summary.model_validate(doc), context=known_context())
    assert findings.index == "vari"
    assert [f.name for f in findings.fields][:3] == ["South field", "East field", "North field"]
    assert all(f.low_share is None for f in findings.fields)
    assert "mean VARI 0.20" in findings.sentences[0] and "hottest spot 36.5 °C" in \
        findings.sentences[0]
    assert "the batch belongs to no site" in dict(findings.facts)["Compared with"]


def test_sentence__unchanged_and_year_when_it_differs():
    findings = build_findings(summary=known_summary(), context=known_context())
    north = findings.fields[2]
    steady = sentence(north.__class__(**{**north.__dict__, "change": 0.004}), index="ndvi",
                      previous=datetime(2025, 9, 1, tzinfo=UTC), reference=findings.previous)
    assert steady == ("North field: 7 % stressed or bare (mean NDVI 0.72), NDVI unchanged since "
                      "1 September 2025.")
    assert day_text(datetime(2026, 6, 14, tzinfo=UTC),
                    reference=datetime(2026, 6, 30, tzinfo=UTC)) == "14 June"
