"""IO managers that publish rasters and reports to object storage (DESIGN.md §1, §3).

Assets hand over either finished local files (`PublishedFiles`, the fast path: the analysis has
already written COGs in one dask pass) or xarray rasters (written as COGs here). Every object is
written whole at its final key (an S3 PUT or completed multipart upload is atomic; the local
store renames a finished temporary file), and objects this asset published in an earlier run but
not in this one are removed, so a re-run replaces an asset's outputs whole. Downstream assets get
`PublishedObjects`: keys, URIs and GDAL paths for lazy range reads, never a download.
"""


import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import xarray as xr

from pipeline.core.analysis import OutputFile
from resources.object_store import ObjectStoreResource

PUBLISHES = "imagery/publishes"  # definition metadata: regex of the object names an asset owns
CONTENT_TYPES = {".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
                 ".png": "image/png", ".pdf": "application/pdf", ".json": "application/json"}


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
    gdal_options: Mapping[str, str] = field(default_factory=dict)

    def open(self, name: str, *, chunks: int = 2048) -> xr.DataArray:
        """A lazy, chunked DataArray of a published raster (GDAL range reads)."""
        import rasterio
        import rioxarray

        with rasterio.Env(**dict(self.gdal_options)):
            return rioxarray.open_rasterio(self.objects[name].gdal_path, chunks=chunks,
                                           lock=False)


def _content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")


class ObjectStoreIOManager(dg.ConfigurableIOManager):
    """Publishes an asset's files to the heatmap or report bucket at `<batch_id>/<name>`."""

    object_store: ObjectStoreResource
    bucket_role: str = "heatmap"  # "heatmap" | "report"

    def _bucket(self) -> str:
        if self.bucket_role == "report":
            return self.object_store.report_bucket
        return self.object_store.heatmap_bucket

    @staticmethod
    def _pattern(metadata: Mapping[str, object] | None) -> re.Pattern[str]:
        raw = (metadata or {}).get(PUBLISHES)
        raw = getattr(raw, "value", raw)
        if not raw:
            raise dg.DagsterInvariantViolationError(
                f"an asset using ObjectStoreIOManager must declare definition metadata {PUBLISHES!r}")
        return re.compile(str(raw))

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        batch_id = context.asset_partition_key
        pattern = self._pattern(context.definition_metadata)
        store = self.object_store.store()
        bucket = self._bucket()
        with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
            files = self._files(obj, Path(tmp))
            published: list[str] = []
            total = 0
            for f in files:
                if not pattern.fullmatch(f.object_name):
                    raise dg.DagsterInvariantViolationError(
                        f"{f.object_name!r} is not an object name this asset publishes "
                        f"({pattern.pattern})")
                key = f"{batch_id}/{f.object_name}"
                t0 = time.monotonic()
                info = store.upload_file(bucket, key, f.path, content_type=_content_type(key))
                store.invalidate(bucket, key)
                total += info.size
                published.append(key)
                context.log.info(f"Published {store.uri(bucket, key)} ({info.size / 1e6:.2f} MB, "
                                 f"{time.monotonic() - t0:.1f} s)")
        stale = [o.key for o in store.list_objects(bucket, prefix=f"{batch_id}/")
                 if pattern.fullmatch(o.key[len(batch_id) + 1:]) and o.key not in published]
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

    @staticmethod
    def _files(obj: object, tmp: Path) -> list[OutputFile]:
        if isinstance(obj, PublishedFiles):
            return list(obj.files)
        if isinstance(obj, xr.DataArray):
            obj = {f"{obj.name}.tif": obj}
        if isinstance(obj, Mapping) and all(isinstance(v, xr.DataArray) for v in obj.values()):
            from pipeline.core.cog import write_cog

            files = []
            for name, da in obj.items():
                profile = "rgba" if str(da.dtype) == "uint8" and da.ndim == 3 else "float32"
                path = tmp / Path(name).name
                write_cog(da, path, profile=profile)
                files.append(OutputFile(name, path, profile))
            return files
        raise TypeError(f"ObjectStoreIOManager publishes PublishedFiles or xarray rasters, "
                        f"not {type(obj).__name__}")

    def load_input(self, context: dg.InputContext) -> PublishedObjects:
        batch_id = context.asset_partition_key
        pattern = self._pattern(context.upstream_output.definition_metadata)
        store = self.object_store.store()
        bucket = self._bucket()
        objects = {}
        for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
            name = info.key[len(batch_id) + 1:]
            if pattern.fullmatch(name):
                objects[name] = PublishedObject(key=info.key, uri=store.uri(bucket, info.key),
                                                gdal_path=store.gdal_path(bucket, info.key),
                                                size=info.size)
        return PublishedObjects(bucket=bucket, objects=objects, gdal_options=store.gdal_options())
