"""One object-store interface with a local-folder and an S3 backend, and its Dagster resource."""

from resources.object_store.base import (
    AccessDenied,
    BucketNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    TransientStoreError,
)
from resources.object_store.local import LocalObjectStore
from resources.object_store.resource import ObjectStoreResource
from resources.object_store.s3 import S3ObjectStore

__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreResource",
    "S3ObjectStore",
    "TransientStoreError",
]
