"""Server-side limits and thresholds (never from the manifest)."""

import dagster as dg

from pipeline.core.grid import DEFAULT_MAX_PIXELS


class LimitsResource(dg.ConfigurableResource):
    """IMAGERY_MAX_PIXELS guards against decompression bombs: an image declaring more pixels
    is refused from its header, before any allocation. IMAGERY_MIN_VALID_FRACTION is the
    share of the grid an index must cover for the report to go out."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_valid_fraction: float = 0.05
