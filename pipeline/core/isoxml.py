"""ISO 11783-10 (ISOXML) TaskData of a zone prescription: `TASKDATA/TASKDATA.XML` in a zip.

No maintained Python ISOXML writer exists (the maintained implementations are AgGateway's ADAPT
ISOv4Plugin in C# and isoxml-js), so this writes the few elements a vector prescription needs and
nothing else, checked against the element and attribute definitions of ISO 11783-10 version 4
(as implemented by ADAPT ISOv4Plugin):

    ISO11783_TaskData  VersionMajor=4 VersionMinor=3 ManagementSoftwareManufacturer
                       ManagementSoftwareVersion DataTransferOrigin=1 (FMIS)
      PDT  A=PDT1 (ProductId) B=designator (≤ 32 chars) F=1 (single product)
      TSK  A=TSK1 B=designator G=1 (planned)
        TZN  A=code (= class, 0..254) B="Class n"
          PDV  A=DDI (4 hex digits) B=value (integer, in the DDI's unit) C=PDT1
          PLN  A=2 (treatment zone) B=field name
            LSG  A=1 (exterior) | 2 (interior)
              PNT  A=2 (other) C=latitude D=longitude (WGS84, 9 decimals)

Rings repeat their first point at the end. Rates are converted to the DDI's unit (ISO 11783-11):
DDI 6 "Setpoint Mass Per Area Application Rate" in mg/m² (1 kg/ha = 100 mg/m²), DDI 1 "Setpoint
Volume Per Area Application Rate" in mm³/m² (1 l/ha = 100 mm³/m²), DDI 11 "Setpoint Count Per
Area Application Rate" in 0.001 /m² (1 seed/ha = 0.1).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from pipeline.core.units import M2_PER_ACRE, M2_PER_HA

VERSION_MAJOR = "4"
VERSION_MINOR = "3"
DESIGNATOR_MAX = 32


@dataclass(frozen=True)
class RateUnit:
    ddi: int
    factor: float  # manifest unit -> DDI unit
    kind: str  # "mass" | "volume" | "count"
    per: str  # "ha" | "acre": the area unit the rate is per


RATE_UNITS: Mapping[str, RateUnit] = {
    "kg/ha": RateUnit(6, 100.0, "mass", "ha"),
    "t/ha": RateUnit(6, 100_000.0, "mass", "ha"),
    "lb/ac": RateUnit(6, 453_592.37 / M2_PER_ACRE, "mass", "acre"),
    "l/ha": RateUnit(1, 100.0, "volume", "ha"),
    "m3/ha": RateUnit(1, 100_000.0, "volume", "ha"),
    "gal/ac": RateUnit(1, 3_785_411.784 / M2_PER_ACRE, "volume", "acre"),  # US gallon
    "seeds/ha": RateUnit(11, 0.1, "count", "ha"),
    "seeds/ac": RateUnit(11, M2_PER_HA / M2_PER_ACRE * 0.1, "count", "acre"),
}
"""Prescription units a manifest may give (keys, case-insensitive: `L/ha` is `l/ha`)."""


def rate_unit(unit: str) -> RateUnit:
    """The DDI and conversion of `unit`; KeyError naming the accepted units otherwise."""
    try:
        return RATE_UNITS[unit.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown prescription unit {unit!r}; use one of "
                       f"{', '.join(RATE_UNITS)}") from None


@dataclass(frozen=True)
class TreatmentZone:
    code: int  # the management-zone class
    rate: float  # in the prescription's unit
    polygons: Sequence[tuple[str | None, BaseGeometry]]  # (field, (Multi)Polygon in lon/lat)


def _ring(parent: ET.Element, coords, kind: str) -> None:
    lsg = ET.SubElement(parent, "LSG", A=kind)
    points = list(coords)
    for lon, lat in points:
        ET.SubElement(lsg, "PNT", A="2", C=f"{lat:.9f}", D=f"{lon:.9f}")


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    return [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon)]


def taskdata_xml(*, task: str, product: str, unit: str, zones: Sequence[TreatmentZone],
                 software_version: str) -> bytes:
    """TASKDATA.XML bytes (UTF-8, XML declaration)."""
    spec = rate_unit(unit)
    ddi = f"{spec.ddi:04X}"
    root = ET.Element("ISO11783_TaskData", {
        "VersionMajor": VERSION_MAJOR, "VersionMinor": VERSION_MINOR,
        "ManagementSoftwareManufacturer": "imagery-pipeline",
        "ManagementSoftwareVersion": software_version[:DESIGNATOR_MAX],
        "TaskControllerManufacturer": "", "TaskControllerVersion": "",
        "DataTransferOrigin": "1",
    })
    ET.SubElement(root, "PDT", A="PDT1", B=product[:DESIGNATOR_MAX], F="1")
    tsk = ET.SubElement(root, "TSK", A="TSK1", B=task[:DESIGNATOR_MAX], G="1")
    for zone in zones:
        if not 0 <= zone.code <= 254:
            raise ValueError(f"treatment zone code {zone.code} outside 0..254")
        tzn = ET.SubElement(tsk, "TZN", A=str(zone.code), B=f"Class {zone.code}")
        value = round(zone.rate * spec.factor)
        if not -(2**31) <= value < 2**31 - 1:
            raise ValueError(f"rate {zone.rate} {unit} does not fit ISOXML's 32-bit value")
        ET.SubElement(tzn, "PDV", A=ddi, B=str(value), C="PDT1")
        for field_name, geometry in zone.polygons:
            for polygon in _polygons(geometry):
                attrs = {"A": "2"}
                if field_name:
                    attrs["B"] = field_name[:DESIGNATOR_MAX]
                pln = ET.SubElement(tzn, "PLN", attrs)
                _ring(pln, polygon.exterior.coords, "1")
                for interior in polygon.interiors:
                    _ring(pln, interior.coords, "2")
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def taskdata_zip(xml: bytes) -> bytes:
    """A zip holding `TASKDATA/TASKDATA.XML` (what a terminal reads from a USB stick)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("TASKDATA/TASKDATA.XML", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, xml)
    return buffer.getvalue()
