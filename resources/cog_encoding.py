"""The float COG encoding (DESIGN.md §3.1, §5: IMAGERY_COG_COMPRESSION, IMAGERY_COG_MAX_Z_ERROR),
server configuration read once with the settings and handed to the analysis assets as data."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from pipeline.core.cog import CogEncoding
from pipeline.settings import Settings


class CogEncodingResource(dg.ConfigurableResource):
    compression: Literal["zstd", "deflate", "lerc"] = "zstd"
    max_z_error: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CogEncodingResource:
        encoding = settings.cog_encoding()
        return cls(compression=encoding.compression, max_z_error=encoding.max_z_error)

    def encoding(self) -> CogEncoding:
        return CogEncoding(compression=self.compression, max_z_error=self.max_z_error)
