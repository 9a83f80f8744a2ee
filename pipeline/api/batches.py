"""A batch's state and runs, from the object store and the Dagster instance (DESIGN.md §6).

The runs of a batch are the instance's runs tagged `dagster/partition=<batch_id>`, newest first.
A run started for an older manifest (its `imagery/manifest_etag` tag differs from the manifest's
ETag now) does not decide the state, so a batch uploaded again reads `queued` until its new run
starts. A failed run tagged `imagery/refused` (`pipeline.jobs.REFUSED_TAG`, set by
`assets.failures.bad_input` when a step refused the input) makes the batch `refused`, with the
refusal's reason; the failure text alone never does (a "Connection refused: …" is a failure).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.api.schemas import BatchState, RunOut
from pipeline.cli.status import MANIFEST_ETAG_TAG, PARTITION_TAG, failure_reason
from pipeline.core.manifest import MANIFEST_NAME
from pipeline.core.outputs import batch_key, object_name
from pipeline.storage import ObjectStore

RUN_LIMIT = 100
_QUEUED = {"QUEUED", "NOT_STARTED", "STARTING"}
_DONE = {"SUCCESS": "succeeded", "FAILURE": "failed", "CANCELED": "failed"}
REFUSED_MARK = " refused: "  # assets.failures.bad_input: "Batch '<id>' refused: <reason>"


def _time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts else None


def batch_runs(instance: Any | None, batch_id: str) -> list[tuple[RunOut, dict[str, str]]]:
    """The batch's runs, newest first, each with its tags."""
    if instance is None:
        return []
    import dagster as dg

    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: batch_id}),
                                       limit=RUN_LIMIT)
    out = []
    for record in records:
        run = record.dagster_run
        failure = None
        if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            failure = failure_reason(instance, run.run_id)
        out.append((RunOut(run_id=run.run_id, status=run.status.value,
                           started_at=_time(record.start_time), ended_at=_time(record.end_time),
                           failure=failure), dict(run.tags)))
    return out


def batch_known(store: ObjectStore, bucket: str, batch_id: str) -> bool:
    return next(iter(store.list_objects(bucket, prefix=f"{batch_id}/")), None) is not None


def batch_state(*, store: ObjectStore, instance: Any | None, imagery_bucket: str,
                report_bucket: str, batch_id: str) -> BatchState | None:
    """The batch's state, or None when nothing of it is in the store."""
    manifest = store.head(imagery_bucket, f"{batch_id}/{MANIFEST_NAME}")
    if manifest is None and not batch_known(store, imagery_bucket, batch_id):
        return None
    runs = batch_runs(instance, batch_id)
    listed = [run for run, _ in runs]
    if manifest is None:
        return BatchState(batch_id=batch_id, state="uploading", runs=listed)
    current = [(run, tags) for run, tags in runs
               if tags.get(MANIFEST_ETAG_TAG) in (None, manifest.etag)]
    if not current:
        summary = batch_key(batch_id, object_name("summary.json"))
        if instance is None and store.head(report_bucket, summary) is not None:
            return BatchState(batch_id=batch_id, state="succeeded", runs=listed)
        return BatchState(batch_id=batch_id, state="queued", runs=listed)
    run = current[0][0]
    if run.status in _QUEUED:
        return BatchState(batch_id=batch_id, state="queued", runs=listed)
    if run.status not in _DONE:
        return BatchState(batch_id=batch_id, state="running", runs=listed)
    from pipeline.jobs import REFUSED_TAG  # runs come from a Dagster instance: dagster is loaded

    if run.status == "FAILURE" and current[0][1].get(REFUSED_TAG) == "true":
        failure = run.failure or "the input was refused (no reason was recorded)"
        reason = failure.split(REFUSED_MARK, 1)[-1]
        return BatchState(batch_id=batch_id, state="refused", runs=listed, reason=reason)
    state = _DONE[run.status]
    return BatchState(batch_id=batch_id, state=state, runs=listed,
                      reason=run.failure if state == "failed" else None)
