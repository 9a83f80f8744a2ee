"""Validate a folder of GeoTIFFs locally and upload it as a batch (DESIGN.md §1, §2). Dagster-free.

`check_folder` runs the pipeline's own checks (pipeline.core.validation) on local paths, file by
file and then as a batch, so an uploader sees every problem before anything is sent.
`upload_batch` sends the images, then manifest.json last, through any `ObjectStore`.

Band rules for folders without a manifest.json (also in `imagery-pipeline upload --help`):
1. `--bands` names the bands of every image (one camera, one band order).
2. Otherwise each band's GeoTIFF description is matched (Blue, Green, Red, RedEdge, NIR, LWIR, ...).
3. A 1-band image is thermal when its description says thermal/LWIR/TIR, or when a thermal unit
   is given and its description names no other band. The thermal unit applies to every thermal
   image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.bands import band_from_description, resolve_bands
from pipeline.core.errors import ImageryError, ManifestError, UnknownBands, ZonesError
from pipeline.core.manifest import (
    CANONICAL_BANDS,
    MANIFEST_NAME,
    ImageEntry,
    Manifest,
    parse_manifest,
    validate_batch_id,
)
from pipeline.core.mosaic import ImageSource, open_header
from pipeline.core.validation import check_sha256, validate_images
from pipeline.core.zones import load_zones

IMAGE_SUFFIXES = (".tif", ".tiff")
_CHUNK = 8 * 1024 * 1024


class BatchExists(Exception):
    """A manifest already exists for the batch id and replacing it was not asked for."""


@dataclass(frozen=True)
class ManifestOptions:
    """What the uploader may say on the command line instead of writing a manifest.json."""

    bands: tuple[str, ...] | None = None
    thermal_unit: str | None = None
    zones: Path | None = None
    reflectance_scale: float | None = None
    auto_report: bool = True

    def given(self) -> list[str]:
        names = {"--bands": self.bands, "--thermal-unit": self.thermal_unit, "--zones": self.zones,
                 "--reflectance-scale": self.reflectance_scale}
        given = [name for name, value in names.items() if value is not None]
        return given + ([] if self.auto_report else ["--no-auto-report"])


@dataclass(frozen=True)
class FileCheck:
    """One row of the validation table."""

    name: str
    size_bytes: int
    sha256: str | None = None
    bands: tuple[str, ...] = ()
    dtype: str = ""
    crs: str = ""
    width: int = 0
    height: int = 0
    pixel_size: tuple[float, float] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class FolderCheck:
    """The outcome of `check_folder`: per-file rows, batch-level problems, and the upload plan."""

    batch_id: str
    folder: Path
    rows: tuple[FileCheck, ...]
    errors: tuple[ImageryError, ...]  # every problem found, per file first, then batch-level
    manifest: Manifest | None  # the manifest to upload (sha256 filled in); None when invalid
    files: tuple[tuple[str, Path], ...] = ()  # (name under the batch prefix, local path)
    manifest_source: str = "generated"  # "generated" or the path of the folder's manifest.json
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors and self.manifest is not None


@dataclass(frozen=True)
class UploadResult:
    batch_id: str
    bucket: str
    uploaded: tuple[str, ...]  # keys, in upload order; manifest.json last
    manifest_etag: str
    replaced: bool
    removed: tuple[str, ...] = field(default_factory=tuple)  # stale keys of the replaced batch


def parse_bands_option(*, text: str) -> tuple[str, ...]:
    """`--bands blue,green,red` → canonical names; ValueError naming the wrong ones."""
    bands = tuple(b.strip().lower().replace("-", "_") for b in text.split(",") if b.strip())
    unknown = [b for b in bands if b not in CANONICAL_BANDS]
    if not bands or unknown:
        raise ValueError(f"--bands {text!r}: unknown band name(s) {unknown or '(none given)'}; "
                         f"use a comma-separated list of {', '.join(CANONICAL_BANDS)}")
    return bands


def collect_images(*, folder: Path) -> list[Path]:
    """The GeoTIFFs directly in `folder` (*.tif, *.tiff, any case), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sha256_file(*, path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _bands_for(path: Path, options: ManifestOptions) -> tuple[str, ...]:
    header = open_header(ImageSource(name=path.name, path=str(path), bands=()))
    if options.bands is not None:
        if len(options.bands) != header.count:
            raise UnknownBands(f"has {header.count} band(s) but --bands names {len(options.bands)} "
                               f"({','.join(options.bands)}); --bands applies to every image, so "
                               "upload files of different cameras with a manifest.json that names "
                               "each image's bands", file=path.name)
        return options.bands
    described = band_from_description(header.descriptions[0]) if header.count == 1 else None
    thermal_by_unit = options.thermal_unit is not None and described is None
    if header.count == 1 and (described == "thermal" or thermal_by_unit):
        return ("thermal",)
    try:
        return resolve_bands(manifest_bands=None, descriptions=header.descriptions, file=path.name)
    except UnknownBands as exc:
        seen = ", ".join(repr(d) for d in header.descriptions)
        raise UnknownBands(
            f"has {header.count} band(s) without recognisable descriptions (found: {seen}); pass "
            "--bands with one name per band in file order (e.g. --bands blue,green,red,nir), "
            f"from {', '.join(CANONICAL_BANDS)}, or put a manifest.json naming the bands in the "
            "folder",
            file=path.name,
        ) from exc


Files = list[tuple[str, Path]]  # (name under the batch prefix, local path)


def _generated_manifest(folder: Path, batch_id: str, options: ManifestOptions,
                        errors: list[ImageryError]) -> tuple[Manifest | None, Files]:
    images = collect_images(folder=folder)
    if not images:
        errors.append(ManifestError("holds no GeoTIFF (*.tif, *.tiff); point the command at the "
                                    "folder with the orthomosaics", file=str(folder)))
        return None, []
    entries, files = [], []
    for path in images:
        try:
            bands = _bands_for(path, options)
        except ImageryError as exc:
            errors.append(exc)
            continue
        unit = options.thermal_unit if "thermal" in bands else None
        entries.append(ImageEntry(path=path.name, sha256=sha256_file(path=path), bands=bands,
                                  thermal_unit=unit))
        files.append((path.name, path))
    if options.thermal_unit and entries and not any("thermal" in e.bands for e in entries):
        errors.append(ManifestError(f"--thermal-unit {options.thermal_unit} is given but no image "
                                    "has a thermal band; drop it or name the band with --bands",
                                    file=str(folder)))
    zones = None
    if options.zones is not None:
        zones = options.zones.name
        files.append((zones, options.zones))
    if not entries:
        return None, files
    manifest = Manifest(schema_version=1, batch_id=batch_id, images=tuple(entries),
                        reflectance_scale=options.reflectance_scale or 1.0, zones=zones,
                        auto_report=options.auto_report)
    return manifest, files


def _folder_manifest(path: Path, folder: Path, batch_id: str | None,
                     errors: list[ImageryError]) -> tuple[Manifest | None, Files]:
    raw = path.read_bytes()
    if batch_id is None:
        try:
            batch_id = str(json.loads(raw).get("batch_id", ""))
        except (ValueError, AttributeError):
            batch_id = ""
    manifest = parse_manifest(raw, name=str(path), batch_id=batch_id)
    entries, files = [], []
    for entry in manifest.images:
        local = folder / entry.path
        if not local.is_file():
            errors.append(ManifestError(f"is listed in {path} but missing from the folder; add "
                                        "it or remove it from the manifest", file=entry.path))
            continue
        actual = sha256_file(path=local)
        try:
            check_sha256(name=entry.path, expected=entry.sha256, actual=actual)
        except ImageryError as exc:
            errors.append(exc)
        entries.append(entry.model_copy(update={"sha256": actual}))
        files.append((entry.path, local))
    if manifest.zones is not None:
        files.append((manifest.zones, folder / manifest.zones))
    return manifest.model_copy(update={"images": tuple(entries)}), files


def _row(name: str, path: Path, sha: str | None, facts=None, error: ImageryError | None = None):
    size = path.stat().st_size if path.is_file() else 0
    if facts is None:
        return FileCheck(name=name, size_bytes=size, sha256=sha,
                         error=str(error) if error else None)
    return FileCheck(name=name, size_bytes=size, sha256=sha, bands=facts.bands, dtype=facts.dtype,
                     crs=facts.crs, width=facts.width, height=facts.height,
                     pixel_size=facts.pixel_size, error=str(error) if error else None)


def check_folder(*, folder: Path, batch_id: str | None, options: ManifestOptions) -> FolderCheck:
    """Every check the pipeline runs, on local files, without uploading anything.

    Uses `folder/manifest.json` when present (then no option may be given), else builds the
    manifest from the files and `options`. Raises InvalidBatchId/ManifestError/ValueError for
    unusable input as a whole; per-file problems are collected in the result.
    """
    if batch_id is not None:
        validate_batch_id(batch_id)
    errors: list[ImageryError] = []
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_file():
        if options.given():
            raise ValueError(f"{manifest_path} exists, so {', '.join(options.given())} would be "
                             "ignored; edit the manifest, or remove it and use the options")
        manifest, files = _folder_manifest(manifest_path, folder, batch_id, errors)
        source = str(manifest_path)
    else:
        if batch_id is None:
            raise ValueError("no manifest.json in the folder: give --batch-id")
        manifest, files = _generated_manifest(folder, batch_id, options, errors)
        source = "generated"
    listed = {name for name, _ in files}
    warnings = tuple(f"{p.name} is in the folder but not in manifest.json; it is not uploaded"
                     for p in collect_images(folder=folder)
                     if p.name not in listed and source != "generated")
    bad_files = {e.file for e in errors}
    rows: list[FileCheck] = []
    entries = {e.path: e for e in manifest.images} if manifest else {}
    for name, path in files:
        entry = entries.get(name)
        if entry is None:
            continue
        if name in bad_files:
            error = next(e for e in errors if e.file == name)
            rows.append(_row(name, path, entry.sha256, error=error))
            continue
        single = manifest.model_copy(update={"images": (entry,), "zones": None})
        try:
            facts = validate_images(manifest=single, locate=lambda p: str(folder / p),
                                    gdal_options={}).facts[0]
            rows.append(_row(name, path, entry.sha256, facts))
        except ImageryError as exc:
            errors.append(exc)
            rows.append(_row(name, path, entry.sha256, error=exc))
    for exc in errors:  # files that never reached a row (unreadable headers, unknown bands)
        if exc.file and exc.file not in {r.name for r in rows} and (folder / exc.file).is_file():
            rows.append(_row(exc.file, folder / exc.file, None, error=exc))
    if manifest is not None and not errors:
        errors.extend(_batch_errors(folder, manifest, dict(files)))
    return FolderCheck(batch_id=manifest.batch_id if manifest else batch_id or "", folder=folder,
                       rows=tuple(sorted(rows, key=lambda r: r.name)), errors=tuple(errors),
                       manifest=manifest if not errors else None, files=tuple(files),
                       manifest_source=source, warnings=warnings)


def _batch_errors(folder: Path, manifest: Manifest, files: dict[str, Path]) -> list[ImageryError]:
    """Checks across images (overlap, batch size) and the zones file against the batch grid."""
    try:
        validated = validate_images(manifest=manifest, locate=lambda p: str(folder / p),
                                    gdal_options={})
        if manifest.zones is not None:
            path = files[manifest.zones]
            if not path.is_file():
                raise ZonesError("does not exist; give an existing GeoJSON file", file=str(path))
            if validated.grid is not None:
                load_zones(path.read_bytes(), name=manifest.zones, grid=validated.grid)
    except ImageryError as exc:
        return [exc]
    return []


def manifest_json(manifest: Manifest) -> bytes:
    """The manifest as uploaded: DESIGN.md §2 JSON, fields left out where unset."""
    return json.dumps(manifest.model_dump(mode="json", exclude_none=True), indent=2).encode()


def upload_batch(*, store, bucket: str, check: FolderCheck, replace: bool,
                 on_file: Callable[[str, int], None] | None = None) -> UploadResult:
    """Upload a checked folder: images (and zones) first, then `<batch_id>/manifest.json` last.

    `store` is an ObjectStore. An existing manifest is refused unless `replace`; when replacing,
    the old manifest is removed first (so the batch reads as an upload in progress meanwhile) and
    objects of the old batch that the new one does not hold are removed before the new manifest.
    """
    if not check.ok:
        raise check.errors[0] if check.errors else ManifestError("is invalid", file=check.batch_id)
    batch_id = check.batch_id
    manifest_key = f"{batch_id}/{MANIFEST_NAME}"
    existing = store.head(bucket, manifest_key)
    if existing is not None and not replace:
        raise BatchExists(f"batch {batch_id!r} already exists ({store.uri(bucket, manifest_key)}); "
                          "pass --replace to upload it again, or choose another --batch-id")
    if existing is not None:
        store.delete(bucket, manifest_key)
    keys = [f"{batch_id}/{name}" for name, _ in check.files]
    old = [o.key for o in store.list_objects(bucket, prefix=f"{batch_id}/")] if replace else []
    for key, (name, path) in zip(keys, check.files, strict=True):
        store.upload_file(bucket, key, path)
        if on_file is not None:
            on_file(name, path.stat().st_size)
    removed = tuple(k for k in old if k not in keys and k != manifest_key)
    for key in removed:
        store.delete(bucket, key)
    info = store.put_bytes(bucket, manifest_key, manifest_json(check.manifest),
                           content_type="application/json")
    return UploadResult(batch_id=batch_id, bucket=bucket, uploaded=(*keys, manifest_key),
                        manifest_etag=info.etag, replaced=existing is not None, removed=removed)
