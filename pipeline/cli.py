"""`imagery-pipeline`: the command line for uploaders and operators."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Aerial imagery pipeline: process batches of multispectral and thermal GeoTIFFs.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="The embedded local store (IMAGERY_DATA_DIR).")] = Path(
        os.environ.get("IMAGERY_DATA_DIR", "./data")
    ),
    batch_id: Annotated[str, typer.Option(help="Batch id of the generated sample.")] = "demo-farm-2026-06-14",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate a sample batch, upload it to the embedded local store and process it.

    Runs with no services: a SQLite Dagster instance in DAGSTER_HOME (default ./.dagster_home)
    and a local folder as object store. The sensor finds the upload, and the job
    `process_imagery_batch` runs for its partition, exactly as in production.
    """
    from pipeline.demo import run_demo

    result = run_demo(data_dir=data_dir.resolve(), batch_id=batch_id)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        raise typer.Exit(0 if result["success"] else 1)
    typer.echo(f"Batch {result['batch_id']}: run {result['run_id']} "
               f"{'succeeded' if result['success'] else 'FAILED'}")
    typer.echo(f"Dagster instance: {result['dagster_home']} (open it with `./run ui`)")
    typer.echo("Outputs:")
    for path in result["outputs"]:
        typer.echo(f"  {path}")
    if not result["success"]:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()
