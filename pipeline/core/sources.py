"""An image of a batch and its header: what GDAL says about a file before any pixel is decoded.

Shared by the batch grid (`grid.py`), validation and the mosaic, so none of them imports another
to learn a file's CRS, transform, size or band types. Also the one place that tells a failure of
the object store (retried) from a file whose bytes GDAL cannot decode (bad input, final).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from pipeline.core.errors import StorageUnavailable, UnreadableImage

try:  # GDAL errors that rasterio raises without wrapping them in RasterioError
    from rasterio._err import CPLE_BaseError as _CPLError
except ImportError:  # pragma: no cover - rasterio internals moved
    _CPLError = RasterioError

_READ_ERRORS = (RasterioError, _CPLError)


class GdalOptions(Mapping[str, str]):
    """Options for `rasterio.Env(**options)` whose repr names the keys only, never a value.

    The object store's options carry its secret key (`storage/s3.py` `gdal_options`); what holds
    them is passed as a dask task argument, which `distributed` writes out on a failure
    (`convert_args_to_str`), and ends up in tracebacks and logs. Immutable, hashable, picklable
    and tokenized by value, so it can stand in for the sorted tuple of items the tasks used.
    """

    __slots__ = ("_items",)

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self._items = tuple(sorted(dict(options or {}).items()))

    def __getitem__(self, key: str) -> str:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GdalOptions):
            return self._items == other._items
        return Mapping.__eq__(self, other)

    def __repr__(self) -> str:
        return f"GdalOptions(keys={[k for k, _ in self._items]!r}, values hidden)"

    def __reduce__(self):
        return GdalOptions, (dict(self._items),)

    def __dask_tokenize__(self):
        return ("GdalOptions", self._items)


@dataclass(frozen=True)
class ImageSource:
    """One image of a batch, resolved by the manifest layer."""

    name: str  # the manifest path, for messages ("ortho_a.tif")
    path: str  # what GDAL opens: local path or "/vsis3/bucket/key"
    bands: tuple[str, ...]  # canonical band name per band index
    # Not in the repr: it holds the object store's secret key (see GdalOptions).
    gdal_options: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class HeaderInfo:
    """What an image's header declares; read without decoding pixels."""

    crs: CRS | None
    transform: Affine | None  # None when the file has no geotransform
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    descriptions: tuple[str | None, ...]
    block_shapes: tuple[tuple[int, int], ...]


def _unreadable(name: str, exc: BaseException | None = None) -> UnreadableImage:
    detail = f" (GDAL: {exc})" if exc is not None else ""
    return UnreadableImage(
        "is not a raster GDAL can read: it is empty, an HTML/XML error page saved as an image, "
        f"or truncated{detail}; upload the file again (then the manifest, last)",
        file=name,
    )


_STORAGE_WORDS = re.compile(
    r"HTTP response code: (5\d\d|429|403)|reduce your request rate|SlowDown|Service ?Unavailable|"
    r"InternalError|timed out|Timeout|Connection (refused|reset|timed)|Could not resolve|"
    r"Couldn't connect|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch", re.IGNORECASE)
try:
    from rasterio._err import CPLE_AWSError as _AWSError
    from rasterio._err import CPLE_AWSObjectNotFoundError as _AWSNotFound
    from rasterio._err import CPLE_HttpResponseError as _HttpError
except ImportError:  # pragma: no cover - rasterio internals moved
    _AWSError = _AWSNotFound = _HttpError = ()


def _storage_failure(exc: BaseException) -> bool:
    """True when GDAL failed because the store did not answer, not because of the bytes."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 5:
        seen.append(exc)
        if _AWSError and isinstance(exc, (_AWSError, _HttpError)) and not isinstance(exc, _AWSNotFound):
            return True
        if _STORAGE_WORDS.search(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _read_failure(name: str, exc: BaseException) -> Exception:
    """UnreadableImage for bad bytes; StorageUnavailable (retried) when the store failed."""
    if _storage_failure(exc):
        return StorageUnavailable(
            f"{name}: the object store did not serve the image (GDAL: {exc}) after GDAL's "
            "retries; the step fails and is retried (check the store if it persists)")
    return _unreadable(name, exc)


def open_header(source: ImageSource) -> HeaderInfo:
    """The header of `source`; raises UnreadableImage for files GDAL cannot decode.

    Also decodes the block holding the last pixel (one small read), which catches files cut
    short during upload before any analysis starts.
    """
    try:
        with rasterio.Env(**dict(source.gdal_options)), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(source.path) as ds:
                georef = ds.crs is not None or ds.transform != Affine.identity()
                header = HeaderInfo(
                    crs=ds.crs, transform=ds.transform if georef else None,
                    width=int(ds.width), height=int(ds.height), count=int(ds.count),
                    dtypes=tuple(str(d) for d in ds.dtypes),
                    nodata=None if ds.nodata is None else float(ds.nodata),
                    descriptions=tuple(ds.descriptions),
                    block_shapes=tuple(tuple(int(v) for v in b) for b in ds.block_shapes),
                )
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except _READ_ERRORS as exc:
        raise _read_failure(source.name, exc) from exc
    return header
