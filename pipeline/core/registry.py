"""The one registry of index definitions. Adding an index = one entry in `INDICES`.

Each `IndexDef` says which canonical bands the index needs, the formula, the range a correct
result must lie in (`value_range`, for asset checks), and the fixed colour scale of its heatmap
(`scale`, reported in summary.json and used by the heatmap COG, the PNG preview and the PDF legend).

Scales are fixed per index, never stretched per batch, so a colour means the same value in every
output and every batch (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import xarray as xr

from pipeline.core import indices
from pipeline.core.ramps import Scale

__all__ = [
    "ClassDef", "IndexDef", "INDICES", "NDVI_CLASSES", "Scale", "THERMAL_SCALE",
    "available_indices", "compute",
]


@dataclass(frozen=True)
class ClassDef:
    """A value class [lower, upper): lower bound inclusive; an index's last class includes upper."""

    name: str
    lower: float
    upper: float


@dataclass(frozen=True)
class IndexDef:
    """One vegetation index: its inputs, formula, valid range, heatmap scale and classes."""

    name: str
    title: str
    bands: tuple[str, ...]
    func: Callable[..., xr.DataArray]
    value_range: tuple[float, float]
    scale: Scale
    code_version: str
    description: str
    classes: tuple[ClassDef, ...] = ()


# DESIGN.md §3: bare < 0.2 <= stressed < 0.4 <= moderate < 0.6 <= healthy.
NDVI_CLASSES: tuple[ClassDef, ...] = (
    ClassDef("bare", -1.0, 0.2),
    ClassDef("stressed", 0.2, 0.4),
    ClassDef("moderate", 0.4, 0.6),
    ClassDef("healthy", 0.6, 1.0),
)

_VEGETATION = "RdYlGn"

_DEFS: tuple[IndexDef, ...] = (
    IndexDef(
        name="ndvi", title="NDVI", bands=("nir", "red"), func=indices.ndvi,
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Normalized difference vegetation index (nir - red) / (nir + red): "
        "green biomass and vigour. Bare soil ~0.1-0.2, dense healthy canopy > 0.6.",
        classes=NDVI_CLASSES,
    ),
    IndexDef(
        name="ndre", title="NDRE", bands=("nir", "red_edge"), func=indices.ndre,
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 0.8), code_version="1",
        description="Normalized difference red edge (nir - red_edge) / (nir + red_edge): "
        "chlorophyll/nitrogen status; saturates later than NDVI in dense canopy. Crops ~0.2-0.6, "
        "so the heatmap tops out at 0.8.",
    ),
    IndexDef(
        name="gndvi", title="GNDVI", bands=("nir", "green"), func=indices.gndvi,
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Green NDVI (nir - green) / (nir + green): chlorophyll concentration.",
    ),
    IndexDef(
        name="savi", title="SAVI", bands=("nir", "red"), func=indices.savi,
        value_range=(-1.5, 1.5), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Soil-adjusted vegetation index 1.5 (nir - red) / (nir + red + 0.5): NDVI "
        "corrected for bright soil in sparse canopy; vegetation ~0.1-0.9.",
    ),
    IndexDef(
        name="evi", title="EVI", bands=("nir", "red", "blue"), func=indices.evi,
        # Unbounded in theory (the denominator nears 0 over bright blue targets). [-1, 1] is the
        # plausible land-surface range (MODIS publishes EVI in [-0.2, 1]); pixels beyond it are
        # clouds, snow, glint or calibration errors, so a check on it should warn, not fail.
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Enhanced vegetation index 2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1): "
        "does not saturate in dense canopy, corrects for aerosols via blue. Plausible range "
        "[-1, 1] (unbounded in theory); vegetation ~0.2-0.8.",
    ),
    IndexDef(
        name="vari", title="VARI", bands=("green", "red", "blue"), func=indices.vari,
        # Unbounded in theory (green + red - blue can be 0). [-1, 1] holds for any pixel with
        # blue <= min(green, red), i.e. almost all vegetation and soil; a check should warn only.
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.5, 0.5), code_version="1",
        description="Visible atmospherically resistant index (green - red) / (green + red - blue), "
        "for RGB-only cameras. Plausible range [-1, 1] (unbounded in theory); soil < 0, "
        "vegetation ~0.05-0.4, hence the heatmap scale -0.5..0.5.",
    ),
)

INDICES: Mapping[str, IndexDef] = MappingProxyType({d.name: d for d in _DEFS})
"""All indices by name, in DESIGN.md §3 order."""

THERMAL_SCALE = Scale("inferno", 0.0, 60.0)
"""Heatmap scale of `thermal_c`, in °C.

Fixed, not stretched per batch, so the same colour means the same temperature in every flight and
a field can be compared over a season. 0-60 °C covers crop canopy (typically 15-40 °C; water-
stressed canopy runs a few degrees above air temperature) and sun-heated bare soil (up to ~60 °C);
colder or hotter pixels are clipped to the end colours (their values stay in thermal_c.tif).
"""


def available_indices(bands: Iterable[str]) -> list[IndexDef]:
    """The indices whose bands are all in `bands`, in registry order."""
    have = set(bands)
    return [d for d in INDICES.values() if have.issuperset(d.bands)]


def compute(index: IndexDef, bands: Mapping[str, xr.DataArray]) -> xr.DataArray:
    """`index` of the reflectance `bands` (canonical name -> DataArray), float32, lazy if dask.

    The result is named after the index and has attrs long_name, units "1" and code_version.
    """
    missing = [b for b in index.bands if b not in bands]
    if missing:
        raise KeyError(
            f"index {index.name!r} needs bands {list(index.bands)}; missing {missing} "
            f"(available: {sorted(bands)}); use available_indices() to choose indices"
        )
    result = index.func(**{b: bands[b] for b in index.bands})
    result.name = index.name
    result.attrs = {"long_name": index.title, "units": "1", "code_version": index.code_version}
    return result
