"""Band resolution (DESIGN.md §2): the manifest's `bands`, else the GeoTIFF band descriptions."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.core.errors import UnknownBands
from pipeline.core.manifest import CANONICAL_BANDS

# Descriptions seen in the wild (MicaSense, DJI, Parrot Sequoia, Landsat exports, QGIS, ODM),
# normalised by `_normalise`: lower case, no spaces, '-' or '_'.
_ALIASES: dict[str, str] = {
    "blue": "blue", "b": "blue", "bluec": "blue",
    "green": "green", "g": "green",
    "red": "red", "r": "red",
    "rededge": "red_edge", "re": "red_edge", "redege": "red_edge", "edge": "red_edge",
    "nir": "nir", "nearinfrared": "nir", "nearir": "nir", "infrared": "nir",
    "thermal": "thermal", "lwir": "thermal", "tir": "thermal", "thermalir": "thermal",
    "temperature": "thermal",
    "alpha": "alpha", "mask": "alpha",
    "other": "other",
}


def _normalise(description: str) -> str:
    return re.sub(r"[\s_\-]+", "", description.strip().lower())


def band_from_description(description: str | None) -> str | None:
    """The canonical band a GeoTIFF band description names, or None."""
    if not description:
        return None
    return _ALIASES.get(_normalise(description))


def resolve_bands(
    *,
    manifest_bands: Sequence[str] | None,
    descriptions: Sequence[str | None],
    file: str,
) -> tuple[str, ...]:
    """Canonical band names, one per band of the file, in order.

    `descriptions` has one entry per band of the file (None where the file has none).
    """
    count = len(descriptions)
    if manifest_bands is not None:
        if len(manifest_bands) != count:
            raise UnknownBands(
                f"the manifest names {len(manifest_bands)} band(s) ({', '.join(manifest_bands)}) "
                f"but the file has {count}; list exactly one name per band in `bands`",
                file=file,
            )
        return tuple(manifest_bands)
    resolved = tuple(band_from_description(d) for d in descriptions)
    missing = [i + 1 for i, band in enumerate(resolved) if band is None]
    if missing:
        seen = ", ".join(repr(d) for d in descriptions)
        raise UnknownBands(
            f"band(s) {missing} have no recognisable description (found: {seen}); add "
            f"\"bands\": [...] for this image in manifest.json, one of {', '.join(CANONICAL_BANDS)} "
            "per band",
            file=file,
        )
    return resolved  # type: ignore[return-value]
