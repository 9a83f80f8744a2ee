"""What every route reads: the configuration, the object store, and the Dagster instance.

Built once by `create_app` and kept on `app.state.api`; routes get it through `api_context`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from pipeline.storage import ObjectStore

DEFAULT_MAX_BODY_BYTES = 1_000_000  # a manifest with thousands of images is far below this
UPLOAD_URL_EXPIRES_S = 15 * 60  # DESIGN.md §6: presigned PUT URLs live 15 minutes
REPORT_URL_EXPIRES_S = 3600  # and presigned GET links of a report one hour


@dataclass(frozen=True)
class ApiConfig:
    """The API's settings (DESIGN.md §5), taken from `pipeline.settings.Settings` by `serve`.

    `token_digests`: lowercase SHA-256 hex digests of the accepted bearer tokens; empty refuses
    every request but /healthz and the static files. `dagster_url`: the Dagster webserver whose
    GraphQL API `POST /analysis-runs` submits runs through (None: that route answers 503).
    `public_url`: the API's own address as clients reach it, for the local store's upload URLs.
    """

    token_digests: tuple[str, ...]
    imagery_bucket: str = "imagery-uploads"
    heatmap_bucket: str = "analysis-heatmaps"
    report_bucket: str = "reports"
    area_unit: str = "ha"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    dagster_url: str | None = None
    basemap_url: str | None = None
    session_max_age_s: int = 12 * 3600

    def __post_init__(self) -> None:
        if self.area_unit not in ("ha", "acre"):
            raise ValueError(f"IMAGERY_AREA_UNIT is {self.area_unit!r}; use 'ha' or 'acre'")
        for digest in self.token_digests:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(
                    "IMAGERY_API_TOKENS_SHA256 holds an entry that is not a lowercase SHA-256 hex "
                    "digest; compute one with `printf %s TOKEN | sha256sum`")


@dataclass
class ApiContext:
    config: ApiConfig
    store: ObjectStore
    instance: Any | None = None  # a dagster.DagsterInstance, or None: states from the store only
    # Per process: signs the sign-in cookies (a restart signs everyone out).
    session_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # (batch_id, layer) -> (monotonic expiry, Layer): tiles skip the summary and HEAD requests
    tile_layers: dict = field(default_factory=dict)


def api_context(request: Request) -> ApiContext:
    return request.app.state.api
