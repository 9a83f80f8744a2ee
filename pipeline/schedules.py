"""`reprocess_stale_batches`: re-runs stale, failed and missing batches, a bounded number per tick.

What qualifies and in which order is decided in `pipeline.reprocess` (Dagster-free); this module
reads the facts from the instance with a fixed number of queries per tick (independent of how many
runs each batch had):

- partitions: the dynamic partitions of `imagery_batches`, in registration order;
- the latest run per partition and its status (`get_run_partition_data`); for failed ones, whether
  it failed for good: tagged `dagster/retry_on_asset_or_op_failure: false` (refused input, a
  misconfiguration or a failed blocking check; `assets.failures`), or only `dg.Failure`s;
- per asset, the storage id of each partition's latest materialization, then those records
  (in pages of 1,000), whose `dagster/code_version` tag is compared with the asset's current one.

Settings, read when the code location loads: REPROCESS_CRON (default `0 2 * * *`, UTC) and
REPROCESS_MAX_RUNS_PER_TICK (default 20). The schedule is RUNNING by default: a deployed formula
change or an outage's failures are repaired without an operator's click, at a bounded rate; stop
it in the UI (Automation → reprocess_stale_batches) to hold reprocessing.

Run keys (`reprocess:<batch>:<reason>:<token>`) make a tick idempotent when the daemon retries it;
across ticks, a batch whose requested run is still queued or running is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from pipeline.jobs import NO_RUN_RETRY_TAGS, process_imagery_batch
from pipeline.partitions import imagery_batches
from pipeline.core.errors import ConfigurationError
from pipeline.reprocess import BatchFacts, select_reprocessing
from pipeline.settings import Settings

DEFAULT_CRON = "0 2 * * *"
REASON_TAG = "imagery/reprocess_reason"
_PAGE = 1000
IN_PROGRESS = frozenset({
    dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.MANAGED,
})


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _materialized_code_versions(instance: dg.DagsterInstance, key: dg.AssetKey,
                                partitions: set[str]) -> dict[str, str | None]:
    """Partition -> code version recorded on its latest materialization of `key`."""
    latest = instance.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    ids = sorted(sid for partition, sid in latest.items() if partition in partitions)
    versions: dict[str, str | None] = {}
    for page in _chunks(ids, _PAGE):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=list(page)), limit=len(page)).records
        for record in records:
            materialization = record.asset_materialization
            if materialization is not None and record.partition_key is not None:
                versions[record.partition_key] = (materialization.tags or {}).get(
                    "dagster/code_version")
    return versions


def _refused_as_bad_input(instance: dg.DagsterInstance, run_id: str) -> bool:
    """True when the run failed for good: tagged so (refused input, misconfiguration, a failed
    blocking check; assets/failures.py), or every step failure is a deliberate `dg.Failure`."""
    run = instance.get_run_by_id(run_id)
    if run is not None and NO_RUN_RETRY_TAGS.items() <= run.tags.items():
        return True
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    data = [f.dagster_event.step_failure_data for f in failures if f.dagster_event]
    return bool(data) and all(d.user_failure_data is not None for d in data)


def _assets(repository_def) -> tuple[dict[str, str], frozenset[str]]:
    """Current code version of each batch asset, and the assets every successful run produces
    (not an optional output such as the report, nor anything downstream of one)."""
    graph = repository_def.asset_graph
    keys = [k for k in graph.toposorted_asset_keys
            if k in graph.materializable_asset_keys
            and graph.get(k).partitions_def == imagery_batches]
    versions, expected = {}, set()
    for key in keys:
        node = graph.get(key)
        if node.code_version is not None:
            versions[key.to_user_string()] = node.code_version
        assets_def = repository_def.assets_defs_by_key[key]
        required = assets_def.node_def.output_def_named(
            assets_def.get_output_name_for_asset_key(key)).is_required
        if required and all(p.to_user_string() in expected for p in node.parent_keys):
            expected.add(key.to_user_string())
    return versions, frozenset(expected)


def site_stale_batches(settings: Settings, log=None) -> dict[str, str]:
    """batch_id -> why its change compares with the wrong flight, from the sites' records in the
    report bucket (DESIGN.md §3.3). An unreachable store is logged and skips this tick's check."""
    from pipeline.core.sites import read_stale
    from resources.object_store import ObjectStoreResource

    try:
        store = ObjectStoreResource.from_settings(settings).store()
        return read_stale(store, settings.report_bucket)
    except Exception as exc:  # the other reasons (failed, missing, code) must still be served
        if log is not None:
            log.warning(f"site records unreadable this tick, stale sites not checked: {exc}")
        return {}


