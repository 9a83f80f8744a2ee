"""IO managers that publish rasters and reports to object storage (DESIGN.md §1, §3).

Assets hand over finished local files (`PublishedFiles`); which asset may publish which object is
the catalogue's (`pipeline.core.outputs`), so an asset can neither publish nor delete another's
objects. Every object is
written whole at its final key (an S3 PUT or completed multipart upload is atomic; the local
store renames a finished temporary file), and objects this asset published in an earlier run but
not in this one are removed, so a re-run replaces an asset's outputs whole. Downstream assets get
`PublishedObjects`: keys, URIs and GDAL paths for lazy range reads, never a download.
"""


import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from pipeline.core.analysis import OutputFile
from pipeline.core.outputs import batch_key, lookup, producer_of
from pipeline.jobs import REFUSED_TAG
from resources.object_store import ObjectStoreResource


@dataclass(frozen=True)
class PublishedFiles:
    """Finished local files, handed to the IO manager to publish under `<batch_id>/`."""

    files: tuple[OutputFile, ...] = ()
    note: str = ""  # why there are no files, when there are none


@dataclass(frozen=True)
class PublishedObject:
    key: str
    uri: str
    gdal_path: str
    size: int


@dataclass(frozen=True)
class PublishedObjects:
    """What an asset published, as a downstream asset sees it."""

    bucket: str
    objects: dict[str, PublishedObject] = field(default_factory=dict)  # object name -> object
    # Not in the repr: it holds the object store's secret key.
    gdal_options: Mapping[str, str] = field(default_factory=dict, repr=False)


def _refuse_if_batch_refused(context: dg.OutputContext, batch_id: str) -> None:
    """A refused batch publishes nothing (DESIGN.md §2): once any step of the run refused the batch
    (assets/failures.py `bad_input` tags the run), no later step's output is published, whatever
    asset it comes from (the in-process executor goes on with steps independent of the failed one,
    e.g. the index maps after the thermal frame was refused)."""
    try:
        instance, run_id = context.step_context.instance, context.run_id
    except dg.DagsterInvariantViolationError:  # built outside a run (direct IO manager tests)
        return
    run = instance.get_run_by_id(run_id)
    if run is not None and run.tags.get(REFUSED_TAG) == "true":
        raise dg.Failure(
            description=f"Batch {batch_id!r} was refused by an earlier step of this run; "
                        f"{context.asset_key.to_user_string()} is not published",
            allow_retries=False)


def _content_type(name: str) -> str:
    found = lookup(name)
    return found[0].media_type if found else "application/octet-stream"


class ObjectStoreIOManager(dg.ConfigurableIOManager):
    """Publishes an asset's files to the heatmap or report bucket at `<batch_id>/<name>`."""

    object_store: ObjectStoreResource
    bucket_role: str = "heatmap"  # "heatmap" | "report"

    def _bucket(self) -> str:
        if self.bucket_role == "report":
            return self.object_store.report_bucket
        return self.object_store.heatmap_bucket

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        batch_id = context.asset_partition_key
        _refuse_if_batch_refused(context, batch_id)
        asset = context.asset_key.to_user_string()
        store = self.object_store.store()
        bucket = self._bucket()
        if not isinstance(obj, PublishedFiles):
            raise TypeError(f"ObjectStoreIOManager publishes PublishedFiles, not {type(obj).__name__}")
        published: list[str] = []
        total = 0
        for f in obj.files:
            if producer_of(f.object_name) != asset:
                raise dg.DagsterInvariantViolationError(
                    f"{f.object_name!r} is not an object that {asset} publishes (the catalogue, "
                    f"pipeline/core/outputs.py, gives it to {producer_of(f.object_name)})")
            key = batch_key(batch_id, f.object_name)
            t0 = time.monotonic()
            info = store.upload_file(bucket, key, f.path, content_type=_content_type(f.object_name),
                                     move=True)  # the run's own file, no longer needed
            store.invalidate(bucket, key)
            total += info.size
            published.append(key)
            context.log.info(f"Published {store.uri(bucket, key)} ({info.size / 1e6:.2f} MB, "
                             f"{time.monotonic() - t0:.1f} s)")
        stale = [o.key for o in store.list_objects(bucket, prefix=f"{batch_id}/")
                 if producer_of(o.key[len(batch_id) + 1:]) == asset and o.key not in published]
        for key in stale:
            store.delete(bucket, key)
            store.invalidate(bucket, key)
            context.log.info(f"Removed {store.uri(bucket, key)}, which this run no longer produces")
        note = getattr(obj, "note", "")
        context.add_output_metadata({
            "objects": dg.MetadataValue.md("\n".join(f"- `{store.uri(bucket, k)}`" for k in published)
                                           or f"_nothing published_ {note}".strip()),
            "object_count": len(published),
            "bytes": total,
        })

    def load_input(self, context: dg.InputContext) -> PublishedObjects:
        batch_id = context.asset_partition_key
        asset = context.upstream_output.asset_key.to_user_string()
        store = self.object_store.store()
        bucket = self._bucket()
        objects = {}
        for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
            name = info.key[len(batch_id) + 1:]
            if producer_of(name) == asset:
                objects[name] = PublishedObject(key=info.key, uri=store.uri(bucket, info.key),
                                                gdal_path=store.gdal_path(bucket, info.key),
                                                size=info.size)
        return PublishedObjects(bucket=bucket, objects=objects, gdal_options=store.gdal_options())
