"""The embedded-default main job on a generated sample batch (`imagery-pipeline demo`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg

from pipeline.sample import write_sample_batch
from resources.object_store import ObjectStoreResource


def upload_folder(store, bucket: str, batch_id: str, folder: Path, files) -> None:
    """Upload like an uploader does: images first, manifest.json last."""
    store.ensure_bucket(bucket)
    ordered = [f for f in files if f != "manifest.json"] + ["manifest.json"]
    for name in ordered:
        store.upload_file(bucket, f"{batch_id}/{name}", folder / name)


def sensor_tick(definitions: dg.Definitions, instance: dg.DagsterInstance,
                batch_id: str) -> dg.RunRequest:
    """One tick of the upload sensor; returns its run request for `batch_id` and adds the
    batch's partition, as the daemon would."""
    sensor = definitions.resolve_sensor_def("imagery_upload_sensor")
    with dg.build_sensor_context(instance=instance, resources=definitions.resources) as context:
        result = sensor(context)
    requests = [r for r in result.run_requests if r.partition_key == batch_id]
    if not requests:
        raise RuntimeError(f"the sensor did not pick up {batch_id!r}; see the log above")
    instance.add_dynamic_partitions("imagery_batches", [batch_id])
    return requests[0]


def run_demo(*, data_dir: Path, batch_id: str) -> dict:
    os.environ["IMAGERY_DATA_DIR"] = str(data_dir)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # the embedded default: SQLite storage in `home`
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    from pipeline.definitions import defs as load_defs

    definitions = load_defs()
    object_store = ObjectStoreResource.from_env()
    store = object_store.store()
    for bucket in (object_store.imagery_bucket, object_store.heatmap_bucket,
                   object_store.report_bucket):
        store.ensure_bucket(bucket)
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_batch(Path(tmp) / batch_id, batch_id=batch_id)
        upload_folder(store, object_store.imagery_bucket, batch_id, sample.folder, sample.files)

    with dg.DagsterInstance.get() as instance:
        request = sensor_tick(definitions, instance, batch_id)
        job = definitions.resolve_job_def("process_imagery_batch")
        quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        run = job.execute_in_process(instance=instance, partition_key=batch_id, run_config=quiet,
                                     tags=request.tags, raise_on_error=False)
        outputs = []
        for bucket in (object_store.heatmap_bucket, object_store.report_bucket):
            for info in store.list_objects(bucket, prefix=f"{batch_id}/"):
                outputs.append(store.uri(bucket, info.key))
        return {
            "batch_id": batch_id,
            "run_id": run.run_id,
            "success": run.success,
            "dagster_home": str(home),
            "data_dir": str(data_dir),
            "outputs": outputs,
        }
