"""The Dagster resource that picks the object-store backend from configuration.

A thin wrapper: the backends and the classification of their errors live in `pipeline.storage`
(Dagster-free); this only chooses one from its fields, which come from `Settings`.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pipeline.core.errors import ConfigurationError
from pipeline.settings import Settings
from pipeline.storage import LocalObjectStore, ObjectStore, S3ObjectStore


class ObjectStoreResource(dg.ConfigurableResource):
    """S3/MinIO when `endpoint_url` is set (MINIO_ENDPOINT_URL), else a local folder (IMAGERY_DATA_DIR)."""

    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    data_dir: str = "./data"
    imagery_bucket: str = "imagery-uploads"
    heatmap_bucket: str = "analysis-heatmaps"
    report_bucket: str = "reports"
    # One S3 request's limits, for boto3 and GDAL's /vsis3/ reads alike (IMAGERY_S3_READ_TIMEOUT_S,
    # IMAGERY_S3_MAX_ATTEMPTS); unset keeps each client's default (boto3 60 s, 4 attempts; GDAL
    # 120 s, 5 attempts).
    read_timeout_s: float | None = None
    max_attempts: int | None = None

    _store: ObjectStore | None = PrivateAttr(default=None)

    def store(self) -> ObjectStore:
        """The backend, built once per resource instance."""
        if self._store is None:
            if self.endpoint_url:
                if not self.access_key or not self.secret_key:
                    raise ConfigurationError(f"is {self.endpoint_url} but MINIO_ACCESS_KEY or "
                                             "MINIO_SECRET_KEY is empty; set both",
                                             setting="MINIO_ENDPOINT_URL")
                self._store = S3ObjectStore(endpoint_url=self.endpoint_url, access_key=self.access_key,
                                            secret_key=self.secret_key, region=self.region,
                                            **self._request_limits())
            else:
                # The embedded default is self-contained: its bucket folders are made on first use
                # (on S3, buckets are provisioned by the operator: createbuckets in docker-compose).
                self._store = LocalObjectStore(root=Path(self.data_dir))
                for bucket in (self.imagery_bucket, self.heatmap_bucket, self.report_bucket):
                    self._store.ensure_bucket(bucket)
        return self._store

    def _request_limits(self) -> dict[str, float | int]:
        limits: dict[str, float | int] = {}
        if self.read_timeout_s is not None:
            if self.read_timeout_s <= 0:
                raise ConfigurationError(f"is {self.read_timeout_s}; give seconds > 0",
                                         setting="IMAGERY_S3_READ_TIMEOUT_S")
            limits.update(read_timeout_s=self.read_timeout_s, gdal_timeout_s=self.read_timeout_s)
        if self.max_attempts is not None:
            if self.max_attempts < 1:
                raise ConfigurationError(f"is {self.max_attempts}; give 1 or more",
                                         setting="IMAGERY_S3_MAX_ATTEMPTS")
            limits.update(max_attempts=self.max_attempts, gdal_max_retry=self.max_attempts - 1)
        return limits

    @classmethod
    def from_settings(cls, settings: Settings, *, secrets_as_env_vars: bool = False) -> ObjectStoreResource:
        """The resource for `settings`. With `secrets_as_env_vars` the credentials are `EnvVar`
        references (resolved in the run, never stored in run config or shown in the UI)."""
        s3 = settings.endpoint_url is not None
        if s3 and secrets_as_env_vars:
            access_key, secret_key = dg.EnvVar("MINIO_ACCESS_KEY"), dg.EnvVar("MINIO_SECRET_KEY")
        else:
            access_key, secret_key = settings.access_key, settings.secret_key
        return cls(
            endpoint_url=settings.endpoint_url,
            access_key=access_key if s3 else None,
            secret_key=secret_key if s3 else None,
            region=settings.region,
            data_dir=str(settings.data_dir),
            imagery_bucket=settings.imagery_bucket,
            heatmap_bucket=settings.heatmap_bucket,
            report_bucket=settings.report_bucket,
            read_timeout_s=settings.s3_read_timeout_s,
            max_attempts=settings.s3_max_attempts,
        )

    @classmethod
    def from_env(cls) -> ObjectStoreResource:
        """Built from the environment as it is now (for the CLI and the demo)."""
        return cls.from_settings(Settings.from_env())
