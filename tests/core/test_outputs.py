"""The catalogue of output objects (DESIGN.md §3): names, owners, media types."""

from __future__ import annotations

import pytest

from pipeline.core.outputs import (
    CATALOGUE,
    Kind,
    RESERVED_INDEX_NAMES,
    entry,
    lookup,
    object_name,
    preview_name,
    producer_of,
)


@pytest.mark.parametrize(("name", "template", "index"), [
    ("ndvi.tif", "{index}.tif", "ndvi"),
    ("ndvi_heatmap.tif", "{index}_heatmap.tif", "ndvi"),
    ("my_index_heatmap.png", "{index}_heatmap.png", "my_index"),
    ("thermal_c.tif", "thermal_c.tif", None),
    ("thermal_heatmap.tif", "thermal_heatmap.tif", None),
    ("change_ndvi.tif", "change_{index}.tif", "ndvi"),
    ("change_ndvi_heatmap.png", "change_{index}_heatmap.png", "ndvi"),
    ("management_zones.geojson", "management_zones.geojson", None),
    ("report.pdf", "report.pdf", None),
])
def test_outputs__lookup_finds_the_one_entry(name: str, template: str, index: str | None) -> None:
    found = lookup(name)
    assert found is not None and (found[0].template, found[1]) == (template, index)
    assert found[0].name(index) == name  # and the name is built back exactly


@pytest.mark.parametrize("name", ["ndvi.stage.tif", "NDVI.tif", "ndvi.tiff", "../ndvi.tif",
                                  "sites/a/history.parquet", "notes.txt", ""])
def test_outputs__unknown_names_have_no_entry(name: str) -> None:
    assert lookup(name) is None and producer_of(name) is None


def test_outputs__every_name_is_claimed_by_exactly_one_entry() -> None:
    names = [e.name("ndvi" if e.per_index else None) for e in CATALOGUE if e.scope == "batch"]
    assert len(names) == len(set(names))
    for e, name in zip([e for e in CATALOGUE if e.scope == "batch"], names):
        assert lookup(name)[0] is e, name


def test_outputs__reserved_names_would_collide() -> None:
    # An index named "thermal" would publish thermal_heatmap.tif, the thermal asset's object.
    assert producer_of(object_name("{index}_heatmap.tif", "thermal")) == "thermal_heatmap"
    assert "thermal" in RESERVED_INDEX_NAMES


def test_outputs__kinds_and_media_types() -> None:
    assert entry("{index}.tif").kind == Kind.FLOAT_COG
    assert entry("{index}_heatmap.tif").kind == Kind.PALETTE_COG
    assert entry("{index}.tif").media_type.startswith("image/tiff; application=geotiff")
    assert entry("management_zones.geojson").media_type == "application/geo+json"
    assert preview_name("thermal") == "thermal_heatmap.png"
    assert preview_name("change_ndvi") == "change_ndvi_heatmap.png"
    with pytest.raises(ValueError, match="needs an index name"):
        object_name("{index}.tif", "../x")
