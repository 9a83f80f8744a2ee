"""`imagery-pipeline status`: a batch's state from the object store and, when there is one, the
Dagster instance.

States: `uploading` (objects, no manifest), `waiting` (manifest, no run for it yet), `queued`,
`running`, `failed` (with the failed step's message), `done` (report present, or the latest run
succeeded). The latest run is the newest run tagged `dagster/partition=<batch_id>`; a run started
for an older manifest (tag `imagery/manifest_etag` differs from the manifest's ETag now) does
not count, so a re-uploaded batch reads `waiting` until its new run starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from pipeline.core.manifest import MANIFEST_NAME

PARTITION_TAG = "dagster/partition"
MANIFEST_ETAG_TAG = "imagery/manifest_etag"  # as set by imagery_upload_sensor

_RUN_STATES = {
    "QUEUED": "queued", "NOT_STARTED": "queued", "STARTING": "queued", "MANAGED": "running",
    "STARTED": "running", "SUSPENDED": "running", "CANCELING": "running",
    "SUCCESS": "done", "FAILURE": "failed", "CANCELED": "failed",
}


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str  # DagsterRunStatus name
    manifest_etag: str | None = None
    reason: str | None = None  # the failed step's message, for failed runs


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    state: str
    updated_at: str | None  # ISO time of the manifest, or of the newest object while uploading
    objects: int | None = None  # while uploading: how many objects are there already
    report: bool = False
    run_id: str | None = None
    run_status: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def run_state(status: str) -> str:
    """The batch state a Dagster run status means (`DagsterRunStatus` name)."""
    return _RUN_STATES.get(status, "running")


def _state(*, has_manifest: bool, etag: str | None, report: bool, run: RunInfo | None) -> str:
    if not has_manifest:
        return "uploading"
    if run is not None and (run.manifest_etag is None or run.manifest_etag == etag):
        return run_state(run.status)
    return "done" if report else "waiting"


def batch_statuses(*, store, imagery_bucket: str, report_bucket: str, batch_id: str | None = None,
                   limit: int = 20,
                   latest_run: Callable[[str], RunInfo | None] | None = None) -> list[BatchStatus]:
    """The `limit` most recently updated batches (or just `batch_id`), newest first.

    `store` is an ObjectStore; `latest_run(batch_id)` the newest run of a batch, when an instance
    is available.
    """
    if batch_id is not None:
        ids = [batch_id]
    else:
        ids = [p.rstrip("/") for p in store.list_prefixes(imagery_bucket, delimiter="/")]
    found: list[tuple[datetime | None, str, object, int | None]] = []
    for bid in ids:
        info = store.head(imagery_bucket, f"{bid}/{MANIFEST_NAME}")
        if info is not None:
            found.append((info.last_modified, bid, info, None))
            continue
        objects = list(store.list_objects(imagery_bucket, prefix=f"{bid}/"))
        if objects or batch_id is None:
            newest = max((o.last_modified for o in objects), default=None)
            found.append((newest, bid, None, len(objects)))
        else:
            found.append((None, bid, None, 0))
    found.sort(key=lambda f: (f[0] is not None, f[0] or datetime.min, f[1]), reverse=True)
    statuses = []
    for when, bid, info, count in found[:limit]:
        report = store.head(report_bucket, f"{bid}/report.pdf") is not None
        run = latest_run(bid) if latest_run is not None else None
        state = _state(has_manifest=info is not None, etag=getattr(info, "etag", None),
                       report=report, run=run)
        if info is None and count == 0:
            state = "unknown"
        statuses.append(BatchStatus(
            batch_id=bid, state=state, updated_at=when.isoformat() if when else None,
            objects=count, report=report, run_id=run.run_id if run else None,
            run_status=run.status if run else None,
            reason=run.reason if run and state == "failed" else None,
        ))
    return statuses


def dagster_latest_run(instance) -> Callable[[str], RunInfo | None]:
    """`latest_run` over a DagsterInstance: newest run by partition tag, failure from its events."""
    import dagster as dg

    def latest_run(batch_id: str) -> RunInfo | None:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: batch_id}), limit=1)
        if not runs:
            return None
        run = runs[0]
        reason = None
        if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            reason = failure_reason(instance, run.run_id)
        return RunInfo(run_id=run.run_id, status=run.status.value,
                       manifest_etag=run.tags.get(MANIFEST_ETAG_TAG), reason=reason)

    return latest_run


def failure_reason(instance, run_id: str) -> str | None:
    """The failed step's message of run `run_id` ("<step>: <description>"), or the run failure's
    message; None when the instance recorded neither. Also used by the HTTP API's batch state."""
    import dagster as dg

    for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for entry in reversed(instance.all_logs(run_id, of_type=kind)):
            event = entry.dagster_event
            data = event.step_failure_data if event.is_step_failure else None
            if data is not None and data.user_failure_data is not None \
                    and data.user_failure_data.description:
                return f"{event.step_key}: {data.user_failure_data.description}"
            if data is not None and data.error is not None:
                return f"{event.step_key}: {data.error.message.strip()}"
            if event.message or entry.user_message:
                return event.message or entry.user_message
    return None
