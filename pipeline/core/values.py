"""Small value types that travel from the engine into the report model, each defined once.

`Scale` (a heatmap's colour ramp and value range), `Hotspot` (a warm region of the thermal map)
and `Histogram` (a report chart's bars) are made by the core (`ramps`/`registry`, `thermal`,
`analysis`) and are also fields of summary.json and of the PDF's context (`summary`). They are
pydantic dataclasses: positional construction and `dataclasses` behaviour for the core, validation
and the JSON Schema of `schemas/summary.schema.json` for the report model. Their config is the
report model's (`extra="forbid"`, no NaN or infinity). A docstring here is a description in that
schema: change one only together with `scripts/export_schema.py`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

VALUE_CONFIG = ConfigDict(
    extra="forbid", allow_inf_nan=False, json_schema_serialization_defaults_required=True
)


@dataclass(frozen=True, config=VALUE_CONFIG)
class Scale:
    """Colour ramp (matplotlib colormap name) and value range of a heatmap, its PNG and PDF legend."""

    ramp: str
    vmin: float
    vmax: float

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if not self.vmin < self.vmax:
            raise ValueError(
                f"scale {self.ramp!r}: vmin ({self.vmin}) must be below vmax ({self.vmax})")
        return self

    def as_dict(self) -> dict[str, str | float]:
        """The `scale` object of summary.json: {"ramp", "vmin", "vmax"}."""
        return {"ramp": self.ramp, "vmin": float(self.vmin), "vmax": float(self.vmax)}


# A connected warm region (`thermal.find_hotspots`): centroid (x, y) in the grid CRS, area in m²,
# hottest pixel in °C. (No docstring: summary.schema.json gives Hotspot no description.)
@dataclass(frozen=True, config=VALUE_CONFIG)
class Hotspot:
    centroid: Annotated[tuple[float, float], Field(description="[x, y] in the grid's CRS")]
    area_m2: Annotated[float, Field(ge=0)]
    max_c: float

    def as_dict(self) -> dict[str, Any]:
        return {"centroid": list(self.centroid), "area_m2": self.area_m2, "max_c": self.max_c}


@dataclass(frozen=True, config=VALUE_CONFIG)
class Histogram:
    """Counts of valid pixels per bin; len(edges) == len(counts) + 1, edges increasing."""

    edges: list[float]
    counts: list[int]

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError(f"histogram: {len(self.edges)} edges for {len(self.counts)} counts; "
                             "give one edge more than counts")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError("histogram edges must increase strictly")
        return self
