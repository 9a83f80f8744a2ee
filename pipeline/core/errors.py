"""The error hierarchy of the compute core.

Every message names the file (or manifest field) at fault and says how to fix the input, because
the person reading it is an uploader, not the author of this code.
"""

from __future__ import annotations


class ImageryError(Exception):
    """Bad input: the batch cannot be processed as uploaded. Never retried."""

    def __init__(self, message: str, *, file: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)


class ManifestError(ImageryError):
    """manifest.json is missing, malformed, or contradicts DESIGN.md §2."""


class InvalidBatchId(ImageryError):
    """A batch id that DESIGN.md §1 does not allow."""


class ChecksumMismatch(ImageryError):
    """An image's sha256 differs from the manifest."""


class UnreadableImage(ImageryError):
    """Not a raster GDAL can decode (empty, HTML error page, truncated)."""


class MissingCRS(ImageryError):
    """An image without a CRS or geotransform."""


class UnknownBands(ImageryError):
    """Bands that neither the manifest nor the GeoTIFF descriptions name."""


class NoOverlap(ImageryError):
    """An image that does not overlap the rest of the batch."""


class RasterTooLarge(ImageryError):
    """An image beyond the configured size limit (decompression-bomb guard)."""


class NoValidData(ImageryError):
    """An image or band that holds nodata only."""


class ZonesError(ImageryError):
    """The zones GeoJSON is malformed or outside the batch."""


class StorageUnavailable(Exception):
    """The object store did not serve an image's bytes (5xx, SlowDown, timeout, refused or
    denied connection) after GDAL's own retries. Not bad input, so not an ImageryError: the
    step fails with an ordinary exception, which the retry policy and run retries retry."""
