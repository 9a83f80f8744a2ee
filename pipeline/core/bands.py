"""Band resolution (DESIGN.md §2): the manifest's `bands`, else the GeoTIFF band descriptions.

Descriptions are matched by name, never by a bare band number, because numbers mean different
bands on different sensors: Landsat 8/9 B5 is NIR and B10/B11 thermal, Landsat 4-7 B5 and B7 are
SWIR and B6 thermal, Sentinel-2 B11/B12 are SWIR 1/2 and B8A a narrow NIR. So `SWIR1`, `SWIR 1`,
`SWIR-1`, `swir16` (the STAC common name) name swir1 anywhere, while `B11`/`B12` name swir1/swir2
only inside a Sentinel-2 stack, recognised by a `B8A` band in the same file (no other sensor has a
band 8A); a single-band `B11` file is refused with a request to name it in the manifest.
"""

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
    # SWIR 1 (1.55-1.75 µm) and SWIR 2 (2.08-2.35 µm); a bare "SWIR" is ambiguous and not matched
    "swir1": "swir1", "shortwaveinfrared1": "swir1", "swir16": "swir1", "swir1.6": "swir1",
    "swir2": "swir2", "shortwaveinfrared2": "swir2", "swir22": "swir2", "swir2.2": "swir2",
    "thermal": "thermal", "lwir": "thermal", "tir": "thermal", "thermalir": "thermal",
    "temperature": "thermal",
    "alpha": "alpha", "mask": "alpha",
    "other": "other",
}


# Sentinel-2 L1C/L2A band numbers, used only when the file is recognisably a Sentinel-2 stack.
# B05 (705 nm) is the red-edge band the literature uses for S2 NDRE; B06/B07, B01, B09, B10 and
# the narrow NIR B8A (B08 is the NIR band) are bands this pipeline does not use.
_SENTINEL2: dict[str, str] = {
    "b1": "other", "b2": "blue", "b3": "green", "b4": "red", "b5": "red_edge", "b6": "other",
    "b7": "other", "b8": "nir", "b8a": "other", "b9": "other", "b10": "other", "b11": "swir1",
    "b12": "swir2",
}


def _normalise(description: str) -> str:
    return re.sub(r"[\s_\-]+", "", description.strip().lower())


def _band_number(description: str) -> str:
    """ "B02", "band 2", "B8A" -> "b2", "b2", "b8a" """
    text = _normalise(description).removeprefix("band")
    match = re.fullmatch(r"b?0*(\d{1,2}a?)", text)
    return f"b{match.group(1)}" if match else ""


def band_from_description(description: str | None, *, sentinel2: bool = False) -> str | None:
    """The canonical band a GeoTIFF band description names, or None.

    With `sentinel2` (the file is a Sentinel-2 stack), band numbers such as B11 are matched too.
    """
    if not description:
        return None
    band = _ALIASES.get(_normalise(description))
    if band is None and sentinel2:
        band = _SENTINEL2.get(_band_number(description))
    return band


def is_sentinel2_stack(descriptions: Sequence[str | None]) -> bool:
    """Whether a file's band descriptions are Sentinel-2's numbering: one of them is B8A."""
    return any(d and _band_number(d) == "b8a" for d in descriptions)


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
    sentinel2 = is_sentinel2_stack(descriptions)
    resolved = tuple(band_from_description(d, sentinel2=sentinel2) for d in descriptions)
    missing = [i + 1 for i, band in enumerate(resolved) if band is None]
    if missing:
        seen = ", ".join(repr(d) for d in descriptions)
        raise UnknownBands(
            f"band(s) {missing} have no recognisable description (found: {seen}); add "
            f"\"bands\": [...] for this image in manifest.json, one of {', '.join(CANONICAL_BANDS)} "
            "per band (band numbers such as B5 or B11 mean different bands on Landsat and "
            "Sentinel-2, so they are only matched in a Sentinel-2 stack with a B8A band; name "
            "bands the pipeline does not use `other`)",
            file=file,
        )
    return resolved  # type: ignore[return-value]
