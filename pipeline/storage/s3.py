"""S3 / MinIO backend on a plain boto3 client.

Path-style addressing (MinIO, SeaweedFS and most on-premises stores need it), SigV4, botocore's
"standard" retry mode (bounded attempts with jittered backoff for 5xx, SlowDown, throttling and
connection/read timeouts) and explicit connect/read timeouts. Errors are translated once, in
`_translate`: a missing bucket and refused credentials are not retried and raise BucketNotFound
/ AccessDenied; what is still failing after the retries raises TransientStoreError. Messages
name the endpoint, bucket and key, never the secret key.

dagster-aws's S3Resource is not used: it adds configuration fields, not behaviour, and this
class must work without Dagster (CLI, demo, notebooks).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bce
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from pipeline.storage.base import (
    AccessDenied,
    BucketNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    TransientStoreError,
)
from pipeline.storage.gdal_cache import clear_vsicurl_cache

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum size of every part but the last
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
           "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}
_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_ERRORS = (bce.ConnectionError, bce.HTTPClientError)  # timeouts, refused, reset


class S3ObjectStore(ObjectStore):
    def __init__(self, *, endpoint_url: str, access_key: str, secret_key: str,
                 region: str = "us-east-1", max_attempts: int = 4, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 60.0, multipart_threshold: int = 64 * 1024 * 1024,
                 part_size: int = 16 * 1024 * 1024, gdal_timeout_s: float = 120.0,
                 gdal_max_retry: int = 4) -> None:
        """`max_attempts` / `read_timeout_s` are boto3's (total attempts per request, socket read
        timeout); `gdal_max_retry` / `gdal_timeout_s` are GDAL's for /vsis3/ range reads
        (retries after the first attempt, whole-request timeout), see `gdal_options`."""
        self.endpoint_url = endpoint_url.rstrip("/")
        self.gdal_timeout_s = gdal_timeout_s
        self.gdal_max_retry = gdal_max_retry
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                        multipart_chunksize=max(part_size, MIN_PART_SIZE),
                                        max_concurrency=4)
        self._known_buckets: set[str] = set()
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"mode": "standard", "total_max_attempts": max_attempts},
                          connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                          max_pool_connections=16))

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, region={self.region!r})"

    # -- errors ------------------------------------------------------------------------------
    def _translate(self, err: Exception, op: str, bucket: str, key: str | None = None) -> ObjectStoreError:
        where = f"s3://{bucket}/{key}" if key is not None else f"bucket {bucket!r}"
        at = f"{op} {where} at {self.endpoint_url}"
        cause = err.__cause__ if not isinstance(err, bce.ClientError) else err
        if isinstance(cause, bce.ClientError):
            code = str(cause.response.get("Error", {}).get("Code", ""))
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _MISSING_BUCKET:
                self._known_buckets.discard(bucket)
                return BucketNotFound(f"{at}: bucket {bucket!r} does not exist (create it, or set "
                                      "the bucket name in IMAGERY_BUCKET/HEATMAP_BUCKET/REPORT_BUCKET)")
            if code in _DENIED or status == 403:
                return AccessDenied(f"{at}: access denied ({code or status}); check "
                                    "MINIO_ACCESS_KEY / MINIO_SECRET_KEY and the bucket policy")
            if code in _MISSING_KEY or status == 404:
                return ObjectNotFound(f"{at}: no such object")
            if status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable"}:
                return TransientStoreError(f"{at}: still failing after retries ({code or status})")
            return ObjectStoreError(self._scrub(f"{at}: {code or status} {cause}"))
        if isinstance(cause, _TRANSIENT_ERRORS) or isinstance(err, _TRANSIENT_ERRORS):
            return TransientStoreError(f"{at}: {type(cause or err).__name__} after retries "
                                       "(is the endpoint up and reachable?)")
        return ObjectStoreError(self._scrub(f"{at}: {type(err).__name__}: {err}"))

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret_key, "***") if self._secret_key else text

    def _check_bucket(self, bucket: str) -> None:
        """Tell a missing bucket from a missing key after a 404 on HEAD (HEAD has no error body)."""
        if bucket in self._known_buckets:
            return
        try:
            self.client.head_bucket(Bucket=bucket)
        except bce.ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404 or err.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise BucketNotFound(f"head bucket {bucket!r} at {self.endpoint_url}: bucket "
                                     f"{bucket!r} does not exist (create it, or fix the bucket name)") from None
            raise self._translate(err, "head", bucket) from err
        except Exception as err:
            raise self._translate(err, "head", bucket) from err
        self._known_buckets.add(bucket)

    # -- metadata and listing ----------------------------------------------------------------
    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as err:
            translated = self._translate(err, "head", bucket, key)
            if isinstance(translated, ObjectNotFound):
                self._check_bucket(bucket)
                return None
            raise translated from err
        self._known_buckets.add(bucket)
        return ObjectInfo(key=key, size=int(r["ContentLength"]), etag=r["ETag"].strip('"'),
                          last_modified=r["LastModified"].astimezone(UTC))

    def _pages(self, op: str, bucket: str, **kwargs) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}, **kwargs))
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as err:
                raise self._translate(err, op, bucket) from err
            yield page

    def list_objects(self, bucket: str, *, prefix: str = "",
                     start_after: str | None = None) -> Iterator[ObjectInfo]:
        extra = {"StartAfter": start_after} if start_after else {}
        for page in self._pages("list", bucket, Prefix=prefix, **extra):
            for o in page.get("Contents", []):
                yield ObjectInfo(key=o["Key"], size=int(o["Size"]), etag=o["ETag"].strip('"'),
                                 last_modified=o["LastModified"].astimezone(UTC))

    def list_prefixes(self, bucket: str, *, prefix: str = "", delimiter: str = "/") -> Iterator[str]:
        for page in self._pages("list prefixes of", bucket, Prefix=prefix, Delimiter=delimiter):
            for p in page.get("CommonPrefixes", []):
                yield p["Prefix"]

    # -- reading -----------------------------------------------------------------------------
    def open_read(self, bucket: str, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as err:
            raise self._translate(err, "get", bucket, key) from err

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            self.client.download_file(bucket, key, tmp, Config=self._transfer)
            os.replace(tmp, path)
        except Exception as err:
            Path(tmp).unlink(missing_ok=True)
            raise self._translate(err, "download", bucket, key) from err

    # -- writing -----------------------------------------------------------------------------
    def put_bytes(self, bucket: str, key: str, data: bytes, *,
                  content_type: str | None = None) -> ObjectInfo:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentMD5=md5, **extra)
        except Exception as err:
            raise self._translate(err, "put", bucket, key) from err
        return self._head_after_write(bucket, key)

    def upload_file(self, bucket: str, key: str, path: Path, *,
                    content_type: str | None = None, move: bool = False) -> ObjectInfo:
        """Single PUT below the multipart threshold, parallel parts above it; every request
        carries a CRC32 checksum (botocore's flexible checksums) that the server verifies.
        With `move` the file is removed once the object is stored."""
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=self._transfer)
        except Exception as err:
            raise self._translate(err, "upload", bucket, key) from err
        info = self._head_after_write(bucket, key)
        if move:
            Path(path).unlink(missing_ok=True)
        return info

    def _head_after_write(self, bucket: str, key: str) -> ObjectInfo:
        info = self.head(bucket, key)
        if info is None:
            raise ObjectStoreError(f"put s3://{bucket}/{key} at {self.endpoint_url}: the object "
                                   "is not visible right after a successful write")
        return info

    def delete(self, bucket: str, key: str) -> None:
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as err:
            translated = self._translate(err, "delete", bucket, key)
            if not isinstance(translated, ObjectNotFound):
                raise translated from err
        self.invalidate(bucket, key)

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self._check_bucket(bucket)
            return
        except BucketNotFound:
            pass
        extra = ({} if self.region == "us-east-1"
                 else {"CreateBucketConfiguration": {"LocationConstraint": self.region}})
        try:
            self.client.create_bucket(Bucket=bucket, **extra)
        except bce.ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                                 "BucketAlreadyExists"):
                raise self._translate(err, "create", bucket) from err
        except Exception as err:
            raise self._translate(err, "create", bucket) from err
        self._known_buckets.add(bucket)

    # -- addressing --------------------------------------------------------------------------
    def _presign(self, method: str, bucket: str, key: str, expires_s: int) -> str:
        return self.client.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key},
                                                  ExpiresIn=int(expires_s))

    def presigned_get(self, bucket: str, key: str, *, expires_s: int) -> str:
        return self._presign("get_object", bucket, key, expires_s)

    def presigned_put(self, bucket: str, key: str, *, expires_s: int) -> str:
        return self._presign("put_object", bucket, key, expires_s)

    def uri(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    def gdal_path(self, bucket: str, key: str) -> str:
        return f"/vsis3/{bucket}/{key}"

    def gdal_options(self) -> dict[str, str]:
        """Keys for `rasterio.Env(**options)`. rasterio refuses GDAL's AWS_ACCESS_KEY_ID /
        AWS_SECRET_ACCESS_KEY config options and takes credentials only as its session keywords
        (lower case; it warns that the keywords are deprecated in favour of an AWSSession object,
        which a dict[str, str] cannot carry); the rest are GDAL config options."""
        url = urlsplit(self.endpoint_url)
        return {
            "aws_access_key_id": self._access_key,
            "aws_secret_access_key": self._secret_key,
            "region_name": self.region,
            "AWS_S3_ENDPOINT": url.netloc + url.path,
            "AWS_HTTPS": "YES" if url.scheme == "https" else "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_REGION": self.region,
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no LIST per open
            "GDAL_HTTP_MAX_RETRY": str(self.gdal_max_retry),
            "GDAL_HTTP_RETRY_DELAY": "1",
            "GDAL_HTTP_CONNECTTIMEOUT": "10",
            "GDAL_HTTP_TIMEOUT": str(max(1, round(self.gdal_timeout_s))),  # whole seconds
            "CPL_VSIL_CURL_CACHE_SIZE": str(64 * 1024 * 1024),  # cap of the per-process range cache
            "GDAL_HTTP_MULTIRANGE": "YES",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        }

    def invalidate(self, bucket: str, key: str) -> None:
        import rasterio

        # Within the endpoint's configuration, so GDAL maps the /vsis3/ name to the cached URL
        # (without it GDAL logs "URL rejected" and clears nothing).
        with rasterio.Env(**self.gdal_options()):
            clear_vsicurl_cache(self.gdal_path(bucket, key))
