"""One batch's management zones (DESIGN.md §3.4): zonation, files, and what the report needs.

Reads the published index COG (NDVI, or VARI when the batch has no NIR) by GDAL path, window by
window (see `mgmt_zones`), and writes into `workdir`: management_zones.tif (paletted COG),
.geojson, .shp.zip and, with a prescription, prescription_isoxml.zip. Dagster-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import zone_outputs
from pipeline.core.analysis import OutputFile
from pipeline.core.errors import ManifestError
from pipeline.core.manifest import Prescription
from pipeline.core.mgmt_zones import ClassStat, ZonePart, zonate
from pipeline.core.outputs import entry, object_name
from pipeline.core.zones import load_zones

ZONING_INDICES = ("ndvi", "vari")  # in order of preference
CLASSES_TIF = object_name("management_zones.tif")
GEOJSON = object_name("management_zones.geojson")
SHAPEFILE = object_name("management_zones.shp.zip")
ISOXML = object_name("prescription_isoxml.zip")


@dataclass
class ManagementZonesAnalysis:
    index: str
    classes: int
    method: str
    class_stats: list[ClassStat]
    parts: list[ZonePart]
    canopy_cover: dict[str, float | None]
    valid_area_m2: float
    product: str | None
    unit: str | None
    rates: dict[int, float] | None
    colours: list[tuple[int, int, int]]
    files: list[OutputFile]
    vertices: int
    merged_parts: int
    factor: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def rate(self, zone_class: int) -> float | None:
        return None if self.rates is None else self.rates.get(zone_class)


def check_prescription(prescription: Prescription | None, *, classes: int) -> None:
    """A prescription must give a rate for each of the `classes` classes (IMAGERY_MZ_CLASSES)."""
    if prescription is not None and len(prescription.rates) != classes:
        raise ManifestError(
            f"`prescription.rates` gives {len(prescription.rates)} rate(s) but the server makes "
            f"{classes} management-zone classes (IMAGERY_MZ_CLASSES); give a rate for each of "
            f"the classes \"1\" to \"{classes}\"", file="manifest.json")


def analyse_management_zones(
    *,
    index_path: str,
    index: str,
    classes: int,
    min_ha: float,
    canopy_ndvi: float,
    workdir: Path,
    task: str,
    software_version: str,
    prescription: Prescription | None = None,
    zones_geojson: bytes | None = None,
    zones_name: str = "zones",
    gdal_options: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ManagementZonesAnalysis:
    """Zones of the index COG at `index_path` and their files in `workdir`."""
    started = time.monotonic()
    check_prescription(prescription, classes=classes)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fields: list = []
    if zones_geojson:
        import rasterio

        from pipeline.core.grid import Grid

        with rasterio.Env(**dict(gdal_options or {})), rasterio.open(index_path) as src:
            grid = Grid.from_dataset(src)
        fields = [(z.name, z.geometry) for z in load_zones(zones_geojson, name=zones_name,
                                                           grid=grid)]
    z = zonate(index_path=index_path, index=index, classes=classes, min_ha=min_ha,
               canopy_ndvi=canopy_ndvi, fields=fields, workdir=workdir / "stage",
               gdal_options=gdal_options)
    log(f"Management zones from {index}: {classes} classes on {z.factor}×{z.factor} px cells, "
        f"breaks {', '.join(f'{b:.3f}' for b in z.breaks)}, {z.merged_parts} part(s) under "
        f"{min_ha:g} ha merged, {len(z.parts)} feature(s), {z.vertices} vertices "
        f"(tolerance {z.tolerance:g})")
    rates = prescription.class_rates() if prescription else None
    canopy = z.canopy_cover
    notes = list(z.notes)
    if index != "ndvi":  # the canopy threshold is an NDVI value; VARI has another scale
        canopy = {name: None for name in canopy}
        if canopy:
            notes.append(f"no canopy cover: it is defined on NDVI, and this batch has {index} only")
    files = [OutputFile(CLASSES_TIF, zone_outputs.write_class_cog(z, workdir / CLASSES_TIF),
                        entry(CLASSES_TIF).kind.value)]
    z.stage.unlink(missing_ok=True)
    outputs = {GEOJSON: zone_outputs.geojson_bytes(z, rates=rates),
               SHAPEFILE: zone_outputs.shapefile_zip(z, rates=rates)}
    if prescription is not None:
        outputs[ISOXML] = zone_outputs.prescription_zip(
            z, task=task, product=prescription.product, unit=prescription.unit, rates=rates,
            software_version=software_version)
    for name, data in outputs.items():
        path = workdir / name
        path.write_bytes(data)
        files.append(OutputFile(name, path, entry(name).kind.value))
        log(f"{name}: {len(data) / 1e3:.1f} kB")
    return ManagementZonesAnalysis(
        index=index, classes=classes, method=z.method, class_stats=z.class_stats, parts=z.parts,
        canopy_cover=canopy, valid_area_m2=z.valid_area_m2,
        product=prescription.product if prescription else None,
        unit=prescription.unit if prescription else None, rates=rates,
        colours=zone_outputs.class_colours(classes), files=files, vertices=z.vertices,
        merged_parts=z.merged_parts, factor=z.factor, seconds=time.monotonic() - started,
        notes=notes)
