"""Area units (DESIGN.md §3.4, §5 IMAGERY_AREA_UNIT): the one table of m² per hectare and per acre,
used by the report, the ISOXML rates, the zone files and the viewer."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

M2_PER_HA = 10_000.0
M2_PER_ACRE = 4046.8564224  # the international acre: 43 560 ft² of 0.3048 m
M2_PER_UNIT: Mapping[str, float] = MappingProxyType({"ha": M2_PER_HA, "acre": M2_PER_ACRE})


def area_in(*, area_m2: float, unit: str) -> float:
    """`area_m2` in `unit` ("ha" or "acre"); KeyError naming the unit otherwise."""
    try:
        return area_m2 / M2_PER_UNIT[unit]
    except KeyError:
        raise KeyError(f"unknown area unit {unit!r}; use one of {', '.join(M2_PER_UNIT)}") from None
