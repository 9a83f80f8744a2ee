"""The embedded default store: a local folder with one sub-folder per bucket (IMAGERY_DATA_DIR).

Keys map to paths segment by segment, so files an operator drops into `<root>/<bucket>/` are
objects under the same names. Two escapes make every S3 key representable: an empty segment
('a//b', or a trailing '/') is stored as a folder/file named '%', and a literal '%' as '%25'.
A key with a '.' or '..' segment, a leading '/', or a NUL is refused with ValueError: it would
name a different file, or one outside the bucket.

Writes go to `<root>/.staging/` first and are moved into place with os.replace, so a reader never
sees a half-written object (bucket names cannot start with '.', so staging is never a bucket).
ETags are the MD5 of the content, as S3 gives for single-part uploads, cached per file version.

Presigned URLs: a folder has no HTTP endpoint, so the process that serves one (the HTTP API,
`imagery-pipeline serve`) does. `signed_path` gives `store/<bucket>/<key>?expires=..&signature=..`,
an HMAC-SHA256 with this store's `signing_key` over method, bucket, key, expiry time and (for a
PUT) the exact size; the serving process answers that path after `verify_signed` accepted it,
so a URL cannot be replayed for another key, another prefix, a larger body or after it expired.
`presigned_put`/`presigned_get` return it under `upload_endpoint` when one is configured; the
signing key is random per store instance unless given, so URLs die with the process.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from pipeline.storage.base import (
    AccessDenied,
    BucketNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    common_prefixes,
)

_CHUNK = 1 << 20


def _encode_segment(segment: str) -> str:
    return "%" if segment == "" else segment.replace("%", "%25")


def _decode_segment(name: str) -> str:
    return "" if name == "%" else name.replace("%25", "%")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


STALE_SCRATCH_S = 24 * 3600  # a run's work folder untouched this long belongs to no live run


class LocalObjectStore(ObjectStore):
    def __init__(self, *, root: Path, upload_endpoint: str | None = None,
                 signing_key: bytes | None = None) -> None:
        self.root = Path(root).resolve()
        self.upload_endpoint = upload_endpoint.rstrip("/") if upload_endpoint else None
        self._signing_key = signing_key or secrets.token_bytes(32)
        self._etags: dict[tuple[int, int, int, int], str] = {}
        self._lock = threading.Lock()

    # -- paths -------------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str, *, must_exist: bool = True) -> Path:
        if not bucket or "/" in bucket or "\\" in bucket or bucket.startswith(".") or "\0" in bucket:
            raise ValueError(f"invalid bucket name {bucket!r}: use a plain name like 'imagery-uploads'")
        folder = self.root / bucket
        if must_exist and not folder.is_dir():
            raise BucketNotFound(f"bucket {bucket!r} does not exist in the local store {self.root} "
                                 f"(create the folder {folder} or run ensure_bucket)")
        return folder

    def _path(self, bucket: str, key: str) -> Path:
        if not key or key.startswith("/") or "\0" in key:
            raise ValueError(f"key {key!r} is not a relative object key inside bucket {bucket!r}")
        segments = key.split("/")
        if any(s in (".", "..") for s in segments):
            raise ValueError(f"key {key!r} has a '.' or '..' segment, which would escape or alias "
                             f"a path in bucket {bucket!r}; use plain names")
        return self._bucket_dir(bucket).joinpath(*(_encode_segment(s) for s in segments))

    def _existing_file(self, bucket: str, key: str) -> Path:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in bucket {bucket!r} of the local store {self.root}")
        return path

    # -- metadata ----------------------------------------------------------------------------
    def _info(self, key: str, path: Path, stat: os.stat_result | None = None) -> ObjectInfo:
        st = stat or path.stat()
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            etag = self._etags.get(version)
        if etag is None:
            digest = hashlib.md5(usedforsecurity=False)
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            etag = digest.hexdigest()
            with self._lock:
                self._etags[version] = etag
        return ObjectInfo(key=key, size=st.st_size, etag=etag,
                          last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._info(key, path, st) if path.is_file() else None

    # -- listing -----------------------------------------------------------------------------
    def _entries(self, folder: Path, key_prefix: str) -> list[tuple[bytes, str, os.DirEntry]]:
        """(sort key, key or key prefix, entry) of a folder, in S3 key order."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for entry in entries:
            name = key_prefix + _decode_segment(entry.name)
            if entry.is_dir(follow_symlinks=False):
                name += "/"
            elif not entry.is_file():
                continue
            out.append((_utf8(name), name, entry))
        out.sort(key=lambda item: item[0])
        return out

    def _walk(self, folder: Path, key_prefix: str, prefix: str, after: bytes | None) -> Iterator[ObjectInfo]:
        for sort_key, name, entry in self._entries(folder, key_prefix):
            if entry.is_dir(follow_symlinks=False):
                if not (name.startswith(prefix) or prefix.startswith(name)):
                    continue
                if after is not None and sort_key < after and not after.startswith(sort_key):
                    continue
                yield from self._walk(Path(entry.path), name, prefix, after)
            elif name.startswith(prefix) and (after is None or sort_key > after):
                try:
                    yield self._info(name, Path(entry.path))
                except FileNotFoundError:  # replaced or deleted while listing
                    continue

    def _start(self, bucket: str, prefix: str) -> tuple[Path, str] | None:
        """The deepest folder holding every key that starts with `prefix`, and its key prefix;
        None when no valid key can start with `prefix`."""
        folder = self._bucket_dir(bucket)
        head = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        segments = head.split("/")[:-1]
        if any(s in (".", "..") for s in segments) or prefix.startswith("/"):
            return None
        return folder.joinpath(*(_encode_segment(s) for s in segments)), head

    def list_objects(self, bucket: str, *, prefix: str = "",
                     start_after: str | None = None) -> Iterator[ObjectInfo]:
        start = self._start(bucket, prefix)
        if start is None:
            return iter(())
        after = _utf8(start_after) if start_after else None
        return self._walk(*start, prefix, after)

    def list_prefixes(self, bucket: str, *, prefix: str = "", delimiter: str = "/") -> Iterator[str]:
        if delimiter != "/":
            return common_prefixes((o.key for o in self.list_objects(bucket, prefix=prefix)),
                                   prefix=prefix, delimiter=delimiter)
        start = self._start(bucket, prefix)
        return iter(()) if start is None else self._folder_prefixes(*start, prefix)

    def _folder_prefixes(self, folder: Path, key_prefix: str, prefix: str) -> Iterator[str]:
        for _, name, entry in self._entries(folder, key_prefix):
            if entry.is_dir(follow_symlinks=False) and name.startswith(prefix):
                # S3 has a prefix only while some object lives under it.
                if next(self._walk(Path(entry.path), name, name, None), None) is not None:
                    yield name

    # -- reading -----------------------------------------------------------------------------
    def open_read(self, bucket: str, key: str) -> BinaryIO:
        path = self._existing_file(bucket, key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in bucket {bucket!r} of the local store {self.root}") from None

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        path = Path(path)
        with self.open_read(bucket, key) as src:
            _atomic_write(path, lambda dst: shutil.copyfileobj(src, dst, _CHUNK))

    # -- writing -----------------------------------------------------------------------------
    def _put(self, bucket: str, key: str, fill, *, source: Path | None = None) -> ObjectInfo:
        path = self._path(bucket, key)
        staging = self._staging()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            raise ObjectStoreError(f"cannot store {key!r} in bucket {bucket!r} of the local store: "
                                   f"a parent of it is already an object ({err.filename})") from err
        if path.is_dir():
            raise ObjectStoreError(f"cannot store {key!r} in bucket {bucket!r} of the local store: "
                                   f"other objects live under '{key}/'; the local store cannot "
                                   "hold both")
        try:
            if source is None or not _move_into_place(source, path):
                _atomic_write(path, fill, staging=staging)
        except (IsADirectoryError, NotADirectoryError) as err:  # lost a race with another writer
            raise ObjectStoreError(f"cannot store {key!r} in bucket {bucket!r} of the local store: "
                                   "it is both an object and a prefix of other objects") from err
        return self._info(key, path)

    def put_bytes(self, bucket: str, key: str, data: bytes, *,
                  content_type: str | None = None) -> ObjectInfo:
        return self._put(bucket, key, lambda dst: dst.write(data))

    def upload_file(self, bucket: str, key: str, path: Path, *,
                    content_type: str | None = None, move: bool = False) -> ObjectInfo:
        """A copy into a temp file, fsync'd, renamed into place; with `move`, a rename of `path`
        itself (fsync'd first) where it is on the store's file system -- no copy of the bytes."""
        with Path(path).open("rb") as src:
            info = self._put(bucket, key, lambda dst: shutil.copyfileobj(src, dst, _CHUNK),
                             source=Path(path) if move else None)
        if move:
            Path(path).unlink(missing_ok=True)
        return info

    def _staging(self) -> Path:
        """`<root>/.staging`: temp files of writes and the steps' work folders."""
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging

    def scratch_dir(self) -> Path:
        """`<root>/.staging` (no bucket name starts with a dot): outputs written there are renamed
        into the store, and they are on the store's disk, not on a RAM-backed /tmp. What a killed
        process left there (untouched for STALE_SCRATCH_S) is removed first."""
        staging = self._staging()
        cutoff = time.time() - STALE_SCRATCH_S
        for entry in os.scandir(staging):
            try:
                if _last_touched(entry) >= cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue  # another process removed it first
        return staging

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        top = self._bucket_dir(bucket)
        for parent in path.parents:  # drop folders the object leaves empty, like S3 prefixes
            if parent == top:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def ensure_bucket(self, bucket: str) -> None:
        self._bucket_dir(bucket, must_exist=False).mkdir(parents=True, exist_ok=True)

    # -- addressing --------------------------------------------------------------------------
    def _signature(self, method: str, bucket: str, key: str, expires: int, size: int | None) -> str:
        message = "\n".join((method, bucket, key, str(expires), "" if size is None else str(size)))
        return hmac.new(self._signing_key, _utf8(message), hashlib.sha256).hexdigest()

    def signed_path(self, method: str, bucket: str, key: str, *, expires_s: int,
                    size: int | None = None, now: float | None = None) -> str:
        """`store/<bucket>/<key>?...`: relative URL of a GET or PUT allowed until now + expires_s.

        A PUT's `size` (bytes) is part of the signature; the server refuses any other length.
        """
        if method not in ("GET", "PUT"):
            raise ValueError(f"method must be GET or PUT, got {method!r}")
        self._path(bucket, key)  # refuses keys that would name a file outside the bucket
        expires = int(now if now is not None else time.time()) + int(expires_s)
        query = {"expires": str(expires)}
        if size is not None:
            query["size"] = str(int(size))
        query["signature"] = self._signature(method, bucket, key, expires, size)
        return f"store/{quote(bucket, safe='')}/{quote(key, safe='/')}?{urlencode(query)}"

    def verify_signed(self, method: str, bucket: str, key: str, *, expires: str, signature: str,
                      size: str | None = None, now: float | None = None) -> None:
        """Accept a request made with a `signed_path` URL, or raise AccessDenied saying why."""
        if not _decimal(expires) or (size is not None and not _decimal(size)):
            raise AccessDenied("malformed presigned URL: `expires` and `size` must be integers")
        expected = self._signature(method, bucket, key, int(expires),
                                   int(size) if size is not None else None)
        # Bytes, not str: compare_digest refuses a non-ASCII str (a TypeError, not a refusal).
        if not hmac.compare_digest(expected.encode("ascii"), _utf8(signature)):
            raise AccessDenied(f"the presigned URL's signature does not match {method} "
                               f"{bucket}/{key}: it was issued for another object, size or method")
        if int(expires) < (now if now is not None else time.time()):
            raise AccessDenied(f"the presigned URL for {bucket}/{key} expired; request a new one")

    def _presigned(self, method: str, bucket: str, key: str, expires_s: int) -> str:
        if self.upload_endpoint is None:
            raise NotImplementedError(
                "the local store has no HTTP endpoint for presigned URLs; run `imagery-pipeline "
                f"serve` (it answers them), copy the file into {self.root / bucket} instead, or "
                "configure MINIO_ENDPOINT_URL to use S3/MinIO")
        return f"{self.upload_endpoint}/{self.signed_path(method, bucket, key, expires_s=expires_s)}"

    def presigned_get(self, bucket: str, key: str, *, expires_s: int) -> str:
        if self.upload_endpoint is None:
            return self.uri(bucket, key)  # a file:// URI: readable on this machine only
        return self._presigned("GET", bucket, key, expires_s)

    def presigned_put(self, bucket: str, key: str, *, expires_s: int) -> str:
        return self._presigned("PUT", bucket, key, expires_s)

    def uri(self, bucket: str, key: str) -> str:
        return self._path(bucket, key).as_uri()

    def gdal_path(self, bucket: str, key: str) -> str:
        return str(self._path(bucket, key))

    def gdal_options(self) -> dict[str, str]:
        return {}

    def invalidate(self, bucket: str, key: str) -> None:
        """Nothing to do: GDAL does not cache local files across opens, and writes replace inodes."""


def _last_touched(entry: os.DirEntry) -> float:
    """The newest mtime of a file, or of a folder and the files in it (a run appending to its
    spools keeps its folder fresh)."""
    newest = entry.stat(follow_symlinks=False).st_mtime
    if entry.is_dir(follow_symlinks=False):
        for child in os.scandir(entry.path):
            newest = max(newest, child.stat(follow_symlinks=False).st_mtime)
    return newest


def _move_into_place(source: Path, path: Path) -> bool:
    """Rename `source` onto `path` after an fsync (readable by all, as written objects are);
    False, leaving `source` as it was, when they are on different file systems."""
    st = os.lstat(source)
    if not stat.S_ISREG(st.st_mode) or st.st_dev != os.stat(path.parent).st_dev:
        return False  # a link or another file system: copy
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(source, path)
    except OSError as err:
        if err.errno == errno.EXDEV:
            return False
        raise
    return True


def _atomic_write(path: Path, fill, *, staging: Path | None = None) -> None:
    """Write through `fill(file)` into a temp file, fsync, then os.replace it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=staging or path.parent)
    try:
        with os.fdopen(fd, "wb") as dst:
            fill(dst)
            os.fchmod(dst.fileno(), 0o644)  # mkstemp's 0600 would hide objects from other users
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
