"""One place for area units (REVIEW L3): m² per hectare and per (international) acre."""

from __future__ import annotations

import pytest

from pipeline.core import isoxml, report_pdf, units


def test_units__exact_definitions():
    assert units.M2_PER_HA == 10_000.0
    assert units.M2_PER_ACRE == pytest.approx(43_560 * 0.3048**2, rel=1e-15)  # 1 ac = 43 560 ft²
    assert dict(units.M2_PER_UNIT) == {"ha": units.M2_PER_HA, "acre": units.M2_PER_ACRE}
    assert units.area_in(area_m2=20_234.282112, unit="acre") == pytest.approx(5.0)
    assert units.area_in(area_m2=25_000.0, unit="ha") == 2.5
    with pytest.raises(KeyError, match="km2"):
        units.area_in(area_m2=1.0, unit="km2")


def test_units__every_user_takes_the_one_table():
    from pipeline.api import viewer

    assert viewer.M2_PER_UNIT is units.M2_PER_UNIT
    assert isoxml.rate_unit("lb/ac").factor == pytest.approx(453_592.37 / units.M2_PER_ACRE)
    assert isoxml.rate_unit("seeds/ac").factor == pytest.approx(1e3 / units.M2_PER_ACRE)
    assert not hasattr(report_pdf, "ACRE_M2") and not hasattr(isoxml, "_ACRE_M2")
