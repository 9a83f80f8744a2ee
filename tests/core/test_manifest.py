"""manifest.json (DESIGN.md §2), batch ids (§1) and band resolution."""

from __future__ import annotations

import json

import pytest

from pipeline.core.bands import band_from_description, resolve_bands
from pipeline.core.errors import InvalidBatchId, ManifestError, UnknownBands
from pipeline.core.manifest import batch_id_problem, parse_manifest, validate_batch_id

DESIGN_EXAMPLE = {
    "schema_version": 1,
    "batch_id": "farm7-north-2026-06-14",
    "captured_at": "2026-06-14T10:32:00Z",
    "platform": "free text", "sensor": "free text",
    "images": [
        {"path": "ortho_a.tif", "sha256": "a" * 64, "bands": ["blue", "green", "red", "red_edge", "nir"]},
        {"path": "ortho_b.tif", "sha256": "b" * 64},
        {"path": "thermal.tif", "sha256": "c" * 64, "bands": ["thermal"], "thermal_unit": "centikelvin"},
    ],
    "reflectance_scale": 0.0001,
    "zones": "fields.geojson",
    "auto_report": True,
}


def parse(doc: dict, batch_id: str | None = None):
    return parse_manifest(json.dumps(doc).encode(), name="b/manifest.json",
                          batch_id=batch_id or doc.get("batch_id", "b"))


def test_parse_manifest__design_example_is_accepted():
    m = parse(DESIGN_EXAMPLE)
    assert m.batch_id == "farm7-north-2026-06-14"
    assert m.images[0].bands == ("blue", "green", "red", "red_edge", "nir")
    assert m.images[1].bands is None
    assert m.images[2].thermal_unit == "centikelvin"
    assert m.reflectance_scale == 0.0001 and m.zones == "fields.geojson" and m.auto_report


def test_parse_manifest__defaults():
    m = parse({"schema_version": 1, "batch_id": "b", "images": [{"path": "x.tif"}]})
    assert m.reflectance_scale == 1.0 and m.auto_report is True and m.zones is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"schema_version": 2}, "`schema_version`"),
        ({"images": []}, "`images`"),
        ({"reflectance_scale": 0}, "`reflectance_scale`"),
        ({"colour": "red"}, "`colour` is not a manifest field"),
        ({"images": [{"path": "../x.tif"}]}, "`images.0.path`"),
        ({"images": [{"path": "/etc/passwd"}]}, "absolute"),
        ({"images": [{"path": "http://evil.example/x.tif"}]}, "URL"),
        ({"images": [{"path": "a//x.tif"}]}, "empty segment"),
        ({"images": [{"path": "x.tif", "sha256": "zz"}]}, "sha256sum"),
        ({"images": [{"path": "x.tif", "bands": ["nir", "swir"]}]}, "unknown band"),
        ({"images": [{"path": "x.tif", "thermal_scale": 0.04}]}, "together"),
        ({"images": [{"path": "x.tif"}, {"path": "x.tif"}]}, "listed twice"),
        ({"zones": "../z.geojson"}, "`zones`"),
        ({"images": [{"path": "x.tif", "thermal_unit": "fahrenheit"}]}, "thermal_unit"),
    ],
)
def test_parse_manifest__errors_name_the_field_and_file(change, expected):
    doc = {"schema_version": 1, "batch_id": "b", "images": [{"path": "x.tif"}], **change}
    with pytest.raises(ManifestError) as info:
        parse(doc, "b")
    assert expected in str(info.value)
    assert str(info.value).startswith("b/manifest.json: ")


def test_parse_manifest__batch_id_must_equal_prefix():
    with pytest.raises(ManifestError, match="must be equal"):
        parse({"schema_version": 1, "batch_id": "other", "images": [{"path": "x.tif"}]}, "b")


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b"[1, 2]", b"<html>502</html>"])
def test_parse_manifest__not_json_object(data):
    with pytest.raises(ManifestError, match="JSON"):
        parse_manifest(data, name="b/manifest.json", batch_id="b")


