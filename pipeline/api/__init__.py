"""The HTTP API and map viewer of DESIGN.md §6 (`imagery-pipeline serve`).

One file per kind: `app` (the factory), `auth` (bearer tokens and the sign-in cookie), `schemas`
(the pydantic models of every body, which feed /openapi.json), `imagery`, `runs`, `reports`,
`tiles`, `viewer` (one router per resource), `metrics` (Prometheus) and `context` (what every route
reads: the store, the buckets, the Dagster instance).
"""

from pipeline.api.app import create_app
from pipeline.api.context import ApiConfig

__all__ = ["ApiConfig", "create_app"]
