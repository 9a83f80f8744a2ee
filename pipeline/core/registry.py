"""The one registry of index definitions: every consumer (analysis, heatmaps, statistics, checks,
summary.json, PDF, asset metadata, CLI help) reads the `Registry` built here, never a list of its
own.

A `Registry` is built once, when the code location loads, by `build_registry(indices_file=...)`:
the built-in indices of DESIGN.md §3.2 (`BUILTINS`) plus the custom ones declared in
IMAGERY_INDICES_FILE. It is an immutable value passed to whoever needs it (no module state that
one test could leave behind for the next), and picklable, so `distributed` workers get it too.

Each `IndexDef` says which canonical bands the index needs, the formula, the range a correct
result must lie in (`value_range`, for asset checks; None = unbounded), the fixed colour scale of
its heatmap (`scale`, reported in summary.json and used by the heatmap COG, the PNG preview and
the PDF legend) and its code version. Adding a built-in = one entry in `BUILTINS`; a custom index is
one entry of the indices file (README "Adding an index").

Scales are fixed per index, never stretched per batch, so a colour means the same value in every
output and every batch (DESIGN.md §3).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import xarray as xr

from pipeline.core import indices, outputs
from pipeline.core.errors import ConfigurationError
from pipeline.core.formula import Formula, FormulaError, parse_formula
from pipeline.core.manifest import OPTICAL_BANDS
from pipeline.core.ramps import Scale

__all__ = [
    "BUILTINS", "CHANGE_SCALE", "ClassDef", "IndexDef", "INDICES", "NDVI_CLASSES", "Registry",
    "Scale", "THERMAL_SCALE", "available_indices", "build_registry", "compute",
    "load_custom_indices",
]

SETTING = "IMAGERY_INDICES_FILE"


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
    value_range: tuple[float, float] | None  # None: unbounded, no range check
    scale: Scale
    code_version: str
    description: str
    classes: tuple[ClassDef, ...] = ()
    long_name: str = ""  # the PDF section heading after the title, e.g. "Normalized difference ..."
    formula: str = ""  # as written in DESIGN.md §3.2 or the indices file
    custom: bool = False


# DESIGN.md §3: bare < 0.2 <= stressed < 0.4 <= moderate < 0.6 <= healthy.
NDVI_CLASSES: tuple[ClassDef, ...] = (
    ClassDef("bare", -1.0, 0.2),
    ClassDef("stressed", 0.2, 0.4),
    ClassDef("moderate", 0.4, 0.6),
    ClassDef("healthy", 0.6, 1.0),
)

_VEGETATION = "RdYlGn"

BUILTINS: tuple[IndexDef, ...] = (
    IndexDef(
        name="ndvi", title="NDVI", bands=("nir", "red"), func=indices.ndvi,
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Normalized difference vegetation index (nir - red) / (nir + red): "
        "green biomass and vigour. Bare soil ~0.1-0.2, dense healthy canopy > 0.6.",
        classes=NDVI_CLASSES, long_name="Normalized difference vegetation index",
        formula="(nir-red)/(nir+red)",
    ),
    IndexDef(
        name="ndre", title="NDRE", bands=("nir", "red_edge"), func=indices.ndre,
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 0.8), code_version="1",
        description="Normalized difference red edge (nir - red_edge) / (nir + red_edge): "
        "chlorophyll/nitrogen status; saturates later than NDVI in dense canopy. Crops ~0.2-0.6, "
        "so the heatmap tops out at 0.8.",
        long_name="Normalized difference red-edge index", formula="(nir-red_edge)/(nir+red_edge)",
    ),
    IndexDef(
        name="gndvi", title="GNDVI", bands=("nir", "green"), func=indices.gndvi,
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Green NDVI (nir - green) / (nir + green): chlorophyll concentration.",
        long_name="Green normalized difference vegetation index", formula="(nir-green)/(nir+green)",
    ),
    IndexDef(
        name="savi", title="SAVI", bands=("nir", "red"), func=indices.savi,
        value_range=(-1.5, 1.5), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Soil-adjusted vegetation index 1.5 (nir - red) / (nir + red + 0.5): NDVI "
        "corrected for bright soil in sparse canopy; vegetation ~0.1-0.9.",
        long_name="Soil-adjusted vegetation index", formula="1.5*(nir-red)/(nir+red+0.5)",
    ),
    IndexDef(
        name="evi", title="EVI", bands=("nir", "red", "blue"), func=indices.evi,
        # Unbounded in theory (the denominator nears 0 over bright blue targets). Where blue <=
        # red and nir <= 1 (land surfaces) EVI <= 2.5 nir / (nir + 1) <= 1.25, which dense canopy
        # reaches (values above 1 are normal there); [-1, 1.25] is the range it really takes.
        value_range=(-1.0, 1.25), scale=Scale(_VEGETATION, -0.2, 1.0), code_version="1",
        description="Enhanced vegetation index 2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1): "
        "does not saturate in dense canopy, corrects for aerosols via blue. Plausible range "
        "[-1, 1.25] (unbounded in theory); vegetation ~0.2-0.8, dense canopy above 1.",
        long_name="Enhanced vegetation index", formula="2.5*(nir-red)/(nir+6*red-7.5*blue+1)",
    ),
    IndexDef(
        name="vari", title="VARI", bands=("green", "red", "blue"), func=indices.vari,
        # Unbounded in theory (green + red - blue can be 0). [-1, 1] holds for any pixel with
        # blue <= min(green, red), i.e. almost all vegetation and soil; a check should warn only.
        value_range=(-1.0, 1.0), scale=Scale(_VEGETATION, -0.5, 0.5), code_version="1",
        description="Visible atmospherically resistant index (green - red) / (green + red - blue), "
        "for RGB-only cameras. Plausible range [-1, 1] (unbounded in theory); soil < 0, "
        "vegetation ~0.05-0.4, hence the heatmap scale -0.5..0.5.",
        long_name="Visible atmospherically resistant index", formula="(green-red)/(green+red-blue)",
    ),
    IndexDef(
        name="ndmi", title="NDMI", bands=("nir", "swir1"), func=indices.ndmi,
        # Brown (dry) to blue-green (wet), neutral at 0.1: bare dry soil and senescent canopy
        # sit at -0.4..-0.1, water-stressed canopy around 0-0.2, well-watered closed canopy at
        # 0.3-0.6 (Gao 1996; Jackson et al. 2004). Values beyond 0.6 are rare over crops.
        value_range=(-1.0, 1.0), scale=Scale("BrBG", -0.4, 0.6), code_version="1",
        description="Normalized difference moisture index (nir - swir1) / (nir + swir1): canopy "
        "water content, the water-stress index beside thermal. Dry soil -0.4..-0.1, stressed "
        "canopy ~0-0.2, well-watered canopy 0.3-0.6; brown = dry, blue-green = wet.",
        long_name="Normalized difference moisture index (canopy water)",
        formula="(nir-swir1)/(nir+swir1)",
    ),
    IndexDef(
        name="ndwi", title="NDWI", bands=("green", "nir"), func=indices.ndwi,
        # Open water is > 0 (McFeeters 1996); vegetation is strongly negative (nir >> green),
        # soil mildly so. A sequential green-to-blue ramp symmetric around that threshold shows
        # land as pale green and standing water (ponding, flooded patches) as deep blue.
        value_range=(-1.0, 1.0), scale=Scale("GnBu", -0.6, 0.6), code_version="1",
        description="Normalized difference water index (McFeeters) (green - nir) / (green + nir): "
        "open water > 0 (clear water 0.2-0.6), soil ~-0.3-0, vegetation -0.7..-0.3. Maps "
        "standing water and waterlogging, not canopy water (that is NDMI).",
        long_name="Normalized difference water index (open water)",
        formula="(green-nir)/(green+nir)",
    ),
)

INDICES: Mapping[str, IndexDef] = MappingProxyType({d.name: d for d in BUILTINS})
"""The built-in indices by name, in DESIGN.md §3.2 order. Consumers read a `Registry`, which
also holds the custom indices; this is for code that only ever knows the built-ins."""

THERMAL_SCALE = Scale("inferno", 0.0, 60.0)
"""Heatmap scale of `thermal_c`, in °C.

