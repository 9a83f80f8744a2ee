"""The object-store interface: one ABC, a small value type and the errors every backend raises.

Dagster-free, so the CLI, the demo and notebooks use it directly. Keys are S3 keys (UTF-8, '/'
separated, '//' and a trailing '/' allowed); listings are in S3 order (UTF-8 byte order of keys).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from pipeline.core.errors import ConfigurationError, PipelineError, TransientError


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # without surrounding quotes
    last_modified: datetime  # tz-aware UTC


class ObjectStoreError(PipelineError):
    """A storage operation failed. Messages name the endpoint and bucket, never a secret."""


class BucketNotFound(ObjectStoreError, ConfigurationError):
    """The bucket does not exist. Not retried: create it (or fix the bucket name) and rerun."""


class ObjectNotFound(ObjectStoreError):
    """The key does not exist in an existing bucket."""


class AccessDenied(ObjectStoreError, ConfigurationError):
    """Credentials are wrong or lack permission. Not retried: fix MINIO_ACCESS_KEY/SECRET_KEY."""


class TransientStoreError(ObjectStoreError, TransientError):
    """The store kept failing (5xx, SlowDown, timeouts) after the bounded retries."""


class ObjectStore(ABC):
    """A bucket/key object store. Implementations: LocalObjectStore, S3ObjectStore."""

    @abstractmethod
    def list_objects(self, bucket: str, *, prefix: str = "",
                     start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` and sorts after `start_after`, in key order, lazily."""

    @abstractmethod
    def list_prefixes(self, bucket: str, *, prefix: str = "", delimiter: str = "/") -> Iterator[str]:
        """The distinct common prefixes (S3 CommonPrefixes) below `prefix`, e.g. "batch-1/"."""

    @abstractmethod
    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's metadata, or None when the key is absent (BucketNotFound if the bucket is)."""

    def exists(self, bucket: str, key: str) -> bool:
        return self.head(bucket, key) is not None

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self.open_read(bucket, key) as stream:
            return stream.read()

    @abstractmethod
    def open_read(self, bucket: str, key: str) -> BinaryIO:
        """A streaming reader; close it (or use it as a context manager)."""

    @abstractmethod
    def download_file(self, bucket: str, key: str, path: Path) -> None:
        """Stream the object to `path`; `path` holds either the old file or the whole new one."""

    @abstractmethod
    def put_bytes(self, bucket: str, key: str, data: bytes, *,
                  content_type: str | None = None) -> ObjectInfo: ...

    @abstractmethod
    def upload_file(self, bucket: str, key: str, path: Path, *,
                    content_type: str | None = None, move: bool = False) -> ObjectInfo:
        """Store the file at `path` as the object. With `move` the caller gives the file up: it
        is gone afterwards (the local store renames it into place when it can, with no copy)."""

    def scratch_dir(self) -> Path | None:
        """A folder on the store's own file system for a run's temporary files, which
        `upload_file(move=True)` can then rename into place; None: the system's temp folder."""
        return None

    @abstractmethod
    def presigned_get(self, bucket: str, key: str, *, expires_s: int) -> str: ...

    @abstractmethod
    def presigned_put(self, bucket: str, key: str, *, expires_s: int) -> str: ...

    @abstractmethod
    def uri(self, bucket: str, key: str) -> str: ...

    @abstractmethod
    def gdal_path(self, bucket: str, key: str) -> str: ...

    @abstractmethod
    def gdal_options(self) -> dict[str, str]:
        """GDAL config options for `rasterio.Env(**options)` to open `gdal_path(...)`."""

    @abstractmethod
    def ensure_bucket(self, bucket: str) -> None: ...

    @abstractmethod
    def invalidate(self, bucket: str, key: str) -> None:
        """Forget anything GDAL cached about the object in this process (call after overwriting)."""

    @abstractmethod
    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; absent keys are not an error."""


def common_prefixes(keys: Iterator[str], *, prefix: str, delimiter: str) -> Iterator[str]:
    """S3 CommonPrefixes of sorted `keys` (all starting with `prefix`), each once, in order."""
    last = None
    for key in keys:
        rest = key[len(prefix):]
        cut = rest.find(delimiter)
        if cut < 0:
            continue
        common = prefix + rest[: cut + len(delimiter)]
        if common != last:
            last = common
            yield common
