"""Independent numpy references: whole arrays in memory, no code shared with pipeline.core."""

from __future__ import annotations

import numpy as np

FORMULAS = {
    "ndvi": lambda b: (b["nir"] - b["red"]) / (b["nir"] + b["red"]),
    "ndre": lambda b: (b["nir"] - b["red_edge"]) / (b["nir"] + b["red_edge"]),
    "gndvi": lambda b: (b["nir"] - b["green"]) / (b["nir"] + b["green"]),
    "savi": lambda b: 1.5 * (b["nir"] - b["red"]) / (b["nir"] + b["red"] + 0.5),
    "evi": lambda b: 2.5 * (b["nir"] - b["red"]) / (b["nir"] + 6 * b["red"] - 7.5 * b["blue"] + 1),
    "vari": lambda b: (b["green"] - b["red"]) / (b["green"] + b["red"] - b["blue"]),
    "ndmi": lambda b: (b["nir"] - b["swir1"]) / (b["nir"] + b["swir1"]),
    "ndwi": lambda b: (b["green"] - b["nir"]) / (b["green"] + b["nir"]),
}
NDVI_CLASSES = [("bare", -1.0, 0.2), ("stressed", 0.2, 0.4), ("moderate", 0.4, 0.6),
                ("healthy", 0.6, 1.0)]


def index_values(name: str, bands: dict[str, np.ndarray]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        values = FORMULAS[name]({k: v.astype(np.float64) for k, v in bands.items()})
    values[~np.isfinite(values)] = np.nan
    return values


def stats(values: np.ndarray, *, pixel_area_m2: float) -> dict:
    valid = values[~np.isnan(values)]
    out = {
        "mean": float(valid.mean()), "std": float(valid.std()),
        "min": float(valid.min()), "max": float(valid.max()),
        "p10": float(np.percentile(valid, 10)), "p50": float(np.percentile(valid, 50)),
        "p90": float(np.percentile(valid, 90)),
        "valid_fraction": valid.size / values.size, "valid_area_m2": valid.size * pixel_area_m2,
    }
    return out


def class_fractions(values: np.ndarray) -> dict[str, float]:
    valid = values[~np.isnan(values)]
    out = {}
    for name, lo, hi in NDVI_CLASSES:
        inside = (valid >= lo) & ((valid < hi) if hi < 1.0 else (valid <= hi))
        out[name] = float(inside.sum() / valid.size)
    return out


def assert_close_to_design_accuracy(got: dict, want: dict) -> None:
    """DESIGN.md §3: mean/std/min/max 1e-4 relative, percentiles 0.005, fractions/areas 0.1 %."""
    for key in ("mean", "std", "min", "max"):
        assert abs(got[key] - want[key]) <= 1e-4 * max(abs(want[key]), 1e-9) + 1e-7, (key, got[key], want[key])
    for key in ("p10", "p50", "p90"):
        assert abs(got[key] - want[key]) <= 0.005, (key, got[key], want[key])
    for key in ("valid_fraction", "valid_area_m2"):
        assert abs(got[key] - want[key]) <= 1e-3 * max(abs(want[key]), 1e-9), (key, got[key], want[key])