Fixed, not stretched per batch, so the same colour means the same temperature in every flight and
a field can be compared over a season. 0-60 °C covers crop canopy (typically 15-40 °C; water-
stressed canopy runs a few degrees above air temperature) and sun-heated bare soil (up to ~60 °C);
colder or hotter pixels are clipped to the end colours (their values stay in thermal_c.tif).
"""

CHANGE_SCALE = Scale("RdBu", -0.5, 0.5)
"""Heatmap scale of every `change_<index>` raster (DESIGN.md §3.3): this batch's index minus the
previous flight's, whatever the index; larger changes are clipped to the end colours."""

FORMULA_BANDS = OPTICAL_BANDS
"""The bands a custom formula may read: the reflectance bands on the batch grid."""

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_FIELDS = ("name", "formula", "vmin", "vmax", "ramp", "description")


@dataclass(frozen=True)
class Registry(Mapping[str, IndexDef]):
    """The indices of one deployment, by name: the built-ins, then the custom ones in file order.

    Immutable and picklable. `code_version` changes when any index's definition changes.
    """

    definitions: tuple[IndexDef, ...] = BUILTINS
    source: str | None = None  # the indices file the custom entries came from
    _by_name: Mapping[str, IndexDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {d.name: d for d in self.definitions})

    def __getitem__(self, name: str) -> IndexDef:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown index {name!r}; known: {', '.join(self._by_name)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __hash__(self) -> int:
        return hash(self.definitions)

    def available(self, bands: Iterable[str]) -> list[IndexDef]:
        """The indices whose bands are all in `bands`, in registry order."""
        have = set(bands)
        return [d for d in self.definitions if have.issuperset(d.bands)]

    @property
    def custom(self) -> tuple[IndexDef, ...]:
        return tuple(d for d in self.definitions if d.custom)

    @property
    def code_version(self) -> str:
        """One version for all indices: changes when any index's code version does."""
        text = ",".join(f"{d.name}:{d.code_version}" for d in self.definitions)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


BUILTIN_REGISTRY = Registry()
"""The built-in indices only (no indices file)."""


def available_indices(bands: Iterable[str], *,
                      registry: Registry = BUILTIN_REGISTRY) -> list[IndexDef]:
    """The indices of `registry` whose bands are all in `bands`, in registry order."""
    return registry.available(bands)


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


# ---- custom indices (IMAGERY_INDICES_FILE) -----------------------------------------------------


def _refuse(path: Path, where: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{path}, {where}: {problem}", setting=SETTING)


def _read_entries(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _refuse(path, "the file", "does not exist; create it or unset the variable") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(path, "the file", f"cannot be read as UTF-8 text ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:  # YAML (a superset of JSON); safe_load builds plain data, never objects
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise _refuse(path, "the file", f"is not valid {kind} ({exc}); fix its syntax") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise _refuse(path, "the top level", "must be a list of entries {name, formula, vmin, "
                      "vmax, ramp, description}; see docs/indices.example.yaml")
    return data


def _number(path: Path, where: str, entry: Mapping[str, Any], key: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
            or value in (float("inf"), float("-inf")):
        raise _refuse(path, where, f"`{key}` is {value!r}; give a finite number (the value at the "
                      f"{'low' if key == 'vmin' else 'high'} end of the colour ramp)")
    return float(value)


def _custom(path: Path, position: int, entry: Any, taken: Mapping[str, IndexDef]) -> IndexDef:
    where = f"entry {position}"
    if not isinstance(entry, dict):
        raise _refuse(path, where, f"is {type(entry).__name__}, not a mapping; write "
                      "{name, formula, vmin, vmax, ramp, description}")
    name = entry.get("name")
    if isinstance(name, str):
        where = f"entry {position} ({name!r})"
    missing = [k for k in _FIELDS if k not in entry]
    extra = sorted(set(entry) - set(_FIELDS))
    if missing or extra:
        parts = ([f"misses {', '.join(missing)}"] if missing else []) + (
            [f"has unknown field(s) {', '.join(map(str, extra))}"] if extra else [])
        raise _refuse(path, where, f"{' and '.join(parts)}; an entry has exactly the fields "
                      f"{', '.join(_FIELDS)}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _refuse(path, where, f"`name` {name!r} is not allowed; use a lower-case letter "
                      "then up to 31 lower-case letters, digits or '_' (e.g. msavi2)")
    if name in INDICES:
        raise _refuse(path, where, f"`name` {name!r} shadows the built-in index {name}; choose "
                      "another name (the built-in is computed anyway)")
    if name in taken:
        raise _refuse(path, where, f"`name` {name!r} is declared twice; keep one entry")
    if _collides(name):
        raise _refuse(path, where, f"`name` {name!r} collides with an output of the pipeline "
                      "(thermal_c, <index>_heatmap, change_<index>, management_zones, ...); "
                      "choose another name")
    formula_text = entry.get("formula")
    if not isinstance(formula_text, str):
        raise _refuse(path, where, f"`formula` is {formula_text!r}; give it as a string such as "
                      "\"(nir - red) / (nir + red)\"")
    try:
        formula = parse_formula(formula_text, bands=FORMULA_BANDS)
    except FormulaError as exc:
        raise _refuse(path, where, f"`formula` {formula_text!r} {exc}") from None
    vmin, vmax = _number(path, where, entry, "vmin"), _number(path, where, entry, "vmax")
    if not vmin < vmax:
        raise _refuse(path, where, f"vmin ({vmin:g}) must be below vmax ({vmax:g}); swap them "
                      "or widen the range")
    ramp = entry.get("ramp")
    if not isinstance(ramp, str) or not _is_colormap(ramp):
        raise _refuse(path, where, f"`ramp` {ramp!r} is not a matplotlib colormap name; use one "
                      "such as RdYlGn, BrBG, viridis or GnBu (append _r to reverse it)")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise _refuse(path, where, "`description` is empty; say in a sentence what the index "
                      "shows and how to read it (it heads the index's page in the report)")
    definition = {"name": name, "formula": formula.canonical, "vmin": vmin, "vmax": vmax,
                  "ramp": ramp, "description": description.strip()}
    version = "c-" + hashlib.sha256(
        json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
    return IndexDef(
        name=name, title=name.upper(), bands=formula.bands, func=formula, value_range=None,
        scale=Scale(ramp, vmin, vmax), code_version=version, description=description.strip(),
        long_name=description.strip().split(". ")[0].rstrip("."), formula=formula.text,
        custom=True)


def _collides(name: str) -> bool:
    """Whether an index called `name` would publish an object the catalogue reads as another
    output's (e.g. "change_ndvi.tif", "ndvi_heatmap_heatmap.tif" vs "ndvi_heatmap.tif")."""
    if name in outputs.RESERVED_INDEX_NAMES:
        return True
    for entry in outputs.CATALOGUE:
        if entry.per_index and entry.scope == "batch" and entry.producer.startswith("index_"):
            if outputs.lookup(entry.name(name)) != (entry, name):
                return True
    return False


def _is_colormap(name: str) -> bool:
    from matplotlib import colormaps  # deferred: matplotlib is slow to import

    return name in colormaps


def load_custom_indices(path: Path) -> tuple[IndexDef, ...]:
    """The custom indices declared in `path` (YAML or JSON), or `ConfigurationError` naming the
    file, the entry and the fix. Nothing in the file is executed."""
    path = Path(path)
    taken: dict[str, IndexDef] = {}
    for position, entry in enumerate(_read_entries(path), start=1):
        definition = _custom(path, position, entry, taken)
        taken[definition.name] = definition
    return tuple(taken.values())


def build_registry(*, indices_file: Path | None) -> Registry:
    """The registry of a deployment: the built-ins, plus the custom indices of `indices_file`
    (Settings.indices_file, IMAGERY_INDICES_FILE) when set."""
    if indices_file is None:
        return BUILTIN_REGISTRY
    return Registry(definitions=(*BUILTINS, *load_custom_indices(indices_file)),
                    source=str(indices_file))
