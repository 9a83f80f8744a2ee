"""Batch validation: from a parsed manifest to resolved, georeferenced image sources.

Reads headers only (GDAL range reads for objects in S3); never a whole raster. Every failure is an
`ImageryError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace


from pipeline.core.bands import resolve_bands
from pipeline.core.errors import (
    ChecksumMismatch,
    ManifestError,
    UnreadableImage,
)
from pipeline.core.grid import (
    DEFAULT_MAX_PIXELS,
    Grid,
    batch_grid,
    check_header,
    check_overlap,
    raster_bounds,
)
from pipeline.core.manifest import IGNORED_BANDS, OPTICAL_BANDS, Manifest
from pipeline.core.sources import HeaderInfo, ImageSource, open_header
from pipeline.core.thermal_check import check_thermal_plausible
from pipeline.core.zones import load_zones

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class ImageFacts:
    """What the UI shows about one validated image."""

    name: str
    size_bytes: int
    crs: str
    bounds: tuple[float, float, float, float]
    pixel_size: tuple[float, float]
    width: int
    height: int
    bands: tuple[str, ...]
    dtype: str


@dataclass(frozen=True)
class IgnoredImage:
    """An image of the manifest the analysis skips (summary.json `ignored_images`)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ValidatedBatch:
    """A batch that passed validation; the input of the analysis."""

    batch_id: str
    manifest: Manifest
    sources: tuple[ImageSource, ...]
    facts: tuple[ImageFacts, ...]
    grid: Grid | None  # the optical batch grid; None for a thermal-only batch
    manifest_etag: str = ""
    # (thermal_unit, thermal_scale, thermal_offset) shared by the thermal images, when there are any
    thermal_calibration: tuple[str | None, float | None, float | None] | None = None
    ignored: tuple[IgnoredImage, ...] = ()  # images with only `other`/`alpha` bands

    def with_gdal_options(self, options: Mapping[str, str]) -> ValidatedBatch:
        """The batch with every source read under `options`. The stored batch carries none
        (they hold the store's credentials); each step attaches its own from the resource."""
        return replace(self, sources=tuple(replace(s, gdal_options=dict(options))
                                           for s in self.sources))

    @property
    def optical_sources(self) -> tuple[ImageSource, ...]:
        return tuple(s for s in self.sources if any(b in OPTICAL_BANDS for b in s.bands))

    @property
    def thermal_sources(self) -> tuple[ImageSource, ...]:
        return tuple(s for s in self.sources if "thermal" in s.bands)

    @property
    def bands(self) -> tuple[str, ...]:
        present = {b for s in self.sources for b in s.bands}
        return tuple(b for b in (*OPTICAL_BANDS, "thermal") if b in present)


