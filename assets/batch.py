"""`imagery_batch`: the validated batch (manifest, checksums, georeferencing, bands, overlap)."""


import json
import time

import dagster as dg

from assets.failures import bad_input, misconfigured
from pipeline.core.errors import ConfigurationError, ImageryError, ManifestError, UnreadableImage
from pipeline.core.manifest import MANIFEST_NAME, parse_manifest
from pipeline.core.mgmt_analysis import check_prescription
from pipeline.core.validation import ValidatedBatch, check_sha256, sha256_of, validate_images
from pipeline.partitions import imagery_batches
from pipeline.sensors import MANIFEST_ETAG_TAG
from resources.limits import LimitsResource
from resources.object_store import ObjectStoreResource
from resources.zoning import ZoningResource

CHUNK = 8 * 1024 * 1024


def _read_chunks(stream):
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk


@dg.asset(
    partitions_def=imagery_batches,
    group_name="intake",
    owners=["team:imagery"],
    code_version="1",
    kinds={"python", "s3"},
    description="The uploaded batch, validated: manifest.json parsed (DESIGN.md §2), every image's "
    "sha256 checked, headers opened lazily (CRS, geotransform, bands, dtype, size) and the optical "
    "images combined onto one batch grid. Uploads are only read, never modified.",
)
def imagery_batch(
    context: dg.AssetExecutionContext, object_store: ObjectStoreResource, limits: LimitsResource,
    zoning: ZoningResource,
) -> dg.Output[ValidatedBatch]:
    batch_id = context.partition_key
    store = object_store.store()
    bucket = object_store.imagery_bucket
    manifest_key = f"{batch_id}/{MANIFEST_NAME}"
    started = time.monotonic()
    try:
        info = store.head(bucket, manifest_key)
        if info is None:
            raise ManifestError("does not exist; upload manifest.json last, after the images",
                                file=manifest_key)
        manifest = parse_manifest(store.get_bytes(bucket, manifest_key), name=manifest_key,
                                  batch_id=batch_id)
        # refused here, before anything is published, not when the zones are made
        check_prescription(manifest.prescription, classes=zoning.classes)
        context.log.info(f"Batch {batch_id}: manifest ETag {info.etag} "
                         f"(run requested for {context.run.tags.get(MANIFEST_ETAG_TAG, 'n/a')}), "
                         f"{len(manifest.images)} image(s)")
        sizes: dict[str, int] = {}
        paths = [entry.path for entry in manifest.images]
        if manifest.zones:
            paths.append(manifest.zones)
        for path in paths:
            key = f"{batch_id}/{path}"
            # An upload overwritten under the same name must be read anew: GDAL caches ranges
            # of remote files per process (a re-run in the same process would read old bytes).
            store.invalidate(bucket, key)
            head = store.head(bucket, key)
            if head is None:
                raise ManifestError("is listed in manifest.json but was not uploaded; upload it "
                                    "(then the manifest again)", file=path)
            if head.size == 0:
                raise UnreadableImage("is empty (0 bytes); upload the file again", file=path)
            sizes[path] = head.size
        for entry in manifest.images:
            if entry.sha256 is None:
                continue
            t0 = time.monotonic()
            digest = sha256_of(_read_chunks(store.open_read(bucket, f"{batch_id}/{entry.path}")))
            check_sha256(name=entry.path, expected=entry.sha256, actual=digest)
            context.log.info(f"{entry.path}: sha256 verified ({sizes[entry.path] / 1e6:.1f} MB in "
                             f"{time.monotonic() - t0:.1f} s)")
        batch = validate_images(
            manifest=manifest,
            locate=lambda p: store.gdal_path(bucket, f"{batch_id}/{p}"),
            gdal_options=store.gdal_options(),
            max_pixels=limits.max_pixels,
            manifest_etag=info.etag,
            sizes=sizes,
            zones_geojson=(store.get_bytes(bucket, f"{batch_id}/{manifest.zones}")
                           if manifest.zones else None),
        )
    except ImageryError as exc:
        context.log.error(f"Batch {batch_id} refused: {exc}")
        raise bad_input(context, exc, batch_id) from exc
    except ConfigurationError as exc:  # wrong credentials, missing bucket
        raise misconfigured(context, exc) from exc

    rows = ["| file | size (MB) | CRS | pixel size | width × height | bands | dtype |",
            "|---|---|---|---|---|---|---|"]
    for f in batch.facts:
        rows.append(f"| {f.name} | {f.size_bytes / 1e6:.2f} | {f.crs} | "
                    f"{f.pixel_size[0]:.4g} × {f.pixel_size[1]:.4g} | {f.width} × {f.height} | "
                    f"{', '.join(f.bands)} | {f.dtype} |")
    metadata: dict[str, dg.RawMetadataValue] = {
        "images": dg.MetadataValue.md("\n".join(rows)),
        "image_count": len(batch.facts),
        "total_bytes": sum(f.size_bytes for f in batch.facts),
        "bands": ", ".join(batch.bands),
        "pixel_count": sum(f.width * f.height for f in batch.facts),
        "manifest": dg.MetadataValue.url(store.uri(bucket, manifest_key)),
        "manifest_etag": batch.manifest_etag,
        "auto_report": manifest.auto_report,
        "seconds": round(time.monotonic() - started, 2),
    }
    if batch.grid is not None:
        g = batch.grid
        metadata.update({
            "grid_crs": g.crs.to_string() if hasattr(g.crs, "to_string") else str(g.crs),
            "grid_width": int(g.width), "grid_height": int(g.height),
            "grid_bounds": dg.MetadataValue.json(list(map(float, g.bounds))),
            "pixel_size": dg.MetadataValue.json([abs(float(g.transform.a)),
                                                 abs(float(g.transform.e))]),
        })
    context.log.info(f"Batch {batch_id} valid: {json.dumps(batch.bands)} on "
                     f"{metadata.get('grid_width', '-')} × {metadata.get('grid_height', '-')} grid")
    # Stored by the IO manager: without GDAL options, which carry the store's credentials.
    return dg.Output(batch.with_gdal_options({}), metadata=metadata)
