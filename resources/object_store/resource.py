"""The Dagster resource that picks the object-store backend from configuration."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from resources.object_store.base import ObjectStore
from resources.object_store.local import LocalObjectStore
from resources.object_store.s3 import S3ObjectStore


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
                    raise ValueError(f"MINIO_ENDPOINT_URL is {self.endpoint_url} but MINIO_ACCESS_KEY "
                                     "or MINIO_SECRET_KEY is empty; set both")
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
                raise ValueError(f"IMAGERY_S3_READ_TIMEOUT_S is {self.read_timeout_s}; give seconds > 0")
            limits.update(read_timeout_s=self.read_timeout_s, gdal_timeout_s=self.read_timeout_s)
        if self.max_attempts is not None:
            if self.max_attempts < 1:
                raise ValueError(f"IMAGERY_S3_MAX_ATTEMPTS is {self.max_attempts}; give 1 or more")
            limits.update(max_attempts=self.max_attempts, gdal_max_retry=self.max_attempts - 1)
        return limits

    @classmethod
    def from_env(cls) -> ObjectStoreResource:
        """Built from the DESIGN.md §5 variables as they are now (for the CLI and the demo)."""
        env = os.environ
        return cls(
            endpoint_url=env.get("MINIO_ENDPOINT_URL") or None,
            access_key=env.get("MINIO_ACCESS_KEY") or None,
            secret_key=env.get("MINIO_SECRET_KEY") or None,
            region=env.get("MINIO_REGION") or "us-east-1",
            data_dir=env.get("IMAGERY_DATA_DIR") or "./data",
            imagery_bucket=env.get("IMAGERY_BUCKET") or "imagery-uploads",
            heatmap_bucket=env.get("HEATMAP_BUCKET") or "analysis-heatmaps",
            report_bucket=env.get("REPORT_BUCKET") or "reports",
            read_timeout_s=float(t) if (t := env.get("IMAGERY_S3_READ_TIMEOUT_S")) else None,
            max_attempts=int(n) if (n := env.get("IMAGERY_S3_MAX_ATTEMPTS")) else None,
        )
