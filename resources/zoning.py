"""Management-zone settings (DESIGN.md §5: IMAGERY_MZ_CLASSES, IMAGERY_MZ_MIN_HA,
IMAGERY_CANOPY_NDVI, IMAGERY_AREA_UNIT), server configuration, never manifest content."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from pipeline.settings import Settings


class ZoningResource(dg.ConfigurableResource):
    classes: int = 3
    min_ha: float = 0.05
    canopy_ndvi: float = 0.5
    area_unit: Literal["ha", "acre"] = "ha"

    @classmethod
    def from_settings(cls, settings: Settings) -> ZoningResource:
        return cls(classes=settings.mz_classes, min_ha=settings.mz_min_ha,
                   canopy_ndvi=settings.canopy_ndvi, area_unit=settings.area_unit)
