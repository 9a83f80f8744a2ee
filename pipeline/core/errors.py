"""The one error hierarchy of the product, and the three kinds that decide retries.

`PipelineError` is the root. Every failure we raise on purpose is one of three kinds, and the kind
alone decides what happens next (the mapping to Dagster is `assets/failures.py`, nowhere else):

| kind | means | retried | message names |
| --- | --- | --- | --- |
| `ImageryError` | bad input: the batch cannot be processed as uploaded | never | the file and the fix |
| `ConfigurationError` | the deployment is misconfigured | never | the setting and the fix |
| `TransientError` | a service did not answer (store, network) | yes | what failed |

Any other exception is a bug or a framework failure, and is retried like a transient one.
Storage backends (`pipeline.storage`) subclass these kinds for their own errors.
"""

from __future__ import annotations


class PipelineError(Exception):
    """The root of every error the pipeline raises on purpose."""

    retriable: bool = False


class ConfigurationError(PipelineError):
    """The deployment is misconfigured (a setting, a credential, a bucket). Never retried."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}" if setting else message)


class TransientError(PipelineError):
    """A service did not answer in time; the same work may succeed later. Retried."""

    retriable = True


class ImageryError(PipelineError):
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
    """The zones GeoJSON is malformed, or a feature has no name (a zone outside the imagery is
    kept, not refused: DESIGN.md §2)."""


class ImplausibleThermal(ImageryError):
    """A thermal image whose values, converted as the manifest says, are mostly not surface
    temperatures (outside -40…150 °C): a wrong thermal_unit or scale."""


class StorageUnavailable(TransientError):
    """The object store did not serve an image's bytes (5xx, SlowDown, timeout, refused or
    denied connection) after GDAL's own retries. Not bad input, so not an ImageryError: the
    step fails with an ordinary exception, which the retry policy and run retries retry."""
