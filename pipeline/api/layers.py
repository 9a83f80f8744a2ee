"""The map layers of a batch and their fixed colour scales (DESIGN.md §3.1, §6).

A layer is a float COG of the batch (an index, `change_<index>`, `thermal` from thermal_c.tif) or
the class raster `management_zones`. Colours follow §3.1 through the core's one kernel and table
(`pipeline.core.ramps.palette_index`, `colour_table`), the very ones the heatmap COG, the PNG
preview and the PDF legend use, so all of them agree on what a colour means.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.outputs import batch_key, lookup, object_name
from pipeline.core.ramps import legend_stops
from pipeline.core.registry import CHANGE_SCALE, INDICES, THERMAL_SCALE, Scale

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
        return [{"value": value, "color": "#%02x%02x%02x" % rgb}
                for value, rgb in legend_stops(self.scale, n)]

    def as_dict(self) -> dict:
        scale = None if self.scale is None else self.scale.as_dict()
        return {"name": self.name, "title": self.title, "unit": self.unit, "scale": scale,
                "legend": self.legend()}


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
