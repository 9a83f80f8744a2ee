"""Output of the `imagery-pipeline` commands: errors with exit codes, tables, the progress bar.

Results go to stdout (plain text, or one JSON document with `--json`); progress and error
messages go to stderr, so `--json` output can be piped into `jq` as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from pipeline.uploader import FolderCheck

OK, FAILED, USAGE = 0, 1, 2  # exit codes


def fail(message: str, *, code: int, as_json: bool) -> typer.Exit:
    """Print `message` (stderr; also as JSON on stdout with --json) and return the Exit to raise."""
    typer.echo(f"Error: {message}", err=True)
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message, "exit_code": code}, indent=2))
    return typer.Exit(code)


def emit_json(data: dict) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def check_as_dict(check: FolderCheck) -> dict:
    return {
        "ok": check.ok,
        "batch_id": check.batch_id,
        "folder": str(check.folder),
        "manifest_source": check.manifest_source,
        "files": [{"name": r.name, "ok": r.ok, "size_bytes": r.size_bytes, "sha256": r.sha256,
                   "bands": list(r.bands), "dtype": r.dtype, "crs": r.crs, "width": r.width,
                   "height": r.height, "pixel_size": r.pixel_size, "error": r.error}
                  for r in check.rows],
        "errors": [str(e) for e in check.errors],
        "warnings": list(check.warnings),
    }


def print_check(check: FolderCheck) -> None:
    """The per-file table, then every problem in full (a table cell is too narrow for the fix)."""
    table = Table(title=f"{check.folder} (batch {check.batch_id or '?'})")
    for column in ("file", "ok", "bands", "dtype", "size (px)", "pixel", "CRS"):
        table.add_column(column)
    for r in check.rows:
        pixel = f"{r.pixel_size[0]:g} x {r.pixel_size[1]:g}" if r.pixel_size else ""
        table.add_row(r.name, "yes" if r.ok else "NO", ",".join(r.bands), r.dtype,
                      f"{r.width} x {r.height}" if r.width else "", pixel, r.crs)
    Console(width=120).print(table)
    for warning in check.warnings:
        typer.echo(f"Warning: {warning}")
    for error in check.errors:
        typer.echo(f"Problem: {error}")
    typer.echo("All checks passed." if check.ok else
               f"{len(check.errors)} problem(s); fix them and run the command again.")


@contextmanager
def upload_progress(total_bytes: int, *, enabled: bool) -> Iterator:
    """A byte progress bar on stderr; yields `advance(name, size)` (advances per finished file)."""
    if not enabled:
        yield lambda name, size: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=Console(stderr=True), transient=False)
    task = progress.add_task("uploading", total=total_bytes)

    def advance(name: str, size: int) -> None:  # shown from the first finished file on
        progress.start()
        progress.update(task, advance=size, description=f"uploaded {name}")

    try:
        yield advance
    finally:
        progress.stop()
