"""`imagery-pipeline serve`: the HTTP API and map viewer of DESIGN.md §6 (pipeline/api/)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pipeline.cli.output import USAGE, fail


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default IMAGERY_API_HOST, "
                                             "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Listen port (default "
                                             "IMAGERY_API_PORT, 8080).")] = None,
) -> None:
    """Serve the HTTP API, map tiles and the map viewer on one port (DESIGN.md §6).

    Storage and tokens come from the environment (DESIGN.md §5): IMAGERY_API_TOKENS_SHA256 (the
    SHA-256 digests of the bearer tokens; unset refuses every request but /healthz), the
    object-store variables, and DAGSTER_HOME for runs and states (unset: states from the store
    only). IMAGERY_API_DAGSTER_URL names the Dagster webserver that `POST /analysis-runs`
    submits runs to.
    """
    import uvicorn

    from pipeline.api import ApiConfig, create_app
    from pipeline.core.errors import ConfigurationError
    from pipeline.settings import get_settings
    from resources.object_store import ObjectStoreResource

    try:
        settings = get_settings()
        store = ObjectStoreResource.from_settings(settings).store()
    except (ConfigurationError, ValueError) as exc:
        raise fail(str(exc), code=USAGE, as_json=False) from None
    config = ApiConfig(token_digests=settings.api_tokens_sha256,
                       imagery_bucket=settings.imagery_bucket,
                       heatmap_bucket=settings.heatmap_bucket,
                       report_bucket=settings.report_bucket, area_unit=settings.area_unit,
                       dagster_url=settings.api_dagster_url, basemap_url=settings.basemap_url)
    instance = None
    if os.environ.get("DAGSTER_HOME"):  # Dagster's own variable, not a DESIGN.md §5 setting
        import dagster as dg

        instance = dg.DagsterInstance.get()
    if not config.token_digests:
        typer.echo("IMAGERY_API_TOKENS_SHA256 is empty: every request but /healthz is refused",
                   err=True)
    app = create_app(config=config, store=store, instance=instance)
    try:
        uvicorn.run(app, host=host or settings.api_host, port=port or settings.api_port,
                    proxy_headers=False, server_header=False, log_level="info")
    finally:
        if instance is not None:
            instance.dispose()
