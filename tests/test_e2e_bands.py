"""Every band a sensor delivers (DESIGN.md §2, §3.2), end to end on the embedded local store: a
Landsat-like scene uploaded one file per band, with bands the pipeline does not use, and a custom
index declared in IMAGERY_INDICES_FILE, appear in rasters, statistics, summary.json, the PDF and
the asset metadata exactly like the built-ins; editing the custom formula makes the batch stale."""

from __future__ import annotations

import io
import json

import dagster as dg
import numpy as np
import pytest
import yaml
from pypdf import PdfReader

from pipeline.core.errors import ConfigurationError
from pipeline.reprocess import STALE
from pipeline.schedules import REASON_TAG
from tests.harness import (
    configure_local,
    failure_text,
    launch_requested_runs,
    load_definitions,
    object_store,
    sensor_tick,
    upload_batch,
)
from tests.rasters import north_up, write_raster

NBR = {"name": "nbr", "formula": "(nir - swir2) / (nir + swir2)", "vmin": -0.5, "vmax": 0.8,
       "ramp": "RdYlGn", "description": "Normalized burn ratio. Burnt or dry fields low."}
# Landsat 5 TM numbering: B5 and B7 are SWIR, B6 is thermal (here uncalibrated, so `other`).
LANDSAT = {"B1": ("blue", 500), "B2": ("green", 800), "B3": ("red", 600), "B4": ("nir", 3000),
           "B5": ("swir1", 1500), "B6": ("other", 140), "B7": ("swir2", 1000)}
SIZE = 64
STRIPE = 8  # rows of swir1 that are nodata (0): ndmi is NaN there, ndvi is not


def _indices_file(tmp_path, nbr: dict):
    path = tmp_path / "indices.yaml"
    path.write_text(yaml.safe_dump([nbr], sort_keys=False))
    return path


def _landsat_folder(tmp_path):
    folder = tmp_path / "LT05_scene"
    folder.mkdir()
    transform = north_up(left=500_000.0, top=4_650_000.0, res=30.0)
    images = []
    for band, (name, dn) in LANDSAT.items():
        data = np.full((SIZE, SIZE), dn, dtype=np.uint16)
        if name == "swir1":
            data[:STRIPE] = 0
        write_raster(folder / f"LT05_{band}.tif", data, transform=transform, nodata=0)
        images.append({"path": f"LT05_{band}.tif", "bands": [name]})
    qa = np.full((SIZE, SIZE), 672, dtype=np.uint16)  # a QA bit field: nothing to analyse
    write_raster(folder / "LT05_QA_PIXEL.tif", qa, transform=transform)
    images.append({"path": "LT05_QA_PIXEL.tif", "bands": ["other"]})
    # one field over the western half: its statistics hold every index, the custom one too
    west = [[500_000.0, 4_648_080.0], [500_960.0, 4_648_080.0], [500_960.0, 4_650_000.0],
            [500_000.0, 4_650_000.0], [500_000.0, 4_648_080.0]]
    (folder / "fields.geojson").write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
        "features": [{"type": "Feature", "properties": {"name": "West"},
                      "geometry": {"type": "Polygon", "coordinates": [west]}}]}))
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "batch_id": "lt05-one-file-per-band", "reflectance_scale": 0.0001,
        "sensor": "Landsat 5 TM", "images": images, "zones": "fields.geojson"}))
    return folder, [i["path"] for i in images] + ["fields.geojson", "manifest.json"]


def _evaluate_schedule(definitions, instance) -> list[tuple[str, str]]:
    schedule = definitions.get_schedule_def("reprocess_stale_batches")
    with dg.build_schedule_context(instance=instance,
                                   repository_def=definitions.get_repository_def()) as context:
        data = schedule.evaluate_tick(context)
    return [(r.partition_key, r.tags[REASON_TAG]) for r in data.run_requests or []]


def _code_version(definitions, key: str) -> str:
    return definitions.get_repository_def().asset_graph.get(dg.AssetKey(key)).code_version


