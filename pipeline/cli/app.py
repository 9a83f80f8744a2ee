"""`imagery-pipeline`: the command line for uploaders and operators.

Exit codes: 0 success; 1 the operation failed (storage unreachable, report not there yet, a run
failed); 2 invalid input or usage (bad folder, failed validation, existing batch id). Every
command takes `--json` for scripts. Storage comes from the environment only (DESIGN.md §5):
MINIO_ENDPOINT_URL, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_REGION, IMAGERY_BUCKET,
HEATMAP_BUCKET, REPORT_BUCKET; without MINIO_ENDPOINT_URL the local store in IMAGERY_DATA_DIR.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import FAILED, USAGE, check_as_dict, emit_json, fail, print_check
from pipeline.cli.ops import object_store_from_env, presign_upload, report, status
from pipeline.cli.output import upload_progress
from pipeline.cli.serve import serve
from pipeline.core.errors import ImageryError
from pipeline.core.manifest import CANONICAL_BANDS, MANIFEST_NAME
from pipeline.uploader import BatchExists, ManifestOptions, check_folder, manifest_json
from pipeline.uploader import parse_bands_option, upload_batch

app = typer.Typer(
    help="Aerial imagery pipeline: upload and check batches of multispectral and thermal "
    "GeoTIFFs, follow their processing, fetch their reports.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

BAND_RULES = (
    "Bands: --bands names the bands of EVERY image in file order (one camera per batch), from "
    f"{', '.join(CANONICAL_BANDS)}; `other` bands are ignored and an image with only `other` "
    "bands is skipped. Without it, each band's GeoTIFF description is matched (Blue, Green, Red, "
    "RedEdge, NIR, SWIR1, SWIR 2, LWIR...). `imagery-pipeline indices` lists the indices the "
    "bands allow. A 1-band image is thermal "
    "when its description says thermal/LWIR/TIR, or when --thermal-unit is given and its "
    "description names no other band; --thermal-unit applies to every thermal image (default "
    "celsius). A manifest.json in FOLDER is used as it is (sha256 checked or filled in) and the "
    "band options are refused then."
)


class ThermalUnit(str, Enum):
    celsius = "celsius"
    kelvin = "kelvin"
    centikelvin = "centikelvin"


Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
Folder = Annotated[Path, typer.Argument(exists=True, file_okay=False, dir_okay=True,
                                        help="Folder with the GeoTIFFs (*.tif, *.tiff).")]
Bands = Annotated[str | None, typer.Option(help="Band names of every image, comma-separated, "
                                           "e.g. blue,green,red,red_edge,nir.")]
Unit = Annotated[ThermalUnit | None, typer.Option(help="Unit of the thermal images' values.")]
Zones = Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                            help="Zones GeoJSON (named polygons), uploaded too.")]
Scale = Annotated[float | None, typer.Option(help="DN x scale = reflectance (e.g. 0.0001).")]


def _options(bands: str | None, unit: ThermalUnit | None, zones: Path | None, scale: float | None,
             auto_report: bool, as_json: bool) -> ManifestOptions:
    try:
        parsed = parse_bands_option(text=bands) if bands is not None else None
    except ValueError as exc:
        raise fail(str(exc), code=USAGE, as_json=as_json) from None
    if scale is not None and not scale > 0:
        raise fail(f"--reflectance-scale {scale} must be positive (e.g. 0.0001 for DN 0-10000)",
                   code=USAGE, as_json=as_json)
    return ManifestOptions(bands=parsed, thermal_unit=unit.value if unit else None, zones=zones,
                           reflectance_scale=scale, auto_report=auto_report)


def _check(folder: Path, batch_id: str | None, options: ManifestOptions, as_json: bool):
    try:
        return check_folder(folder=folder, batch_id=batch_id, options=options)
    except (ImageryError, ValueError) as exc:
        raise fail(str(exc), code=USAGE, as_json=as_json) from None


@app.command(epilog=BAND_RULES)
def upload(
    folder: Folder,
    batch_id: Annotated[str, typer.Option(help="The batch id: letters, digits, '.', '_', '-'.")],
    bands: Bands = None,
    thermal_unit: Unit = None,
    zones: Zones = None,
    reflectance_scale: Scale = None,
    auto_report: Annotated[bool, typer.Option(help="Build and send the report after the "
                                              "heatmaps.")] = True,
    replace: Annotated[bool, typer.Option("--replace",
                                          help="Replace an existing batch of this id.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the manifest; "
                                          "upload nothing.")] = False,
    as_json: Json = False,
) -> None:
    """Validate the GeoTIFFs in FOLDER locally, then upload them as one batch, manifest.json last.

    Runs the pipeline's own checks first (georeferencing, bands, overlap, pixel type, zones), so
    a bad batch is refused here, with the file and the fix named, before anything is sent.
    """
    from pipeline.storage.base import ObjectStoreError

    options = _options(bands, thermal_unit, zones, reflectance_scale, auto_report, as_json)
    check = _check(folder, batch_id, options, as_json)
    if not check.ok:
        if as_json:
            emit_json(check_as_dict(check))
        else:
            print_check(check)
        raise typer.Exit(USAGE)
    manifest = json.loads(manifest_json(check.manifest))
    if dry_run:
        if as_json:
            emit_json({"ok": True, "dry_run": True, "batch_id": check.batch_id,
                       "files": [name for name, _ in check.files], "manifest": manifest})
        else:
            typer.echo(json.dumps(manifest, indent=2))
            typer.echo(f"Dry run: {len(check.files)} file(s) + {MANIFEST_NAME} would be uploaded.",
                       err=True)
        return
    resource = object_store_from_env(as_json)
    store = resource.store()
    try:
        if resource.endpoint_url is None:
            store.ensure_bucket(resource.imagery_bucket)  # the embedded store starts empty
        total = sum(path.stat().st_size for _, path in check.files)
        with upload_progress(total, enabled=not as_json) as advance:
            result = upload_batch(store=store, bucket=resource.imagery_bucket, check=check,
                                  replace=replace, on_file=advance)
    except BatchExists as exc:
        raise fail(str(exc), code=USAGE, as_json=as_json) from None
    except ObjectStoreError as exc:
        raise fail(f"upload failed: {exc}", code=FAILED, as_json=as_json) from None
    manifest_uri = store.uri(resource.imagery_bucket, f"{result.batch_id}/{MANIFEST_NAME}")
    if as_json:
        emit_json({"ok": True, "batch_id": result.batch_id, "bucket": result.bucket,
                   "uploaded": list(result.uploaded), "removed": list(result.removed),
                   "replaced": result.replaced, "manifest_etag": result.manifest_etag,
                   "manifest_uri": manifest_uri, "manifest": manifest})
        return
    typer.echo(f"Uploaded batch {result.batch_id}: {len(result.uploaded) - 1} file(s), then "
               f"{manifest_uri}{' (replaced)' if result.replaced else ''}.")
    typer.echo(f"Follow it with: imagery-pipeline status {result.batch_id}")


@app.command(epilog=BAND_RULES)
def validate(
    folder: Folder,
    batch_id: Annotated[str | None, typer.Option(help="Batch id for the manifest (default: "
                                                 "the folder's name).")] = None,
    bands: Bands = None,
    thermal_unit: Unit = None,
    zones: Zones = None,
    reflectance_scale: Scale = None,
    as_json: Json = False,
) -> None:
    """Run the upload checks on FOLDER without uploading; print one row per file."""
    options = _options(bands, thermal_unit, zones, reflectance_scale, True, as_json)
    if batch_id is None and not (folder / MANIFEST_NAME).is_file():
        batch_id = folder.resolve().name
    check = _check(folder, batch_id, options, as_json)
    if as_json:
        emit_json(check_as_dict(check))
    else:
        print_check(check)
    if not check.ok:
        raise typer.Exit(USAGE)


@app.command()
def demo(
    data_dir: Annotated[Path | None, typer.Option(
        help="The embedded local store; default IMAGERY_DATA_DIR, else ./data.")] = None,
    batch_id: Annotated[str, typer.Option(help="Batch id of the generated sample.")] = "demo-farm-2026-06-14",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate a sample batch, upload it to the embedded local store and process it.

    Runs with no services: a SQLite Dagster instance in DAGSTER_HOME (default ./.dagster_home)
    and a local folder as object store. The sensor finds the upload, and the job
    `process_imagery_batch` runs for its partition, exactly as in production.
    """
    from pipeline.demo import run_demo
    from pipeline.settings import Settings

    data_dir = data_dir if data_dir is not None else Settings.from_env().data_dir
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