@pytest.mark.parametrize("good", ["a", "farm7-north-2026-06-14", "A.b_c-1", "9" * 100])
def test_batch_id__valid(good):
    assert batch_id_problem(good) is None and validate_batch_id(good) == good


@pytest.mark.parametrize("bad", ["", "/", "a/b", "a,b", "..", "a..b", "a\nb", "x" * 300, "_a", ".a", "é"])
def test_batch_id__invalid_is_refused_with_reason(bad):
    assert batch_id_problem(bad)
    with pytest.raises(InvalidBatchId, match="rename the upload prefix"):
        validate_batch_id(bad)


@pytest.mark.parametrize(
    ("description", "band"),
    [("NIR", "nir"), ("RedEdge", "red_edge"), ("Red Edge", "red_edge"), ("red-edge", "red_edge"),
     ("LWIR", "thermal"), ("Blue", "blue"), ("near infrared", "nir"), ("Alpha", "alpha"),
     ("SWIR1", "swir1"), ("SWIR 1", "swir1"), ("swir-1", "swir1"), ("SWIR_2", "swir2"),
     ("swir16", "swir1"), ("swir22", "swir2"), ("Shortwave infrared 2", "swir2"),
     ("SWIR", None), ("B11", None), ("B12", None), ("B5", None), (None, None), ("", None)],
)
def test_band_from_description__case_insensitive(description, band):
    assert band_from_description(description) == band


def test_resolve_bands__sentinel2_numbers_only_in_a_sentinel2_stack():
    s2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    assert resolve_bands(manifest_bands=None, descriptions=s2, file="s2.tif") == (
        "other", "blue", "green", "red", "red_edge", "other", "other", "nir", "other", "other",
        "swir1", "swir2")
    # without B8A the numbers are ambiguous (Landsat 8 B11 is thermal, Landsat 5 B5 is SWIR 1)
    for landsat in (["B10", "B11"], ["B5"], ["B11"], ["band 7"]):
        with pytest.raises(UnknownBands, match="Landsat and Sentinel-2"):
            resolve_bands(manifest_bands=None, descriptions=landsat, file="lc08_b11.tif")


def test_manifest__swir_bands_are_canonical():
    entry = {"path": "b.tif", "bands": ["nir", "swir1", "swir2", "other"]}
    manifest = parse({"schema_version": 1, "batch_id": "b", "images": [entry]}, "b")
    assert manifest.images[0].bands == ("nir", "swir1", "swir2", "other")


def test_resolve_bands__manifest_wins_and_must_match_count():
    assert resolve_bands(manifest_bands=["red", "nir"], descriptions=[None, None], file="x.tif") == ("red", "nir")
    with pytest.raises(UnknownBands, match="names 2 band.*file has 3"):
        resolve_bands(manifest_bands=["red", "nir"], descriptions=[None, None, None], file="x.tif")


def test_resolve_bands__descriptions_then_clear_error():
    assert resolve_bands(manifest_bands=None, descriptions=["Red", "NIR"], file="x.tif") == ("red", "nir")
    with pytest.raises(UnknownBands) as info:
        resolve_bands(manifest_bands=None, descriptions=[None, "NIR"], file="x.tif")
    assert str(info.value).startswith("x.tif: ") and '"bands"' in str(info.value)


