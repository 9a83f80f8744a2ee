"""Dropping GDAL's /vsicurl/ (and /vsis3/) cache for one object in this process.

GDAL keeps the size, header and recently read ranges of remote files in a process-wide cache, so
after an object is overwritten a reader in the same process is served the old bytes. The GDAL C
API has `VSICurlPartialClearCache(prefix)` for exactly this; rasterio does not wrap it and the
osgeo bindings are not installed, so it is called through ctypes on the libgdal that rasterio
has already loaded into this process (found in /proc/self/maps, else rasterio's bundled copy).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os


@functools.cache
def _libgdal() -> ctypes.CDLL | None:
    import rasterio  # noqa: F401  (loads libgdal into the process)

    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            candidates += [line.split()[-1] for line in maps if "libgdal" in line and "/" in line]
    except OSError:
        pass
    libs = os.path.join(os.path.dirname(os.path.dirname(rasterio.__file__)), "rasterio.libs")
    candidates += glob.glob(os.path.join(libs, "libgdal*"))
    if found := ctypes.util.find_library("gdal"):
        candidates.append(found)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.VSICurlPartialClearCache.argtypes = [ctypes.c_char_p]
            lib.VSICurlPartialClearCache.restype = None
            return lib
        except (OSError, AttributeError):
            continue
    return None


def clear_vsicurl_cache(prefix: str) -> bool:
    """Forget cached data of every /vsi…/ file whose name starts with `prefix`; False if impossible."""
    lib = _libgdal()
    if lib is None:
        return False
    lib.VSICurlPartialClearCache(prefix.encode("utf-8"))
    return True
