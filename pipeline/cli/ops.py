"""Operator commands of `imagery-pipeline`: status, report, presign-upload (registered on the app
in pipeline/cli.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import FAILED, USAGE, emit_json, fail
from pipeline.settings import Settings
from pipeline.core.errors import ConfigurationError, InvalidBatchId
from pipeline.core.outputs import Kind, batch_key, entries, lookup
from pipeline.core.manifest import MANIFEST_NAME, safe_relative_path, validate_batch_id

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _batch_id(batch_id: str, as_json: bool) -> str:
    try:
        return validate_batch_id(batch_id)
    except InvalidBatchId as exc:
        raise fail(str(exc), code=USAGE, as_json=as_json) from None


def object_store_from_env(as_json: bool):
    """The store from the DESIGN.md §5 environment; a misconfiguration exits 2 with its reason."""
    from resources.object_store import ObjectStoreResource

    try:
        resource = ObjectStoreResource.from_settings(Settings.from_env())
        resource.store()
    except ConfigurationError as exc:
        raise fail(str(exc), code=USAGE, as_json=as_json) from None
    return resource


def status(
    batch_id: Annotated[str | None, typer.Argument(help="One batch; default: the latest.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many batches, newest first.")] = 20,
    as_json: Json = False,
) -> None:
    """Show batches and their state: uploading, waiting, queued, running, failed (with the
    reason) or done.

    Reads the object store and, when DAGSTER_HOME is set, the Dagster instance's runs (by the
    tag dagster/partition=<batch id>); without an instance the state comes from the store only.
    Exit 1 when the batch given does not exist.
    """
    from pipeline.cli.status import batch_statuses, dagster_latest_run
    from pipeline.storage.base import ObjectStoreError

    if batch_id is not None:
        _batch_id(batch_id, as_json)
    resource = object_store_from_env(as_json)
    instance = None
    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        instance = dg.DagsterInstance.get()
    try:
        statuses = batch_statuses(
            store=resource.store(), imagery_bucket=resource.imagery_bucket,
            report_bucket=resource.report_bucket, batch_id=batch_id, limit=limit,
            latest_run=dagster_latest_run(instance) if instance is not None else None)
    except ObjectStoreError as exc:
        raise fail(f"cannot read the store: {exc}", code=FAILED, as_json=as_json) from None
    finally:
        if instance is not None:
            instance.dispose()
    if as_json:
        emit_json({"ok": True, "dagster_instance": instance is not None,
                   "batches": [s.as_dict() for s in statuses]})
    else:
        if instance is None:
            typer.echo("(DAGSTER_HOME is not set: states from the object store only)", err=True)
        if not statuses:
            typer.echo("No batches.")
        for s in statuses:
            extra = f"  run {s.run_id} ({s.run_status})" if s.run_id else ""
            objects = f"  {s.objects} object(s)" if s.state == "uploading" else ""
            typer.echo(f"{s.batch_id:<40} {s.state:<10} {s.updated_at or '-'}{objects}{extra}")
            if s.reason:
                typer.echo(f"    reason: {s.reason}")
    if batch_id is not None and statuses and statuses[0].state == "unknown":
        raise typer.Exit(FAILED)


def report(
    batch_id: Annotated[str, typer.Argument(help="The batch id.")],
    out: Annotated[Path | None, typer.Option(
        file_okay=False, help="Target folder (default: ./<batch id>/).")] = None,
    as_json: Json = False,
) -> None:
    """Download a batch's report.pdf, summary.json (and distribution.json) and heatmap previews.

    Exit 1 when the report does not exist yet (see `imagery-pipeline status <batch id>`).
    """
    from pipeline.storage.base import ObjectStoreError

    _batch_id(batch_id, as_json)
    resource = object_store_from_env(as_json)
    store = resource.store()
    target = out if out is not None else Path(batch_id)
    try:
        if store.head(resource.report_bucket, f"{batch_id}/report.pdf") is None:
            raise fail(f"batch {batch_id!r} has no report yet "
                       f"({store.uri(resource.report_bucket, f'{batch_id}/report.pdf')} is "
                       f"missing); see `imagery-pipeline status {batch_id}`",
                       code=FAILED, as_json=as_json)
        # Every document of the report bucket and every map preview (catalogue, core/outputs.py).
        wanted = [(resource.report_bucket, batch_key(batch_id, e.template))
                  for e in entries(bucket="report") if e.scope == "batch"]
        wanted += [(resource.heatmap_bucket, o.key) for o in
                   store.list_objects(resource.heatmap_bucket, prefix=f"{batch_id}/")
                   if (found := lookup(o.key[len(batch_id) + 1:])) and found[0].kind == Kind.PNG]
        target.mkdir(parents=True, exist_ok=True)
        saved = []
        for bucket, key in wanted:
            if store.head(bucket, key) is None:
                continue  # distribution.json only exists once the report was sent
            path = target / key.rsplit("/", 1)[1]
            store.download_file(bucket, key, path)
            saved.append(str(path))
    except ObjectStoreError as exc:
        raise fail(f"cannot download the report: {exc}", code=FAILED, as_json=as_json) from None
    if as_json:
        emit_json({"ok": True, "batch_id": batch_id, "folder": str(target), "files": saved})
        return
    typer.echo(f"Saved {len(saved)} file(s) of batch {batch_id} into {target}/:")
    for path in saved:
        typer.echo(f"  {path}")


def presign_upload(
    batch_id: Annotated[str, typer.Argument(help="The batch id to upload to.")],
    files: Annotated[list[Path], typer.Argument(help="The files the device will upload (only "
                                                "their names are used).")],
    expires: Annotated[int, typer.Option(min=60, max=7 * 24 * 3600,
                                         help="Seconds the URLs stay valid.")] = 3600,
    as_json: Json = False,
) -> None:
    """Print presigned PUT URLs (JSON) so a field device uploads without credentials.

    One URL per FILE (key <batch id>/<file name>) and one for manifest.json, which the device
    must PUT LAST: `curl -T FILE URL`. S3/MinIO only (MINIO_ENDPOINT_URL).
    """
    from pipeline.storage.base import ObjectStoreError

    _batch_id(batch_id, as_json)
    names = [f.name for f in files]
    for name in names:
        try:
            safe_relative_path(name)
        except ValueError as exc:
            raise fail(f"{name}: {exc}", code=USAGE, as_json=as_json) from None
    if MANIFEST_NAME in names or len(set(names)) != len(names):
        raise fail("give each file once and not manifest.json (its URL is always printed, last)",
                   code=USAGE, as_json=as_json)
    resource = object_store_from_env(as_json)
    if not resource.endpoint_url:
        raise fail("presigned URLs need S3/MinIO: MINIO_ENDPOINT_URL is not set, so the store is "
                   "the local folder IMAGERY_DATA_DIR; copy the files there instead",
                   code=USAGE, as_json=as_json)
    store, bucket = resource.store(), resource.imagery_bucket
    try:
        if store.head(bucket, f"{batch_id}/{MANIFEST_NAME}") is not None:
            raise fail(f"batch {batch_id!r} already has a manifest; choose another batch id",
                       code=USAGE, as_json=as_json)
        urls = [{"file": name, "key": f"{batch_id}/{name}",
                 "url": store.presigned_put(bucket, f"{batch_id}/{name}", expires_s=expires)}
                for name in names]
        manifest_url = store.presigned_put(bucket, f"{batch_id}/{MANIFEST_NAME}", expires_s=expires)
    except ObjectStoreError as exc:
        raise fail(f"cannot presign: {exc}", code=FAILED, as_json=as_json) from None
    for item in urls:
        item["curl"] = f"curl -T {item['file']} '{item['url']}'"
    emit_json({
        "ok": True, "batch_id": batch_id, "bucket": bucket, "expires_s": expires,
        "instructions": "PUT every file (curl -T FILE URL), then manifest.json LAST: the batch is "
                        "processed as soon as the manifest appears (DESIGN.md §1, §2).",
        "files": urls,
        "manifest": {"key": f"{batch_id}/{MANIFEST_NAME}", "url": manifest_url,
                     "curl": f"curl -T manifest.json '{manifest_url}'"},
    })