def test_validate_images__other_only_images_skipped_and_a_batch_of_nothing_refused(tmp_path):
    import numpy as np

    from pipeline.core.validation import validate_images
    from tests.rasters import north_up, write_raster

    transform = north_up(left=500_000.0, top=4_650_000.0, res=1.0)
    write_raster(tmp_path / "rgn.tif", np.ones((3, 8, 8), np.uint8), transform=transform)
    write_raster(tmp_path / "qa.tif", np.ones((2, 8, 8), np.uint8), transform=transform)
    images = [{"path": "rgn.tif", "bands": ["red", "green", "nir"]},
              {"path": "qa.tif", "bands": ["other", "alpha"]}]
    manifest = parse({"schema_version": 1, "batch_id": "b", "images": images}, "b")
    batch = validate_images(manifest=manifest, locate=lambda p: str(tmp_path / p), gdal_options={})
    assert [s.name for s in batch.sources] == ["rgn.tif"]
    assert [(i.path, "other, alpha" in i.reason) for i in batch.ignored] == [("qa.tif", True)]
    nothing = parse({"schema_version": 1, "batch_id": "b", "images": images[1:]}, "b")
    with pytest.raises(ManifestError, match="no image carries a band the pipeline uses.*qa.tif"):
        validate_images(manifest=nothing, locate=lambda p: str(tmp_path / p), gdal_options={})


def test_parse_manifest__prescription_rates_by_class():
    m = parse({**DESIGN_EXAMPLE, "prescription": {"product": "Urea 46", "unit": "kg/ha",
                                                  "rates": {"2": 80.5, "1": 100, "3": 60}}})
    assert m.prescription.class_rates() == {1: 100.0, 2: 80.5, 3: 60.0}
    assert parse(DESIGN_EXAMPLE).prescription is None


@pytest.mark.parametrize(("prescription", "reason"), [
    ({"product": "U", "unit": "kg/ha", "rates": {"1": "100"}}, "prescription.rates.1"),
    ({"product": "U", "unit": "kg/ha", "rates": {"1": True}}, "prescription.rates.1"),
    ({"product": "U", "unit": "bags", "rates": {"1": 1}}, "unknown prescription unit 'bags'"),
    ({"product": "U", "unit": "kg/ha", "rates": {"1": 1, "3": 2}},
     'keys must be the classes "1" to "2"'),
    ({"product": "U", "unit": "kg/ha", "rates": {}}, "keys must be the classes"),
    ({"product": "U", "unit": "kg/ha", "rates": {"1": -5}}, "not finite non-negative"),
    ({"unit": "kg/ha", "rates": {"1": 5}}, "prescription.product` is required"),
])
def test_parse_manifest__prescription_refused_naming_the_field(prescription, reason):
    with pytest.raises(ManifestError, match="b/manifest.json") as info:
        parse({**DESIGN_EXAMPLE, "prescription": prescription})
    assert reason in str(info.value)


def test_manifest__site_id_requires_captured_at():
    raw = {"schema_version": 1, "batch_id": "b1", "images": [{"path": "a.tif"}],
           "site_id": "farm7-north"}
    with pytest.raises(ManifestError, match="captured_at"):
        parse_manifest(json.dumps(raw).encode(), name="manifest.json", batch_id="b1")
    raw["captured_at"] = "2026-06-14T12:32:00+02:00"
    m = parse_manifest(json.dumps(raw).encode(), name="manifest.json", batch_id="b1")
    assert m.site_id == "farm7-north"
    assert m.captured_at_utc.isoformat() == "2026-06-14T10:32:00+00:00"
    assert not m.reflectance_scale_explicit
    raw["reflectance_scale"] = 1.0
    m = parse_manifest(json.dumps(raw).encode(), name="manifest.json", batch_id="b1")
    assert m.reflectance_scale_explicit


@pytest.mark.parametrize("site_id", ["../x", "a..b", "-x", "x" * 101, ""])
def test_manifest__bad_site_id_refused(site_id):
    raw = {"schema_version": 1, "batch_id": "b1", "images": [{"path": "a.tif"}],
           "site_id": site_id, "captured_at": "2026-06-14T10:32:00Z"}
    with pytest.raises(ManifestError, match="site_id"):
        parse_manifest(json.dumps(raw).encode(), name="manifest.json", batch_id="b1")
