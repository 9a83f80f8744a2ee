"""Shared bits of the contender scripts: arguments, the band order, and the result line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

BANDS = ("blue", "green", "red", "red_edge", "nir")

# The encodings before DESIGN.md contract version 2 (float DEFLATE-6 + predictor 3, RGBA heatmaps
# DEFLATE + predictor 2): the peer contenders naive and windowed keep them, so the change shows.
_OLD_COMMON = {"BLOCKSIZE": "512", "BIGTIFF": "IF_SAFER"}
OLD_PROFILES = {
    "float32": {"dtype": "float32", "nodata": float("nan"), "creation": {
        "COMPRESS": "DEFLATE", "PREDICTOR": "FLOATING_POINT", "OVERVIEW_RESAMPLING": "AVERAGE",
        "RESAMPLING": "AVERAGE", **_OLD_COMMON}},
    "rgba": {"dtype": "uint8", "nodata": None, "creation": {
        "COMPRESS": "DEFLATE", "PREDICTOR": "STANDARD", "OVERVIEW_RESAMPLING": "NEAREST",
        "RESAMPLING": "NEAREST", **_OLD_COMMON}},
}
REFLECTANCE_SCALE = 1e-4


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


class Phases:
    """Wall time per named phase; `done()` prints the JSON result line."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def done(self, **extra) -> None:
        print(json.dumps({"work_s": time.monotonic() - self.start,
                          "phases": {k: round(v, 3) for k, v in self.phases.items()}, **extra}),
              flush=True)
