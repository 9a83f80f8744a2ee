"""The map layers of a batch and their fixed colour scales (DESIGN.md §3.1, §6).

A layer is a float COG of the batch (an index, `change_<index>`, `thermal` from thermal_c.tif) or
the class raster `management_zones`. Colours follow §3.1 exactly: value v of a scale
(ramp, vmin, vmax) takes palette entry `p = 1 + min(floor((clip(v) - vmin) / (vmax - vmin) * 255),
254)`, whose colour is the ramp sampled at `(p - 1) / 254`; entry 0 is transparent. So a tile, the
heatmap COG, the PNG preview and the PDF legend agree on what a colour means.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline.core.outputs import batch_key, lookup, object_name
from pipeline.core.registry import INDICES, THERMAL_SCALE, Scale

CHANGE_SCALE = Scale("RdBu", -0.5, 0.5)  # DESIGN.md §3.3
ZONES_LAYER = "management_zones"


@dataclass(frozen=True)
class Layer:
    name: str  # as in the tile URL
    key: str  # the COG's key under the heatmap bucket
    title: str
    unit: str
    scale: Scale | None  # None: a class raster coloured by its own colour table

    def legend(self, n: int = 6) -> list[dict]:
        """`n` values from vmin to vmax, each with the colour a tile gives it."""
        if self.scale is None:
            return []
        values = np.linspace(self.scale.vmin, self.scale.vmax, n)
        colours = palette(self.scale)[palette_index(values, self.scale)]
        return [{"value": float(v), "color": "#%02x%02x%02x" % tuple(int(c) for c in rgba[:3])}
                for v, rgba in zip(values, colours, strict=True)]

    def as_dict(self) -> dict:
        scale = None if self.scale is None else self.scale.as_dict()
        return {"name": self.name, "title": self.title, "unit": self.unit, "scale": scale,
                "legend": self.legend()}


@lru_cache(maxsize=64)
def _palette(ramp: str, vmin: float, vmax: float) -> np.ndarray:
    from matplotlib import colormaps  # deferred: slow to import

    cmap = colormaps[ramp]
    table = np.zeros((256, 4), dtype=np.uint8)
    table[1:] = np.round(cmap((np.arange(1, 256) - 1) / 254.0) * 255.0).astype(np.uint8)
    table[1:, 3] = 255
    table.flags.writeable = False
    return table


def palette(scale: Scale) -> np.ndarray:
    """The (256, 4) RGBA table of `scale` (§3.1): entry 0 transparent, 1-255 the ramp."""
    return _palette(scale.ramp, float(scale.vmin), float(scale.vmax))


def palette_index(values: np.ndarray, scale: Scale) -> np.ndarray:
    """Palette entry of each value: 1-255 where finite, 0 where not."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values)
    t = (np.clip(np.where(valid, values, scale.vmin), scale.vmin, scale.vmax) - scale.vmin) \
        / (scale.vmax - scale.vmin)
    p = 1 + np.minimum(np.floor(t * 255.0), 254).astype(np.intp)
    return np.where(valid, p, 0)


# Map layer <-> the float (or class) COG it is drawn from, by catalogue entry.
_THERMAL, _ZONES, _CHANGE, _INDEX = ("thermal_c.tif", "management_zones.tif", "change_{index}.tif",
                                     "{index}.tif")


def layer_for(name: str, batch_id: str, summary: dict | None) -> Layer | None:
    """The layer `name` of a batch (whether its COG exists is the caller's question)."""
    indices = (summary or {}).get("indices") or {}

    def index_scale(index: str) -> Scale | None:
        given = (indices.get(index) or {}).get("scale")
        if given:
            return Scale(given["ramp"], float(given["vmin"]), float(given["vmax"]))
        return INDICES[index].scale if index in INDICES else None

    def title(index: str) -> str:
        return INDICES[index].title if index in INDICES else index.upper()

    def key(template: str, index: str | None = None) -> str | None:
        try:
            return batch_key(batch_id, object_name(template, index))
        except ValueError:  # not an index name: no such layer
            return None

    if name == "thermal":
        return Layer(name, key(_THERMAL), "Thermal", "°C", THERMAL_SCALE)
    if name == ZONES_LAYER:
        return Layer(name, key(_ZONES), "Management zones", "class", None)
    if name.startswith("change_"):
        base = name.removeprefix("change_")
        if index_scale(base) is None or key(_CHANGE, base) is None:
            return None
        return Layer(name, key(_CHANGE, base), f"Change of {title(base)}", "Δ", CHANGE_SCALE)
    scale = index_scale(name)
    if scale is None or key(_INDEX, name) is None:
        return None
    return Layer(name, key(_INDEX, name), title(name), "", scale)


def layer_name(object_name_: str) -> str | None:
    """The map layer drawn from the batch object `object_name_`, or None when it is none."""
    found = lookup(object_name_)
    if found is None:
        return None
    entry, index = found
    return {_THERMAL: "thermal", _ZONES: ZONES_LAYER}.get(entry.template) or (
        f"change_{index}" if entry.template == _CHANGE else
        index if entry.template == _INDEX else None)


def batch_layers(keys: list[str], batch_id: str, summary: dict | None) -> list[Layer]:
    """The layers whose COGs are among `keys` (the batch's heatmap objects): indices (NDVI
    first), change, thermal, management zones."""
    present = set(keys)
    names = [n for key in keys if (n := layer_name(key[len(batch_id) + 1:])) is not None]
    layers = [layer for n in names if (layer := layer_for(n, batch_id, summary)) is not None
              and layer.key in present]

    def order(layer: Layer) -> tuple:
        group = (3 if layer.name == ZONES_LAYER else 2 if layer.name == "thermal"
                 else 1 if layer.name.startswith("change_") else 0)
        return group, layer.name != "ndvi", layer.name

    return sorted(layers, key=order)
