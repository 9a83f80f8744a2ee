"""Helpers for end-to-end tests: the code location wired to a real S3 server or a local folder,
uploads done the way an uploader does them, and Dagster runs through public APIs."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from pipeline.demo import upload_folder


def configure_s3(monkeypatch, server, buckets: dict[str, str]) -> None:
    monkeypatch.setenv("MINIO_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("MINIO_ACCESS_KEY", server.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", server.secret_key)
    monkeypatch.setenv("MINIO_REGION", server.region)
    monkeypatch.setenv("IMAGERY_BUCKET", buckets["imagery"])
    monkeypatch.setenv("HEATMAP_BUCKET", buckets["heatmap"])
    monkeypatch.setenv("REPORT_BUCKET", buckets["report"])


def configure_local(monkeypatch, data_dir: Path) -> None:
    for name in ("MINIO_ENDPOINT_URL", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "IMAGERY_BUCKET",
                 "HEATMAP_BUCKET", "REPORT_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGERY_DATA_DIR", str(data_dir))


def load_definitions() -> dg.Definitions:
    from pipeline.definitions import defs

    return defs()


def object_store(definitions: dg.Definitions):
    """The store as configured by the environment (outside a run, EnvVars are not resolved)."""
    from resources.object_store import ObjectStoreResource

    return ObjectStoreResource.from_env()


def upload_batch(definitions: dg.Definitions, folder: Path, batch_id: str, files) -> None:
    res = object_store(definitions)
    upload_folder(res.store(), res.imagery_bucket, batch_id, folder, files)


def write_manifest(folder: Path, **manifest) -> None:
    (folder / "manifest.json").write_text(json.dumps({"schema_version": 1, **manifest}))


def sensor_tick(definitions: dg.Definitions, instance, cursor: str | None = None) -> dg.SensorResult:
    sensor = definitions.resolve_sensor_def("imagery_upload_sensor")
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources=definitions.resources) as context:
        return sensor(context)


def launch_requested_runs(definitions: dg.Definitions, instance, result: dg.SensorResult,
                          *, assets: list[str] | None = None) -> list[dg.ExecuteInProcessResult]:
    """Do what the daemon does with a SensorResult: add partitions, then run each request."""
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    job = definitions.resolve_job_def("process_imagery_batch")
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    return [
        job.execute_in_process(instance=instance, partition_key=request.partition_key,
                               tags=request.tags, asset_selection=selection, raise_on_error=False)
        for request in result.run_requests
    ]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Everything the UI would show about the run's failed steps."""
    texts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None:
            texts.append(data.user_failure_data.description or "")
        if data.error is not None:
            texts.append(data.error.to_string())
    return "\n".join(texts)