@app.command()
def indices(as_json: Json = False) -> None:
    """List every index this deployment computes: the built-ins and the custom ones of
    IMAGERY_INDICES_FILE, with their formula, bands and fixed colour scale."""
    from pipeline.core.errors import ConfigurationError
    from pipeline.core.registry import build_registry
    from pipeline.settings import Settings

    try:
        registry = build_registry(indices_file=Settings.from_env().indices_file)
    except ConfigurationError as exc:
        raise fail(str(exc), code=USAGE, as_json=as_json) from None
    rows = [{"name": d.name, "formula": d.formula, "bands": list(d.bands),
             "scale": d.scale.as_dict(), "custom": d.custom, "code_version": d.code_version,
             "description": d.description} for d in registry.values()]
    if as_json:
        emit_json({"ok": True, "indices_file": registry.source, "indices": rows})
        return
    for row in rows:
        scale = row["scale"]
        typer.echo(f"{row['name']:<12} {row['formula']}  [{scale['ramp']} "
                   f"{scale['vmin']:g}..{scale['vmax']:g}]{'  (custom)' if row['custom'] else ''}")
    typer.echo(f"Custom indices: {registry.source or 'none (IMAGERY_INDICES_FILE is unset)'}")


app.command()(status)
app.command()(report)
app.command("presign-upload")(presign_upload)
app.command()(serve)


def main() -> None:  # pragma: no cover - console entry point
    app()