def sha256_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def check_sha256(*, name: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected.lower() != actual:
        raise ChecksumMismatch(
            f"sha256 is {actual} but the manifest says {expected}; the upload is incomplete or "
            "altered: upload the file again (then the manifest, last)",
            file=name,
        )


def _check_dtypes(name: str, header: HeaderInfo) -> None:
    for dtype in header.dtypes:
        if str(dtype) not in SUPPORTED_DTYPES:
            raise UnreadableImage(
                f"has pixel type {dtype}, which is not supported ({', '.join(SUPPORTED_DTYPES)}); "
                "export the image as integer digital numbers or float reflectance",
                file=name,
            )


def thermal_calibration(manifest: Manifest, names: Iterable[str]
                        ) -> tuple[str | None, float | None, float | None] | None:
    """The one (thermal_unit, thermal_scale, thermal_offset) of the thermal images `names`;
    ManifestError when they differ (one batch's thermal tiles share one calibration)."""
    wanted = set(names)
    settings = {(e.thermal_unit, e.thermal_scale, e.thermal_offset) for e in manifest.images
                if e.path in wanted}
    if len(settings) > 1:
        raise ManifestError(
            "the thermal images give different thermal_unit/thermal_scale/thermal_offset; "
            "one batch's thermal tiles must share one calibration (split them into batches)",
            file="manifest.json")
    return next(iter(settings), None)


def validate_images(
    *,
    manifest: Manifest,
    locate: Callable[[str], str],
    gdal_options: Mapping[str, str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    manifest_etag: str = "",
    sizes: Mapping[str, int] | None = None,
    zones_geojson: bytes | None = None,
) -> ValidatedBatch:
    """Open every image's header, resolve its bands and build the batch grid; refuse (an
    ImageryError naming the file) whatever can be known wrong before any pixel is computed:
    manifest/band mismatches, images without georeferencing, too large or apart from the rest,
    a thermal calibration that gives implausible temperatures, and an
    invalid zones file (`zones_geojson`, the bytes of manifest `zones`). So a refused batch has
    published nothing (DESIGN.md §2).

    `locate(path)` turns a manifest path into what GDAL opens (local path or /vsis3/...).
    """
    sources: list[ImageSource] = []
    headers: list[HeaderInfo] = []
    facts: list[ImageFacts] = []
    ignored: list[IgnoredImage] = []
    for entry in manifest.images:
        path = locate(entry.path)
        header = open_header(ImageSource(name=entry.path, path=path, bands=(),
                                         gdal_options=dict(gdal_options)))
        _check_dtypes(entry.path, header)
        bands = resolve_bands(manifest_bands=entry.bands, descriptions=header.descriptions,
                              file=entry.path)
        thermal_given = entry.thermal_unit is not None or entry.thermal_scale is not None
        if thermal_given and "thermal" not in bands:
            raise ManifestError(
                "gives a thermal unit or scale but has no band named 'thermal'; name the thermal "
                "band in `bands` or drop the thermal fields",
                file=entry.path,
            )
        if bands.count("alpha") > 1:
            raise ManifestError("names more than one alpha band; keep one", file=entry.path)
        if all(b in IGNORED_BANDS for b in bands):  # e.g. a Landsat QA or cirrus band
            ignored.append(IgnoredImage(
                path=entry.path, reason=f"carries no band the pipeline uses (bands: "
                f"{', '.join(bands)}); skipped"))
            continue
        sources.append(ImageSource(name=entry.path, path=path, bands=bands,
                                   gdal_options=dict(gdal_options)))
        headers.append(header)
    if not sources:
        raise ManifestError(
            f"no image carries a band the pipeline uses ({', '.join(i.path for i in ignored)} "
            f"hold only {' / '.join(IGNORED_BANDS)} bands); name at least one band of one image "
            f"{', '.join((*OPTICAL_BANDS, 'thermal'))} in `bands`",
            file="manifest.json")
    # batch_grid refuses images without CRS/geotransform, too large, or not overlapping.
    for source, header in zip(sources, headers, strict=True):
        check_header(header=header, name=source.name, max_pixels=max_pixels)
    check_overlap(names=[s.name for s in sources], headers=headers)
    optical = [s for s in sources if any(b in OPTICAL_BANDS for b in s.bands)]
    thermal = [s for s in sources if "thermal" in s.bands]
    grid = batch_grid(optical, max_pixels=max_pixels) if optical else None
    calibration = thermal_grid = None
    if thermal:
        thermal_grid = batch_grid(thermal, bands=("thermal",), max_pixels=max_pixels)
        calibration = thermal_calibration(manifest, (s.name for s in thermal))
        for source in thermal:  # before anything is computed or published
            check_thermal_plausible(source=source, unit=calibration[0], scale=calibration[1],
                                    offset=calibration[2])
    if zones_geojson is not None:  # refused now if invalid; parsed again by the analyses
        load_zones(zones_geojson, name=manifest.zones or "zones", grid=grid or thermal_grid)
    for source, header in zip(sources, headers, strict=True):
        transform = header.transform
        facts.append(ImageFacts(
            name=source.name,
            size_bytes=int((sizes or {}).get(source.name, 0)),
            crs=header.crs.to_string() if hasattr(header.crs, "to_string") else str(header.crs),
            bounds=raster_bounds(transform=transform, width=header.width, height=header.height),
            pixel_size=(abs(float(transform.a)), abs(float(transform.e))),
            width=int(header.width), height=int(header.height), bands=source.bands,
            dtype=str(header.dtypes[0]),
        ))
    return ValidatedBatch(batch_id=manifest.batch_id, manifest=manifest, sources=tuple(sources),
                          facts=tuple(facts), grid=grid, manifest_etag=manifest_etag,
                          thermal_calibration=calibration, ignored=tuple(ignored))

