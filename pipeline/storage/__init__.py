"""Object storage without Dagster: one interface, a local-folder and an S3 backend, and the
classification of each backend's failures into the three kinds of `pipeline.core.errors`.

The CLI, the HTTP API, the demo and notebooks use it directly; the Dagster resource
(`resources.object_store.ObjectStoreResource`) only picks a backend from the settings.
"""

from pipeline.storage.base import (
    AccessDenied,
    BucketNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    TransientStoreError,
)
from pipeline.storage.local import LocalObjectStore
from pipeline.storage.s3 import S3ObjectStore

__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "TransientStoreError",
]