@pytest.mark.slow
def test_landsat_one_file_per_band_with_other_bands_and_a_custom_index(monkeypatch, tmp_path):
    configure_local(monkeypatch, tmp_path / "data")
    indices_file = _indices_file(tmp_path, NBR)
    monkeypatch.setenv("IMAGERY_INDICES_FILE", str(indices_file))
    monkeypatch.delenv("REPROCESS_MAX_RUNS_PER_TICK", raising=False)
    folder, files = _landsat_folder(tmp_path)
    batch_id = "lt05-one-file-per-band"
    with dg.instance_for_test() as instance:
        definitions = load_definitions()
        upload_batch(definitions, folder, batch_id, files)
        (run,) = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
        assert run.success, failure_text(run)

        res = object_store(definitions)
        store = res.store()
        heatmaps = {o.key.split("/", 1)[1] for o in store.list_objects(res.heatmap_bucket,
                                                                        prefix=f"{batch_id}/")}
        expected = ["ndvi", "gndvi", "savi", "evi", "vari", "ndmi", "ndwi", "nbr"]  # no red_edge
        assert heatmaps == {f"{n}{s}" for n in expected
                            for s in (".tif", "_heatmap.tif", "_heatmap.png")} | {
            f"management_zones.{e}" for e in ("tif", "geojson", "shp.zip")}
        summary = json.loads(store.get_bytes(res.report_bucket, f"{batch_id}/summary.json"))
        assert list(summary["indices"]) == expected
        nir, red, green, swir1, swir2 = (LANDSAT[b][1] * 1e-4
                                         for b in ("B4", "B3", "B2", "B5", "B7"))
        full, striped = 1.0, (SIZE - STRIPE) / SIZE
        for name, value, valid in (("ndvi", (nir - red) / (nir + red), full),
                                   ("ndmi", (nir - swir1) / (nir + swir1), striped),
                                   ("ndwi", (green - nir) / (green + nir), full),
                                   ("nbr", (nir - swir2) / (nir + swir2), full)):
            stats = summary["indices"][name]
            assert stats["mean"] == pytest.approx(value, abs=1e-5), name
            assert stats["p50"] == pytest.approx(value, abs=0.005), name
            assert stats["valid_fraction"] == pytest.approx(valid, rel=1e-3), name
        (zone,) = summary["zones"]
        assert zone["name"] == "West" and set(zone["indices"]) == set(expected)
        assert zone["indices"]["nbr"]["mean"] == pytest.approx(0.5, abs=1e-5)
        assert zone["indices"]["ndmi"]["mean"] == pytest.approx(1 / 3, abs=1e-5)
        assert summary["indices"]["ndmi"]["scale"] == {"ramp": "BrBG", "vmin": -0.4, "vmax": 0.6}
        assert summary["indices"]["nbr"]["scale"] == {"ramp": "RdYlGn", "vmin": -0.5, "vmax": 0.8}
        assert {"ndmi", "nbr", "ndmi_heatmap", "nbr_heatmap"} <= set(summary["artifacts"])
        # one file per band: B6 (named other) and the QA file carry nothing to analyse
        assert [i["path"] for i in summary["ignored_images"]] == ["LT05_B6.tif",
                                                                   "LT05_QA_PIXEL.tif"]
        assert all("no band the pipeline uses" in i["reason"] for i in summary["ignored_images"])

        pdf = PdfReader(io.BytesIO(store.get_bytes(res.report_bucket, f"{batch_id}/report.pdf")))
        pages = [p.extract_text() for p in pdf.pages]
        assert "Images ignored" in pages[0]  # the first page's facts
        assert "LT05_QA_PIXEL.tif" in pages[0] and "LT05_B6.tif" in pages[0]
        text = "\n".join(pages)
        assert "NDMI — Normalized difference moisture index" in text
        assert "NBR — Normalized burn ratio" in text
        assert "nbr = (nir - swir2) / (nir + swir2)" in text

        statistics = run.asset_materializations_for_node("vegetation_indices")
        metadata = next(m.metadata for m in statistics
                        if m.asset_key == dg.AssetKey("index_statistics"))
        assert metadata["nbr_mean"].value == pytest.approx(0.5, abs=1e-5)
        assert "ndmi_mean" in metadata
        graph = definitions.get_repository_def().asset_graph
        assert "nbr = (nir - swir2) / (nir + swir2)" in graph.get(
            dg.AssetKey("index_statistics")).description

        # Nothing is due while the definitions are unchanged ...
        assert (batch_id, STALE) not in _evaluate_schedule(definitions, instance)
        before = _code_version(definitions, "index_rasters")
        # ... and editing the custom formula makes exactly this batch stale.
        _indices_file(tmp_path, {**NBR, "formula": "(nir - swir2) / (nir + swir2 + 0.1)"})
        edited = load_definitions()
        assert _code_version(edited, "index_rasters") != before
        assert _evaluate_schedule(edited, instance) == [(batch_id, STALE)]


def test_code_location_does_not_load_with_a_bad_indices_file(monkeypatch, tmp_path):
    configure_local(monkeypatch, tmp_path / "data")
    path = _indices_file(tmp_path, {**NBR, "formula": "(nir - swir3) / (nir + swir3)"})
    monkeypatch.setenv("IMAGERY_INDICES_FILE", str(path))
    with pytest.raises(ConfigurationError,
                       match=r"IMAGERY_INDICES_FILE: .*indices\.yaml, entry 1 \('nbr'\): "
                             r"`formula` .* 'swir3', which is not a band"):
        load_definitions()


def test_cli_indices__lists_builtins_and_custom_from_the_settings(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("IMAGERY_INDICES_FILE", str(_indices_file(tmp_path, NBR)))
    result = CliRunner().invoke(app, ["indices", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["indices"]
    assert [i["name"] for i in listed] == ["ndvi", "ndre", "gndvi", "savi", "evi", "vari", "ndmi",
                                           "ndwi", "nbr"]
    assert listed[-1]["custom"] and listed[-1]["bands"] == ["nir", "swir2"]
    assert listed[6]["scale"] == {"ramp": "BrBG", "vmin": -0.4, "vmax": 0.6}
    _indices_file(tmp_path, {**NBR, "ramp": "Nope"})
    refused = CliRunner().invoke(app, ["indices"])
    assert refused.exit_code != 0 and "'Nope' is not a matplotlib colormap" in refused.output
