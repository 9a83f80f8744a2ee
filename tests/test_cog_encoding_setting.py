"""IMAGERY_COG_COMPRESSION / IMAGERY_COG_MAX_Z_ERROR (DESIGN.md §3.1, §5) reach the engine as data."""

from __future__ import annotations

import pytest

from assets.analysis import cog_encoding
from pipeline.core.cog import CogEncoding
from pipeline.settings import Settings


@pytest.mark.parametrize(("environ", "want"), [
    ({}, CogEncoding("zstd")),
    ({"IMAGERY_COG_COMPRESSION": "deflate"}, CogEncoding("deflate")),
    ({"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "0.0001"},
     CogEncoding("lerc", 0.0001)),
])
def test_cog_encoding__from_the_settings(environ, want):
    encoding = cog_encoding(Settings.from_env(environ))
    assert encoding == want
    assert encoding.profile("float32").creation["COMPRESS"] == {
        "zstd": "ZSTD", "deflate": "DEFLATE", "lerc": "LERC_ZSTD"}[want.compression]
