"""One contract for every ObjectStore backend (Dagster's storage-test pattern).

`ObjectStoreContract` holds the tests; each subclass supplies `store` (and a `small_parts_store`
that forces multipart uploads) for one backend: a local folder, S3 on a real SeaweedFS server,
and S3 on moto (used for what moto is good at: fault injection through tests/servers.FaultProxy).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from affine import Affine

from pipeline.core.errors import ConfigurationError, TransientError
from pipeline.storage import (
    AccessDenied,
    BucketNotFound,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStoreError,
    S3ObjectStore,
    TransientStoreError,
)
from resources.object_store import ObjectStoreResource
from tests.servers import fault_proxy, unique_bucket

MiB = 1024 * 1024
ODD_KEYS = ["with space/a b.tif", "plus/a+b.tif", "unicode/épreuve-東京.tif", "double//slash.tif",
            "percent/100%.tif"]


def tiff_bytes(value: float, *, size: int = 64) -> bytes:
    """A tiled float32 GeoTIFF filled with `value`; the same size for every value."""
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=size, height=size, count=1, dtype="float32",
                      crs="EPSG:32633", transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000),
                      tiled=True, blockxsize=16, blockysize=16) as ds:
            ds.write(np.full((1, size, size), value, dtype="float32"))
        return mem.read()


def read_through_gdal(store, bucket: str, key: str) -> np.ndarray:
    with rasterio.Env(**store.gdal_options()), rasterio.open(store.gdal_path(bucket, key)) as ds:
        assert ds.crs.to_epsg() == 32633
        return ds.read(1, window=((8, 24), (8, 24)))  # a range read on remote backends


class ObjectStoreContract:
    # SeaweedFS stores objects in a directory tree (its filer), which shows in three places:
    preserves_double_slash = True  # it folds 'a//b' into 'a/b'
    utf8_key_order = True  # it lists 'a/b' before 'a-c' (tree order, not S3's byte order)
    drops_empty_prefixes = True  # a prefix whose last object was deleted stays listed
    paginate_1500 = True

    @pytest.fixture
    def store(self):
        raise NotImplementedError

    @pytest.fixture
    def small_parts_store(self, store):
        return store

    @pytest.fixture
    def bucket(self, store) -> str:
        name = unique_bucket("contract")
        store.ensure_bucket(name)
        return name

    def seed(self, store, bucket: str, keys: list[str]) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: store.put_bytes(bucket, k, k.encode()), keys))

    # -- basic objects -----------------------------------------------------------------------
    def test_put_get_head_exists__round_trip(self, store, bucket):
        info = store.put_bytes(bucket, "b1/manifest.json", b'{"a": 1}', content_type="application/json")
        assert info.key == "b1/manifest.json" and info.size == 8
        assert info.etag == hashlib.md5(b'{"a": 1}').hexdigest()  # single-part ETag is the MD5, unquoted
        assert info.last_modified.utcoffset().total_seconds() == 0
        assert store.head(bucket, "b1/manifest.json") == info
        assert store.exists(bucket, "b1/manifest.json")
        assert store.get_bytes(bucket, "b1/manifest.json") == b'{"a": 1}'

    def test_head__absent_key_is_none_and_get_raises(self, store, bucket):
        assert store.head(bucket, "nope/x.tif") is None
        assert not store.exists(bucket, "nope/x.tif")
        with pytest.raises(ObjectNotFound, match="nope/x.tif"):
            store.get_bytes(bucket, "nope/x.tif")

    def test_missing_bucket__raises_bucket_not_found(self, store):
        missing = unique_bucket("missing")
        for call in (lambda: store.head(missing, "k"), lambda: store.get_bytes(missing, "k"),
                     lambda: list(store.list_objects(missing)),
                     lambda: list(store.list_prefixes(missing)),
                     lambda: store.put_bytes(missing, "k", b"x")):
            with pytest.raises(BucketNotFound, match=missing):
                call()

    def test_put__overwrite_changes_etag_and_content(self, store, bucket):
        first = store.put_bytes(bucket, "k", b"one")
        second = store.put_bytes(bucket, "k", b"two")
        assert first.etag != second.etag
        assert store.head(bucket, "k").etag == second.etag
        assert store.get_bytes(bucket, "k") == b"two"

    def test_delete__removes_and_is_idempotent(self, store, bucket):
        store.put_bytes(bucket, "tmp/a", b"x")
        store.delete(bucket, "tmp/a")
        store.delete(bucket, "tmp/a")
        assert store.head(bucket, "tmp/a") is None
        assert list(store.list_objects(bucket)) == []
        if self.drops_empty_prefixes:
            assert list(store.list_prefixes(bucket)) == []

    # -- listing -----------------------------------------------------------------------------
    def test_list_objects__paginates_past_1000_in_key_order(self, store, bucket):
        if not self.paginate_1500:
            pytest.skip("pagination is proven on the local and SeaweedFS backends")
        keys = [f"batch-{i % 3}/tile-{i:05d}.tif" for i in range(1500)]
        self.seed(store, bucket, keys)
        listed = [o.key for o in store.list_objects(bucket)]
        assert listed == sorted(keys) and len(listed) == 1500
        assert [o.key for o in store.list_objects(bucket, prefix="batch-1/")] == sorted(
            k for k in keys if k.startswith("batch-1/"))
        after = sorted(keys)[1200]
        assert [o.key for o in store.list_objects(bucket, start_after=after)] == sorted(keys)[1201:]

    def test_list_objects__is_lazy(self, store, bucket):
        self.seed(store, bucket, [f"k{i}" for i in range(5)])
        it = store.list_objects(bucket)
        assert next(it).key == "k0"  # a generator: nothing forces the whole listing

    def test_list_objects__utf8_byte_order_and_start_after(self, store, bucket):
        keys = ["a-c", "a/b", "a0", "Z", "é", "a/c/d"]
        self.seed(store, bucket, keys)
        if not self.utf8_key_order:
            assert sorted(o.key for o in store.list_objects(bucket)) == sorted(keys)
            pytest.skip("this server lists in directory-tree order, not UTF-8 byte order")
        expected = sorted(keys, key=lambda k: k.encode())
        assert [o.key for o in store.list_objects(bucket)] == expected
        assert [o.key for o in store.list_objects(bucket, start_after="a/")] == expected[2:]
        assert [o.key for o in store.list_objects(bucket, prefix="a", start_after="a/b")] == ["a/c/d", "a0"]

    def test_list_prefixes__common_prefixes_with_delimiter(self, store, bucket):
        self.seed(store, bucket, ["b1/x.tif", "b1/sub/y.tif", "b2/manifest.json", "top.txt", "c-3/z"])
        assert list(store.list_prefixes(bucket)) == ["b1/", "b2/", "c-3/"]
        assert list(store.list_prefixes(bucket, prefix="b1/")) == ["b1/sub/"]
        assert list(store.list_prefixes(bucket, prefix="b")) == ["b1/", "b2/"]
        assert list(store.list_prefixes(bucket, delimiter="-")) == ["c-"]

    def test_keys__spaces_plus_unicode_double_slash_round_trip(self, store, bucket):
        for key in ODD_KEYS:
            store.put_bytes(bucket, key, key.encode())
        for key in ODD_KEYS:
            assert store.get_bytes(bucket, key) == key.encode(), key
            assert store.head(bucket, key).size == len(key.encode()), key
        listed = {o.key for o in store.list_objects(bucket)}
        expected = set(ODD_KEYS) if self.preserves_double_slash else {
            k.replace("//", "/") for k in ODD_KEYS}
        assert expected <= listed
        assert {"with space/", "plus/", "unicode/"} <= set(store.list_prefixes(bucket))

    # -- files -------------------------------------------------------------------------------
    def test_upload_file__multipart_round_trip(self, small_parts_store, bucket, tmp_path):
        data = os.urandom(11 * MiB + 123)
        src = tmp_path / "big.tif"
        src.write_bytes(data)
        info = small_parts_store.upload_file(bucket, "b1/big.tif", src, content_type="image/tiff")
        assert info.size == len(data)
        self.check_multipart_etag(info.etag, data)
        assert hashlib.sha256(small_parts_store.get_bytes(bucket, "b1/big.tif")).digest() == \
            hashlib.sha256(data).digest()

    def test_upload_file__move_hands_the_file_over(self, store, bucket, tmp_path):
        data = os.urandom(MiB + 7)
        src = tmp_path / "moved.tif"
        src.write_bytes(data)
        store.put_bytes(bucket, "b1/moved.tif", b"old bytes")
        info = store.upload_file(bucket, "b1/moved.tif", src, content_type="image/tiff", move=True)
        assert not src.exists()
        assert info.size == len(data) and info.etag == hashlib.md5(data).hexdigest()
        assert store.get_bytes(bucket, "b1/moved.tif") == data

    def check_multipart_etag(self, etag: str, data: bytes) -> None:
        assert etag == hashlib.md5(data).hexdigest()

    def test_open_read__streams_in_pieces(self, store, bucket):
        data = os.urandom(3 * MiB)
        store.put_bytes(bucket, "s", data)
        with store.open_read(bucket, "s") as stream:
            head = stream.read(1000)
            rest = stream.read()
        assert head == data[:1000] and rest == data[1000:]

    def test_download_file__complete_and_atomic(self, store, bucket, tmp_path):
        data = os.urandom(2 * MiB)
        store.put_bytes(bucket, "d.tif", data)
        target = tmp_path / "out" / "d.tif"
        target.parent.mkdir()
        target.write_bytes(b"old")
        with pytest.raises(ObjectNotFound):
            store.download_file(bucket, "absent.tif", target)
        assert target.read_bytes() == b"old"  # a failed download leaves the old file intact
        store.download_file(bucket, "d.tif", target)
        assert target.read_bytes() == data
        assert os.listdir(target.parent) == ["d.tif"]  # no temp file left behind

    # -- URLs --------------------------------------------------------------------------------
    def test_presigned_get__fetches_the_bytes(self, store, bucket):
        key = "share/a b+é.png"
        store.put_bytes(bucket, key, b"png bytes")
        with urllib.request.urlopen(store.presigned_get(bucket, key, expires_s=300), timeout=10) as r:
            assert r.read() == b"png bytes"

    # -- GDAL --------------------------------------------------------------------------------
    def test_gdal_path__rasterio_opens_with_gdal_options(self, store, bucket):
        store.put_bytes(bucket, "b1/ortho a.tif", tiff_bytes(3.5))
        window = read_through_gdal(store, bucket, "b1/ortho a.tif")
        assert window.shape == (16, 16) and np.all(window == 3.5)

    def test_invalidate__overwrite_then_read_returns_new_bytes(self, store, bucket):
        store.put_bytes(bucket, "ndvi.tif", tiff_bytes(1.0))
        assert np.all(read_through_gdal(store, bucket, "ndvi.tif") == 1.0)
        store.put_bytes(bucket, "ndvi.tif", tiff_bytes(2.0))
        store.invalidate(bucket, "ndvi.tif")
        assert np.all(read_through_gdal(store, bucket, "ndvi.tif") == 2.0)


# == local folder ================================================================================
class TestLocalObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return LocalObjectStore(root=tmp_path / "store")

    def test_keys__escaping_the_bucket_raise_value_error(self, store, bucket):
        store.put_bytes(bucket, "trailing/", b"marker")  # an S3 'folder' object, stored as 'trailing/%'
        assert store.get_bytes(bucket, "trailing/") == b"marker"
        for key in ("../x", "a/../../x", "/etc/passwd", "./a", ""):
            with pytest.raises(ValueError):
                store.put_bytes(bucket, key, b"x")
        assert not (store.root / "x").exists()

    def test_put__atomic_no_partial_file_at_the_key(self, store, bucket):
        class Boom(Exception):
            pass

        def failing(dst):
            dst.write(b"half")
            raise Boom

        store.put_bytes(bucket, "k", b"whole")
        with pytest.raises(Boom):
            store._put(bucket, "k", failing)
        assert store.get_bytes(bucket, "k") == b"whole"
        assert [o.key for o in store.list_objects(bucket)] == ["k"]
        assert os.listdir(store.root / ".staging") == []

    def test_files_dropped_into_the_folder__are_objects(self, store, bucket):
        (store.root / bucket / "b7").mkdir()
        (store.root / bucket / "b7" / "manifest.json").write_bytes(b"{}")
        assert [o.key for o in store.list_objects(bucket)] == ["b7/manifest.json"]
        assert store.uri(bucket, "b7/manifest.json") == (store.root / bucket / "b7" / "manifest.json").as_uri()

    def test_put__key_that_is_also_a_prefix_is_a_clear_error(self, store, bucket):
        store.put_bytes(bucket, "a/b", b"x")
        with pytest.raises(ObjectStoreError, match="a/b"):
            store.put_bytes(bucket, "a/b/c", b"y")  # S3 allows both; a folder tree cannot
        with pytest.raises(ObjectStoreError, match="other objects live under 'a/'"):
            store.put_bytes(bucket, "a", b"y")
        assert store.get_bytes(bucket, "a/b") == b"x"

    def test_upload_file__move_renames_on_the_same_file_system_else_copies(self, store, bucket,
                                                                            tmp_path):
        src = tmp_path / "same.tif"
        src.write_bytes(b"same file system")
        inode = src.stat().st_ino
        store.upload_file(bucket, "m/same.tif", src, move=True)
        stored = store.root / bucket / "m" / "same.tif"
        assert stored.stat().st_ino == inode and stored.stat().st_mode & 0o777 == 0o644
        if Path("/dev/shm").is_dir() and os.stat("/dev/shm").st_dev != stored.stat().st_dev:
            other = Path("/dev/shm") / f"moved-{os.getpid()}.tif"
            other.write_bytes(b"another file system")
            store.upload_file(bucket, "m/other.tif", other, move=True)
            assert not other.exists()
            assert store.get_bytes(bucket, "m/other.tif") == b"another file system"
        refused = tmp_path / "refused.tif"
        refused.write_bytes(b"kept")
        with pytest.raises(ObjectStoreError):  # a key below an object: refused, file kept
            store.upload_file(bucket, "m/same.tif/below", refused, move=True)
        assert refused.read_bytes() == b"kept"

    def test_scratch_dir__on_the_store_s_disk_so_a_move_is_a_rename(self, store, bucket):
        scratch = store.scratch_dir()
        assert scratch.parent == store.root and bucket not in scratch.name
        work = Path(tempfile.mkdtemp(dir=scratch))
        (work / "cog.tif").write_bytes(b"tiles")
        inode = (work / "cog.tif").stat().st_ino
        store.upload_file(bucket, "w/cog.tif", work / "cog.tif", move=True)
        assert (store.root / bucket / "w" / "cog.tif").stat().st_ino == inode
        work.rmdir()
        assert [o.key for o in store.list_objects(bucket)] == ["w/cog.tif"]

    def test_scratch_dir__what_a_killed_run_left_is_removed_after_a_day(self, store):
        scratch = store.scratch_dir()
        old_dir, old_part = scratch / "b1-killed", scratch / ".part-killed"
        old_dir.mkdir()
        (old_dir / "ndvi.tif").write_bytes(b"half")
        old_part.write_bytes(b"half")
        fresh = scratch / "b2-running"  # created two days ago, its spool still growing
        fresh.mkdir()
        (fresh / "ndvi.tiles").write_bytes(b"tiles")
        two_days_ago = time.time() - 2 * 86400
        for path in (old_dir / "ndvi.tif", old_dir, old_part, fresh):
            os.utime(path, (two_days_ago, two_days_ago))
        assert store.scratch_dir() == scratch
        assert sorted(p.name for p in scratch.iterdir()) == ["b2-running"]

    def test_presigned_put__not_implemented_with_a_clear_message(self, store, bucket):
        with pytest.raises(NotImplementedError, match="MINIO_ENDPOINT_URL"):
            store.presigned_put(bucket, "k", expires_s=60)


# == S3 backends =================================================================================
class S3Contract(ObjectStoreContract):
    server = None  # fixture name of the tests/servers.S3Server

    def make(self, server, **kw) -> S3ObjectStore:
        return S3ObjectStore(endpoint_url=server.endpoint_url, access_key=server.access_key,
                             secret_key=server.secret_key, region=server.region, **kw)

    @pytest.fixture
    def small_parts_store(self, s3_server):
        return self.make(s3_server, multipart_threshold=1 * MiB, part_size=1 * MiB)  # raised to 5 MiB

    @pytest.fixture
    def store(self, s3_server):
        return self.make(s3_server)

    def seed(self, store, bucket, keys):
        with ThreadPoolExecutor(16) as pool:  # one request per key (put_bytes also HEADs)
            list(pool.map(lambda k: store.client.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))

    def check_multipart_etag(self, etag, data):
        parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
        joined = b"".join(hashlib.md5(p).digest() for p in parts)
        assert etag == f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"  # 3 parts of >= 5 MiB

    def test_presigned_put__plain_http_put(self, store, bucket):
        url = store.presigned_put(bucket, "up/a b.tif", expires_s=300)
        req = urllib.request.Request(url, data=b"uploaded", method="PUT",  # urllib would send a
                                     headers={"Content-Type": "application/octet-stream"})  # form type
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        assert store.get_bytes(bucket, "up/a b.tif") == b"uploaded"

    def test_uri_and_gdal_path__name_the_bucket_and_key(self, store):
        assert store.uri("reports", "b1/report.pdf") == "s3://reports/b1/report.pdf"
        assert store.gdal_path("reports", "b1/report.pdf") == "/vsis3/reports/b1/report.pdf"
        opts = store.gdal_options()
        assert opts["AWS_VIRTUAL_HOSTING"] == "FALSE" and opts["AWS_HTTPS"] == "NO"
        assert opts["AWS_S3_ENDPOINT"] == urllib.parse.urlsplit(store.endpoint_url).netloc


class TestS3OnSeaweedFS(S3Contract):
    preserves_double_slash = False
    utf8_key_order = False
    drops_empty_prefixes = False

    @pytest.fixture
    def s3_server(self, seaweed):
        return seaweed

    def test_presigned_get__tampered_url_is_refused(self, store, bucket):
        store.put_bytes(bucket, "secret.tif", b"x")
        store.put_bytes(bucket, "other.tif", b"y")
        url = store.presigned_get(bucket, "secret.tif", expires_s=300)
        for bad in (url.replace("secret.tif", "other.tif"), url[:-4] + ("0000" if url[-4:] != "0000" else "1111")):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(bad, timeout=10)
            assert err.value.code == 403

    def test_presigned_get__expired_url_is_refused(self, store, bucket):
        store.put_bytes(bucket, "k.tif", b"x")
        url = store.presigned_get(bucket, "k.tif", expires_s=1)
        time.sleep(2)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 403

    def test_wrong_credentials__access_denied_not_retried_no_secret(self, seaweed, bucket):
        secret = "WrongSecret-" + "s" * 28
        with fault_proxy(seaweed.endpoint_url) as proxy:
            store = S3ObjectStore(endpoint_url=proxy.endpoint_url, access_key=seaweed.access_key,
                                  secret_key=secret)
            calls = [lambda: store.head(bucket, "k"), lambda: store.get_bytes(bucket, "k"),
                     lambda: store.put_bytes(bucket, "k", b"x"), lambda: list(store.list_objects(bucket))]
            for call in calls:
                proxy.reset()
                with pytest.raises(AccessDenied) as err:
                    call()
                assert proxy.requests == 1  # not retried
                assert proxy.endpoint_url in str(err.value) and bucket in str(err.value)
                chain = [err.value, err.value.__cause__]
                assert not any(secret in str(e) or secret[:12] in repr(e) for e in chain if e)
                assert seaweed.secret_key not in str(err.value)
        assert secret not in repr(store)


class TestS3OnMoto(S3Contract):
    """moto for what it is good at: an S3 API behind the fault-injecting proxy."""

    paginate_1500 = False  # 9 s on moto; SeaweedFS covers it

    @pytest.fixture
    def s3_server(self, moto):
        return moto

    @pytest.fixture
    def proxy(self, moto):
        with fault_proxy(moto.endpoint_url) as proxy:
            yield proxy

    def test_slowdown_twice__retried_then_succeeds(self, moto, proxy, tmp_path):
        store = self.make(moto)
        bucket = unique_bucket("faults")
        store.ensure_bucket(bucket)
        faulty = S3ObjectStore(endpoint_url=proxy.endpoint_url, access_key=moto.access_key,
                               secret_key=moto.secret_key)
        proxy.fail_next(2)
        info = faulty.put_bytes(bucket, "k", b"payload")
        assert proxy.requests == 4  # 2 x 503, the PUT, then the HEAD
        assert info.size == 7 and store.get_bytes(bucket, "k") == b"payload"

    def test_persistent_slowdown__transient_error_in_bounded_time(self, moto, proxy):
        faulty = S3ObjectStore(endpoint_url=proxy.endpoint_url, access_key=moto.access_key,
                               secret_key=moto.secret_key)
        proxy.fail_always()
        started = time.monotonic()
        with pytest.raises(TransientStoreError, match="SlowDown") as err:
            faulty.get_bytes("any-bucket", "k")
        assert time.monotonic() - started < 30
        assert proxy.requests == 4  # total_max_attempts
        assert moto.secret_key not in str(err.value)

    def test_stalled_response__read_timeout_becomes_transient_error(self, moto, proxy):
        faulty = S3ObjectStore(endpoint_url=proxy.endpoint_url, access_key=moto.access_key,
                               secret_key=moto.secret_key, read_timeout_s=0.3, max_attempts=2)
        proxy.stall_next(2, 1.5)
        started = time.monotonic()
        with pytest.raises(TransientStoreError):
            faulty.head("any-bucket", "k")
        assert proxy.requests == 2 and time.monotonic() - started < 10

    def test_unreachable_endpoint__transient_error(self, moto):
        from tests.servers import free_port

        store = S3ObjectStore(endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="a",
                              secret_key="topsecret-value", max_attempts=2, connect_timeout_s=0.5)
        with pytest.raises(TransientStoreError) as err:
            store.head("b", "k")
        assert "topsecret" not in str(err.value)


# == the Dagster resource ========================================================================
def test_object_store_resource__local_by_default_and_cached(tmp_path):
    res = ObjectStoreResource(data_dir=str(tmp_path))
    assert isinstance(res.store(), LocalObjectStore) and res.store() is res.store()
    assert res.store().root == tmp_path.resolve()


def test_object_store_resource__from_env_reads_at_call_time(monkeypatch, seaweed):
    monkeypatch.setenv("MINIO_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("MINIO_ACCESS_KEY", seaweed.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", seaweed.secret_key)
    monkeypatch.setenv("REPORT_BUCKET", "my-reports")
    res = ObjectStoreResource.from_env()
    assert res.report_bucket == "my-reports" and res.imagery_bucket == "imagery-uploads"
    store = res.store()
    assert isinstance(store, S3ObjectStore)
    bucket = seaweed.create_bucket()
    assert store.put_bytes(bucket, "k", b"x").size == 1


def test_object_store_resource__s3_without_keys_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="MINIO_ACCESS_KEY") as info:
        ObjectStoreResource(endpoint_url="http://127.0.0.1:9").store()
    assert info.value.setting == "MINIO_ENDPOINT_URL"


def test_object_store_error__hierarchy():
    assert all(issubclass(e, ObjectStoreError) for e in
               (AccessDenied, BucketNotFound, ObjectNotFound, TransientStoreError))
    # The kind decides retries (pipeline.core.errors): credentials and buckets are configuration.
    assert issubclass(AccessDenied, ConfigurationError) and issubclass(BucketNotFound, ConfigurationError)
    assert issubclass(TransientStoreError, TransientError) and TransientStoreError.retriable
    assert not AccessDenied.retriable and not ObjectNotFound.retriable
