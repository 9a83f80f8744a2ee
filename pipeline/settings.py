"""The one settings object: every variable of DESIGN.md §5 and the operational knobs, read once.

`Settings.from_env()` parses and checks the environment in one place; a value that cannot be used
raises `ConfigurationError` naming the variable and the fix, so a misconfigured deployment fails
when the code location loads, not in the middle of a run. Everything else takes a `Settings`
(definitions, resources, the CLI, the sensor, the schedule, the notifier, the HTTP API): nothing
else reads `os.environ` for a setting. `get_settings()` is the process-wide instance.

Secrets (`secret_key`, `smtp_password`, `webhook_secret`) are kept out of `repr`; the Dagster
resources receive them as `EnvVar` references so they never appear in run config.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from pipeline.core.cog import CogEncoding
from pipeline.core.errors import ConfigurationError
from pipeline.core.grid import DEFAULT_MAX_PIXELS

T = TypeVar("T")
COG_COMPRESSIONS = ("zstd", "deflate", "lerc")
AREA_UNITS = ("ha", "acre")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The daemon's sensor loop runs every 5 s at best, so a shorter interval gains nothing. A tick costs
# ~0.5-1 s with 1,000 known batches (bench/RESULTS.md "Operations"); at 30 s the wait for the next
# tick alone was half of an upload's 65 s to its report.
DEFAULT_SENSOR_INTERVAL_S = 5


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Object store (DESIGN.md §1, §5).
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    data_dir: Path = Path("./data")
    imagery_bucket: str = "imagery-uploads"
    heatmap_bucket: str = "analysis-heatmaps"
    report_bucket: str = "reports"
    s3_read_timeout_s: float | None = None  # IMAGERY_S3_READ_TIMEOUT_S; unset: each client's own
    s3_max_attempts: int | None = None  # IMAGERY_S3_MAX_ATTEMPTS
    # Compute.
    dask_scheduler_address: str | None = None
    dask_num_workers: int | None = None  # local threads; unset: one per core
    max_pixels: int = DEFAULT_MAX_PIXELS  # IMAGERY_MAX_PIXELS, the decompression-bomb guard
    min_valid_fraction: float = 0.05  # IMAGERY_MIN_VALID_FRACTION
    # Outputs (§3.1, §3.2, §3.4).
    cog_compression: Literal["zstd", "deflate", "lerc"] = "zstd"
    cog_max_z_error: float | None = None
    indices_file: Path | None = None
    mz_classes: int = 3
    mz_min_ha: float = 0.05
    canopy_ndvi: float = 0.5
    area_unit: Literal["ha", "acre"] = "ha"
    # HTTP API (§6).
    api_tokens_sha256: tuple[str, ...] = field(default=(), repr=False)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_dagster_url: str | None = None  # IMAGERY_API_DAGSTER_URL: webserver for POST /analysis-runs
    basemap_url: str | None = None  # IMAGERY_BASEMAP_URL: the viewer's XYZ basemap; unset: none
    # Sensor and schedule.
    sensor_interval_s: int = DEFAULT_SENSOR_INTERVAL_S
    reprocess_cron: str = "0 2 * * *"
    reprocess_max_runs_per_tick: int = 20
    # Distribution (server configuration only, never the manifest).
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    link_expiry_s: int = 7 * 24 * 3600

    def __post_init__(self) -> None:
        if self.endpoint_url and not (self.access_key and self.secret_key):
            raise ConfigurationError(
                f"is {self.endpoint_url} but MINIO_ACCESS_KEY or MINIO_SECRET_KEY is empty; set both "
                "(or unset MINIO_ENDPOINT_URL for the embedded local store)", setting="MINIO_ENDPOINT_URL")
        if self.cog_compression not in COG_COMPRESSIONS:
            raise ConfigurationError(f"is {self.cog_compression!r}; use one of {', '.join(COG_COMPRESSIONS)}",
                                     setting="IMAGERY_COG_COMPRESSION")
        self.cog_encoding()  # the float COG encoding's own checks (lerc: a finite bound >= 0)
        if self.area_unit not in AREA_UNITS:
            raise ConfigurationError(f"is {self.area_unit!r}; use ha or acre", setting="IMAGERY_AREA_UNIT")
        if not 2 <= self.mz_classes <= 9:
            raise ConfigurationError(f"is {self.mz_classes}; give 2 to 9 classes", setting="IMAGERY_MZ_CLASSES")
        if not -1.0 <= self.canopy_ndvi <= 1.0:
            raise ConfigurationError(f"is {self.canopy_ndvi}; give an NDVI between -1 and 1",
                                     setting="IMAGERY_CANOPY_NDVI")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ConfigurationError(f"is {self.min_valid_fraction}; give a fraction 0-1",
                                     setting="IMAGERY_MIN_VALID_FRACTION")
        for digest in self.api_tokens_sha256:
            if not _SHA256.fullmatch(digest):
                raise ConfigurationError(
                    "holds a value that is not a SHA-256 hex digest (64 lowercase hex characters); store "
                    "digests, never tokens: printf %s \"$TOKEN\" | sha256sum", setting="IMAGERY_API_TOKENS_SHA256")
        if self.webhook_urls and not self.webhook_secret:
            raise ConfigurationError(
                "is set but WEBHOOK_SECRET is not; receivers could not verify the signature. Set "
                "WEBHOOK_SECRET (a long random string)", setting="WEBHOOK_URLS")
        if self.smtp_host and self.smtp_to and not self.smtp_from:
            raise ConfigurationError("is not set; set the sender address to enable e-mail (or unset SMTP_TO)",
                                     setting="SMTP_FROM")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: the process environment); empty values are unset."""
        env = _Env(os.environ if environ is None else environ)
        return cls(
            endpoint_url=env.str("MINIO_ENDPOINT_URL"),
            access_key=env.str("MINIO_ACCESS_KEY"),
            secret_key=env.str("MINIO_SECRET_KEY"),
            region=env.str("MINIO_REGION") or "us-east-1",
            data_dir=Path(env.str("IMAGERY_DATA_DIR") or "./data"),
            imagery_bucket=env.str("IMAGERY_BUCKET") or "imagery-uploads",
            heatmap_bucket=env.str("HEATMAP_BUCKET") or "analysis-heatmaps",
            report_bucket=env.str("REPORT_BUCKET") or "reports",
            s3_read_timeout_s=env.number("IMAGERY_S3_READ_TIMEOUT_S", float, minimum=0.001),
            s3_max_attempts=env.number("IMAGERY_S3_MAX_ATTEMPTS", int, minimum=1),
            dask_scheduler_address=env.str("DASK_SCHEDULER_ADDRESS"),
            dask_num_workers=env.number("DASK_NUM_WORKERS", int, minimum=1),
            max_pixels=env.number("IMAGERY_MAX_PIXELS", int, minimum=1, default=DEFAULT_MAX_PIXELS),
            min_valid_fraction=env.number("IMAGERY_MIN_VALID_FRACTION", float, default=0.05),
            cog_compression=(env.str("IMAGERY_COG_COMPRESSION") or "zstd").lower(),  # type: ignore[arg-type]
            cog_max_z_error=env.number("IMAGERY_COG_MAX_Z_ERROR", float, minimum=0.0),
            indices_file=Path(p) if (p := env.str("IMAGERY_INDICES_FILE")) else None,
            mz_classes=env.number("IMAGERY_MZ_CLASSES", int, default=3),
            mz_min_ha=env.number("IMAGERY_MZ_MIN_HA", float, minimum=0.0, default=0.05),
            canopy_ndvi=env.number("IMAGERY_CANOPY_NDVI", float, default=0.5),
            area_unit=(env.str("IMAGERY_AREA_UNIT") or "ha").lower(),  # type: ignore[arg-type]
            api_tokens_sha256=tuple(d.lower() for d in env.list("IMAGERY_API_TOKENS_SHA256")),
            api_host=env.str("IMAGERY_API_HOST") or "127.0.0.1",
            api_port=env.number("IMAGERY_API_PORT", int, minimum=1, maximum=65535, default=8080),
            api_dagster_url=env.str("IMAGERY_API_DAGSTER_URL"),
            basemap_url=env.str("IMAGERY_BASEMAP_URL"),
            sensor_interval_s=env.number("IMAGERY_SENSOR_INTERVAL_S", int, minimum=1,
                                         default=DEFAULT_SENSOR_INTERVAL_S),
            reprocess_cron=env.str("REPROCESS_CRON") or "0 2 * * *",
            reprocess_max_runs_per_tick=env.number("REPROCESS_MAX_RUNS_PER_TICK", int, minimum=1, default=20),
            webhook_urls=env.list("WEBHOOK_URLS"),
            webhook_secret=env.str("WEBHOOK_SECRET") or "",
            smtp_host=env.str("SMTP_HOST") or "",
            smtp_port=env.number("SMTP_PORT", int, minimum=1, maximum=65535, default=25),
            smtp_from=env.str("SMTP_FROM") or "",
            smtp_to=env.list("SMTP_TO"),
            smtp_user=env.str("SMTP_USER") or "",
            smtp_password=env.str("SMTP_PASSWORD") or "",
            smtp_starttls=env.flag("SMTP_STARTTLS"),
            link_expiry_s=env.number("LINK_EXPIRY_S", int, minimum=1, default=7 * 24 * 3600),
        )

    def cog_encoding(self) -> CogEncoding:
        """The float COG encoding (IMAGERY_COG_COMPRESSION, IMAGERY_COG_MAX_Z_ERROR), checked when
        the settings are built; the assets receive it through the `cog_encoding` resource."""
        return CogEncoding(compression=self.cog_compression, max_z_error=self.cog_max_z_error)

    def replace(self, **changes: object) -> Settings:
        """A copy with `changes` applied (and checked)."""
        return dataclasses.replace(self, **changes)


class _Env:
    """Typed reads of one environment mapping; errors name the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def str(self, name: str) -> str | None:
        return self._environ.get(name, "").strip() or None

    def list(self, name: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in (self.str(name) or "").split(",") if p.strip())

    def flag(self, name: str) -> bool:
        raw = (self.str(name) or "false").lower()
        if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise ConfigurationError(f"is {raw!r}; use true or false", setting=name)
        return raw in {"1", "true", "yes", "on"}

    def number(self, name: str, kind: Callable[[str], T], *, minimum: float | None = None,
               maximum: float | None = None, default: T | None = None) -> T | None:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            word = "an integer" if kind is int else "a number"
            raise ConfigurationError(f"is {raw!r}, not {word}", setting=name) from None
        if isinstance(value, float) and not math.isfinite(value):  # "nan", "inf"
            raise ConfigurationError(f"is {raw!r}; give a finite number", setting=name)
        if minimum is not None and value < minimum:  # type: ignore[operator]
            raise ConfigurationError(f"is {value}; it must be at least {minimum}", setting=name)
        if maximum is not None and value > maximum:  # type: ignore[operator]
            raise ConfigurationError(f"is {value}; it must be at most {maximum}", setting=name)
        return value


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use and then kept."""
    return Settings.from_env()