def gather_batch_facts(instance: dg.DagsterInstance, *, asset_keys: Iterable[str],
                       site_stale: dict[str, str] | None = None) -> list[BatchFacts]:
    """What the instance knows about every batch: latest run, latest materializations."""
    partitions = list(instance.get_dynamic_partitions(imagery_batches.name))
    known = set(partitions)
    latest_runs = {d.partition: d for d in instance.get_run_partition_data(dg.RunsFilter())
                   if d.partition in known}
    materialized: dict[str, dict[str, str | None]] = {p: {} for p in partitions}
    for asset in asset_keys:
        for partition, version in _materialized_code_versions(
                instance, dg.AssetKey.from_user_string(asset), known).items():
            materialized[partition][asset] = version
    facts = []
    for order, partition in enumerate(partitions):
        run = latest_runs.get(partition)
        failed = run is not None and run.status == dg.DagsterRunStatus.FAILURE
        facts.append(BatchFacts(
            batch_id=partition, order=order, materialized=materialized[partition],
            latest_run_id=run.run_id if run else None,
            in_progress=run is not None and run.status in IN_PROGRESS, failed=failed,
            bad_input=failed and _refused_as_bad_input(instance, run.run_id),
            site_stale=(site_stale or {}).get(partition)))
    return facts


def build_reprocess_schedule(settings: Settings | None = None) -> dg.ScheduleDefinition:
    """The nightly schedule, on Settings.reprocess_cron, at most reprocess_max_runs_per_tick runs."""
    settings = Settings() if settings is None else settings
    cron, max_runs = settings.reprocess_cron, settings.reprocess_max_runs_per_tick
    _check_cron(cron)

    @dg.schedule(
        name="reprocess_stale_batches",
        job=process_imagery_batch,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Re-runs batches whose latest run failed (not for bad input), that miss an "
        f"asset, whose assets' code version changed, or whose change since the site's previous "
        f"flight compares with the wrong flight; at most {max_runs} per tick, failed and "
        "missing first, oldest first. Skips batches with a queued or running run.",
    )
    def reprocess_stale_batches(context: dg.ScheduleEvaluationContext):
        versions, expected = _assets(context.repository_def)
        facts = gather_batch_facts(context.instance, asset_keys=sorted(set(versions) | expected),
                                   site_stale=site_stale_batches(settings, context.log))
        selection = select_reprocessing(batches=facts, code_versions=versions, expected=expected,
                                        max_runs=max_runs)
        context.log.info(
            f"{len(facts)} batch(es): {selection.due} due for reprocessing, requesting "
            f"{len(selection.requests)} (at most {max_runs} per tick); {selection.in_progress} "
            f"with a run in progress, {selection.refused} refused as bad input (re-upload them)")
        for r in selection.requests:
            context.log.info(f"Reprocess {r.batch_id!r}: {r.reason} ({r.detail})")
        if not selection.requests:
            return dg.SkipReason(f"nothing to reprocess among {len(facts)} batch(es)")
        return [dg.RunRequest(run_key=r.run_key, partition_key=r.batch_id,
                              tags={REASON_TAG: r.reason})
                for r in selection.requests]

    return reprocess_stale_batches


def _check_cron(cron: str) -> None:
    """An invalid REPROCESS_CRON fails the code location load with a message naming the variable."""
    try:
        dg.ScheduleDefinition(name="reprocess_cron_probe", cron_schedule=cron, job_name="probe")
    except Exception as exc:
        raise ConfigurationError(f"{cron!r} is not a valid cron expression ({exc}); use five "
                                 f"fields such as {DEFAULT_CRON!r} (02:00 UTC every night)",
                                 setting="REPROCESS_CRON") from None
