"""manifest.json, schema_version 1 (DESIGN.md §2), and batch ids (DESIGN.md §1).

`parse_manifest` turns the uploaded bytes into a `Manifest` or raises `ManifestError` whose message
names the object, the field and the fix. Nothing here touches storage.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.core.errors import InvalidBatchId, ManifestError

CANONICAL_BANDS = ("blue", "green", "red", "red_edge", "nir", "swir1", "swir2", "thermal", "alpha",
                   "other")
OPTICAL_BANDS = ("blue", "green", "red", "red_edge", "nir", "swir1", "swir2")
IGNORED_BANDS = ("alpha", "other")  # an image carrying only these is skipped, never refused
THERMAL_UNITS = ("celsius", "kelvin", "centikelvin")
MANIFEST_NAME = "manifest.json"

BATCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # DESIGN.md §1, and no ".."
_BATCH_ID = re.compile(BATCH_ID_PATTERN)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def batch_id_problem(batch_id: str) -> str | None:
    """Why `batch_id` is not a valid batch id, or None when it is."""
    if not batch_id:
        return "the batch id is empty"
    if len(batch_id) > 100:
        return f"the batch id is {len(batch_id)} characters long; at most 100 are allowed"
    if ".." in batch_id:
        return "the batch id contains '..'"
    if not _BATCH_ID.fullmatch(batch_id):
        return (
            "the batch id must start with a letter or digit and contain only letters, digits, "
            "'.', '_' and '-'"
        )
    return None


def validate_batch_id(batch_id: str) -> str:
    """Return `batch_id` unchanged, or raise `InvalidBatchId` saying what to rename it to."""
    problem = batch_id_problem(batch_id)
    if problem:
        raise InvalidBatchId(
            f"{problem} ({batch_id!r}); rename the upload prefix to match "
            f"{BATCH_ID_PATTERN} without '..'"
        )
    return batch_id


def safe_relative_path(path: str) -> str:
    """A manifest path relative to its batch prefix; refuses absolute paths, URLs and '..'."""
    if not path or path.strip() != path:
        raise ValueError("must be a non-empty relative path without surrounding spaces")
    if "://" in path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"{path!r} is absolute or a URL; give a path relative to the batch prefix")
    parts = path.replace("\\", "/").split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise ValueError(f"{path!r} contains '..', '.' or an empty segment; use a plain relative path")
    if any(ord(c) < 32 for c in path):
        raise ValueError(f"{path!r} contains control characters")
    return path


class ImageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str | None = None
    bands: tuple[str, ...] | None = None
    thermal_unit: Literal["celsius", "kelvin", "centikelvin"] | None = None
    thermal_scale: float | None = None
    thermal_offset: float | None = None

    _check_path = field_validator("path")(lambda cls, v: safe_relative_path(v))

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.fullmatch(v):
            raise ValueError("must be 64 hexadecimal characters (the output of `sha256sum FILE`)")
        return v.lower() if v else v

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("is empty; name each band in order, or omit `bands`")
        unknown = [b for b in v if b not in CANONICAL_BANDS]
        if unknown:
            raise ValueError(
                f"unknown band name(s) {unknown}; use {', '.join(CANONICAL_BANDS)}"
            )
        return v

    @model_validator(mode="after")
    def _thermal(self) -> ImageEntry:
        if (self.thermal_scale is None) != (self.thermal_offset is None):
            raise ValueError("thermal_scale and thermal_offset must be given together")
        if self.thermal_unit is not None and self.thermal_scale is not None:
            raise ValueError("give either thermal_unit or thermal_scale/thermal_offset, not both")
        return self


class Prescription(BaseModel):
    """`prescription`: a rate per management-zone class (DESIGN.md §2, §3.4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product: str = Field(min_length=1, max_length=100)
    unit: str
    rates: dict[str, StrictFloat | StrictInt]

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        from pipeline.core.isoxml import rate_unit

        try:
            rate_unit(v)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return v

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        expected = [str(i) for i in range(1, len(v) + 1)]
        if not v or sorted(v, key=lambda k: (len(k), k)) != expected:
            raise ValueError(f"keys must be the classes \"1\" to \"{max(len(v), 1)}\" (one rate "
                             f"per management-zone class), got {sorted(v)}")
        bad = [k for k, r in v.items() if not math.isfinite(r) or r < 0]
        if bad:
            raise ValueError(f"rates of class(es) {bad} are not finite non-negative numbers")
        return {k: float(v[k]) for k in expected}

    def class_rates(self) -> dict[int, float]:
        """Rates by class number."""
        return {int(k): r for k, r in self.rates.items()}


class Manifest(BaseModel):
    """A batch's manifest.json, schema_version 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    batch_id: str
    captured_at: datetime | None = None
    platform: str | None = None
    sensor: str | None = None
    images: tuple[ImageEntry, ...] = Field(min_length=1)
    reflectance_scale: float = Field(default=1.0, gt=0)
    zones: str | None = None
    site_id: str | None = None
    auto_report: bool = True
    prescription: Prescription | None = None

    _check_zones = field_validator("zones")(
        lambda cls, v: None if v is None else safe_relative_path(v)
    )

    @field_validator("batch_id")
    @classmethod
    def _batch_id(cls, v: str) -> str:
        problem = batch_id_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("site_id")
    @classmethod
    def _site_id(cls, v: str | None) -> str | None:
        problem = None if v is None else batch_id_problem(v)
        if problem:
            raise ValueError(problem.replace("batch id", "site id"))
        return v

    @model_validator(mode="after")
    def _site_needs_time(self) -> Manifest:
        if self.site_id is not None and self.captured_at is None:
            raise ValueError(
                f"site_id {self.site_id!r} is given without captured_at; a site's batches are "
                "ordered by capture time, so add `captured_at` (ISO 8601, e.g. "
                "\"2026-06-14T10:32:00Z\") or drop `site_id`")
        return self

    @property
    def reflectance_scale_explicit(self) -> bool:
        """True when the manifest states `reflectance_scale` (reflectance), False for the default
        (digital numbers of unknown calibration): DESIGN.md §3.3 compares only the former."""
        return "reflectance_scale" in self.model_fields_set

    @property
    def captured_at_utc(self) -> datetime | None:
        """`captured_at` as an aware UTC time (a time without offset is taken as UTC)."""
        if self.captured_at is None:
            return None
        if self.captured_at.tzinfo is None:
            return self.captured_at.replace(tzinfo=UTC)
        return self.captured_at.astimezone(UTC)

    @model_validator(mode="after")
    def _unique_paths(self) -> Manifest:
        seen: set[str] = set()
        for image in self.images:
            if image.path in seen:
                raise ValueError(f"image path {image.path!r} is listed twice")
            seen.add(image.path)
        return self


def _describe(error: dict) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "is not a manifest field (schema_version 1); remove it or check its spelling"
    elif error["type"] == "missing":
        msg = "is required"
    return f"`{loc}` {msg}"


def parse_manifest(data: bytes, *, name: str, batch_id: str) -> Manifest:
    """Parse and validate manifest bytes uploaded at `name` under the prefix `batch_id`."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(
            f"is not valid JSON ({exc}); write UTF-8 JSON as in DESIGN.md §2", file=name
        ) from None
    if not isinstance(raw, dict):
        raise ManifestError("must be a JSON object as in DESIGN.md §2", file=name)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ManifestError(f"{problems} (see DESIGN.md §2)", file=name) from None
    if manifest.batch_id != batch_id:
        raise ManifestError(
            f"`batch_id` is {manifest.batch_id!r} but the manifest lies under the prefix "
            f"{batch_id!r}; they must be equal",
            file=name,
        )
    return manifest
