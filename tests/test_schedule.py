"""`reprocess_stale_batches`, the retry policy and the backfill policy.

Module fixture (embedded local store, a stored test instance with dagster.yaml's run_retries):
five uploaded batches go through the sensor and the real job: `a` and `c` fully, `b` with
auto_report false (no report: an optional output, never "missing"), `d` refused as bad input (a
wrong sha256), `g` refused while validating (thermal_unit kelvin on centikelvin data: implausible
temperatures, refused before anything is published; until issue 13 a blocking check). Then `e`
is registered without a run (missing) and `f` gets a run that failed on an ordinary exception
(failed, retryable).
"""

from __future__ import annotations

import json

import dagster as dg
import pytest
import yaml

from assets.failures import bad_input
from pipeline.core.errors import ChecksumMismatch
from pipeline.jobs import PER_BATCH_BACKFILL, TRANSIENT_RETRY
from pipeline.partitions import imagery_batches
from pipeline.reprocess import FAILED, MISSING, STALE, BatchFacts, select_reprocessing
from pipeline.sample import write_sample_batch
from pipeline.schedules import REASON_TAG
from pipeline.core.errors import ConfigurationError
from pipeline.storage import TransientStoreError
from tests.harness import configure_local, failure_text, launch_requested_runs, load_definitions
from tests.harness import sensor_tick, upload_batch
from tests.processes import REPO


@dg.asset(partitions_def=imagery_batches, name="probe")
def _crashing_probe() -> None:
    raise RuntimeError("worker lost its connection")


def _evaluate(definitions: dg.Definitions, instance) -> list[dg.RunRequest]:
    schedule = definitions.get_schedule_def("reprocess_stale_batches")
    with dg.build_schedule_context(instance=instance,
                                   repository_def=definitions.get_repository_def()) as context:
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def _batches(requests) -> list[tuple[str, str]]:
    return [(r.partition_key, r.tags[REASON_TAG]) for r in requests]


def _with_report_code_version(definitions: dg.Definitions, version: str) -> dg.Definitions:
    """The same code location after a change to the report's code."""
    return definitions.map_asset_specs(
        func=lambda spec: spec.replace_attributes(code_version=version)
        if spec.key == dg.AssetKey("batch_report") else spec)


SHIPPED_RUN_RETRIES = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_retries"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reprocess")
    with pytest.MonkeyPatch.context() as mp, \
            dg.instance_for_test(overrides={"run_retries": SHIPPED_RUN_RETRIES}) as instance:
        configure_local(mp, tmp / "data")
        mp.delenv("REPROCESS_MAX_RUNS_PER_TICK", raising=False)
        mp.delenv("REPROCESS_CRON", raising=False)
        definitions = load_definitions()
        for batch_id in "abcdg":
            sample = write_sample_batch(tmp / batch_id, batch_id=batch_id, size=128)
            manifest = json.loads((sample.folder / "manifest.json").read_text())
            if batch_id == "b":
                manifest["auto_report"] = False
            if batch_id == "d":
                manifest["images"][0]["sha256"] = "0" * 64
            if batch_id == "g":
                manifest["images"][2]["thermal_unit"] = "kelvin"
            (sample.folder / "manifest.json").write_text(json.dumps(manifest))
            upload_batch(definitions, sample.folder, batch_id, sample.files)
        runs = launch_requested_runs(definitions, instance, sensor_tick(definitions, instance))
        outcome = {r.dagster_run.tags["dagster/partition"]: r for r in runs}
        assert all(outcome[b].success for b in "abc"), [failure_text(outcome[b]) for b in "abc"]
        assert not outcome["d"].success and not outcome["g"].success
        instance.add_dynamic_partitions(imagery_batches.name, ["e", "f"])
        crashed = dg.materialize([_crashing_probe], instance=instance, partition_key="f",
                                 raise_on_error=False)
        assert not crashed.success
        yield definitions, instance, mp


def test_schedule__definition_is_nightly_utc_running_by_default(world):
    definitions, _, _ = world
    schedule = definitions.get_schedule_def("reprocess_stale_batches")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "process_imagery_batch"


def test_schedule__requests_failed_then_missing_but_not_bad_input_or_current(world):
    definitions, instance, _ = world
    assert _batches(_evaluate(definitions, instance)) == [("f", FAILED), ("e", MISSING)]


def test_run_retries__failed_for_good_is_not_retried_a_crash_is(world):
    """The daemon's run retries read `dagster/will_retry`, set when the failure is recorded: the
    refused batches are final, the crash is retried."""
    _, instance, _ = world
    latest = {}
    for run in sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(
            r.run_id).create_timestamp):
        latest[run.tags.get("dagster/partition")] = run
    assert {b: latest[b].tags.get("dagster/will_retry") for b in "dgf"} == {
        "d": "false", "g": "false", "f": "true"}
    failures = instance.all_logs(latest["g"].run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == ["imagery_batch"]
    assert "thermal.tif: converted with thermal_unit" in \
        failures[0].dagster_event.step_failure_data.user_failure_data.description
    assert [e.step_key for e in instance.all_logs(
        latest["g"].run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)] == []


def test_schedule__code_version_change_makes_exactly_the_stale_batches_due(world):
    definitions, instance, _ = world
    changed = _with_report_code_version(definitions, "next")
    requests = _evaluate(changed, instance)
    # b has no report (auto_report false), d was refused: neither is stale.
    assert _batches(requests) == [("f", FAILED), ("e", MISSING), ("a", STALE), ("c", STALE)]
    assert all(r.job_name in (None, "process_imagery_batch") for r in requests)
    assert len({r.run_key for r in requests}) == 4


def test_schedule__bound_per_tick_holds_and_keeps_priority(world):
    definitions, instance, mp = world
    mp.setenv("REPROCESS_MAX_RUNS_PER_TICK", "3")
    try:
        bounded = _with_report_code_version(load_definitions(), "next")
    finally:
        mp.delenv("REPROCESS_MAX_RUNS_PER_TICK")
    assert _batches(_evaluate(bounded, instance)) == [("f", FAILED), ("e", MISSING), ("a", STALE)]


def test_schedule__runs_in_progress_are_not_requested_again(world):
    definitions, instance, _ = world
    changed = _with_report_code_version(definitions, "3")
    first = _evaluate(changed, instance)
    job = changed.resolve_job_def("process_imagery_batch")
    queued = []
    # What the daemon does with the first two requests: a run being created, a run started.
    for request, status in zip(first[:2], [dg.DagsterRunStatus.NOT_STARTED,
                                           dg.DagsterRunStatus.STARTED]):
        run = instance.create_run_for_job(
            job_def=job, status=status,
            tags={**request.tags, "dagster/partition": request.partition_key})
        queued.append(run.run_id)
    try:
        second = _evaluate(changed, instance)
        assert _batches(second) == _batches(first)[2:]
        assert not {r.partition_key for r in second} & {r.partition_key for r in first[:2]}
    finally:
        for run_id in queued:
            instance.delete_run(run_id)


def test_schedule__invalid_cron_names_the_variable(world):
    _, _, mp = world
    mp.setenv("REPROCESS_CRON", "every night")
    try:
        with pytest.raises(ConfigurationError, match="REPROCESS_CRON: 'every night' is not a valid cron"):
            load_definitions()
    finally:
        mp.delenv("REPROCESS_CRON")


def test_select_reprocessing__bad_input_is_never_due_but_other_failures_are():
    batches = [BatchFacts("old-bad", 0, {}, "r1", failed=True, bad_input=True),
               BatchFacts("crashed", 1, {"x": "1"}, "r2", failed=True),
               BatchFacts("busy", 2, {}, "r3", in_progress=True),
               BatchFacts("fine", 3, {"x": "1"}, "r4")]
    selection = select_reprocessing(batches=batches, code_versions={"x": "1"},
                                    expected={"x"}, max_runs=10)
    assert [(r.batch_id, r.reason) for r in selection.requests] == [("crashed", FAILED)]
    assert (selection.due, selection.in_progress, selection.refused) == (1, 1, 1)
    assert selection.requests[0].run_key == "reprocess:crashed:failed:r2"


def test_select_reprocessing__oldest_stale_first_and_bounded():
    batches = [BatchFacts(f"b{i}", i, {"x": "1"}, f"r{i}") for i in reversed(range(50))]
    selection = select_reprocessing(batches=batches, code_versions={"x": "2"},
                                    expected={"x"}, max_runs=20)
    assert [r.batch_id for r in selection.requests] == [f"b{i}" for i in range(20)]
    assert selection.due == 50 and {r.reason for r in selection.requests} == {STALE}
    assert "x 1 -> 2" in selection.requests[0].detail


# -- retries and backfills ------------------------------------------------------------------------
def test_definitions__job_retries_transient_errors_and_backfills_one_batch_per_run(world):
    definitions, _, _ = world
    job = definitions.resolve_job_def("process_imagery_batch")
    assert job.op_retry_policy == TRANSIENT_RETRY
    assert TRANSIENT_RETRY.backoff == dg.Backoff.EXPONENTIAL and TRANSIENT_RETRY.jitter is not None
    graph = definitions.get_repository_def().asset_graph
    assert {graph.get(k).backfill_policy for k in graph.materializable_asset_keys} == {
        PER_BATCH_BACKFILL}
    assert PER_BATCH_BACKFILL.max_partitions_per_run == 1


def _attempts_job(fail_with, calls: list[int], *, retry_policy=TRANSIENT_RETRY,
                  fail_times: int = 1) -> dg.JobDefinition:
    """A one-asset job whose asset fails its first `fail_times` attempts with `fail_with` (an
    exception, or a function of the context making one, as the assets raise `bad_input`)."""
    @dg.asset(partitions_def=imagery_batches)
    def flaky(context) -> int:
        calls.append(1)
        if len(calls) <= fail_times:
            raise fail_with(context) if callable(fail_with) else fail_with
        return len(calls)

    job = dg.define_asset_job("flaky_job", selection=[flaky], partitions_def=imagery_batches,
                              op_retry_policy=retry_policy)
    return dg.Definitions(assets=[flaky], jobs=[job]).resolve_job_def("flaky_job")


def _refused(context) -> dg.Failure:
    return bad_input(context, ChecksumMismatch("sha256 differs from manifest.json; upload it again",
                                               file="ortho.tif"), "x")


def test_retry_policy__transient_store_error_is_retried_then_succeeds():
    calls: list[int] = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(imagery_batches.name, ["x"])
        result = _attempts_job(TransientStoreError("503 SlowDown from the object store"),
                               calls).execute_in_process(instance=instance, partition_key="x")
    assert result.success and len(calls) == 2
    assert any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


def test_retry_policy__bad_input_fails_at_once_without_retry():
    calls: list[int] = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(imagery_batches.name, ["x"])
        result = _attempts_job(_refused, calls).execute_in_process(
            instance=instance, partition_key="x", raise_on_error=False)
    assert not result.success and len(calls) == 1
    assert not any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)
    assert "ortho.tif" in failure_text(result)


@pytest.mark.parametrize(("fail_with", "will_retry"), [
    (RuntimeError("server closed the connection unexpectedly"), "true"),
    (_refused, "false"),
], ids=["step-failed-outside-the-input", "bad-input"])
def test_run_retries__shipped_config_retries_failed_steps_but_never_bad_input(fail_with, will_retry):
    """dagster.yaml's run_retries, as shipped: a run whose step failed for a reason outside the
    input is marked for the daemon to retry (row 13: Postgres cut the worker's connection while
    Dagster recorded an output, which no step retry covers); a run that refused its input is not."""
    assert SHIPPED_RUN_RETRIES["enabled"] and SHIPPED_RUN_RETRIES["max_retries"] >= 1
    calls: list[int] = []
    with dg.instance_for_test(overrides={"run_retries": SHIPPED_RUN_RETRIES}) as instance:
        instance.add_dynamic_partitions(imagery_batches.name, ["x"])
        result = _attempts_job(fail_with, calls, retry_policy=None).execute_in_process(
            instance=instance, partition_key="x", raise_on_error=False)
        assert not result.success and len(calls) == 1
        run = instance.get_run_by_id(result.run_id)
    assert run.tags.get("dagster/will_retry") == will_retry, run.tags


# -- observability ---------------------------------------------------------------------------------
def test_progress_log__reports_each_tenth_of_the_tasks_and_the_end():
    import dask
    import dask.array as da

    from resources.dask import ProgressLog

    lines: list[str] = []
    array = da.ones((100, 100), chunks=(10, 10))  # 100 chunks
    with dask.config.set(scheduler="threads", num_workers=2), ProgressLog(lines.append, every_s=0):
        assert float((array * 2).sum().compute()) == 20_000.0
    total = int(lines[0].split()[2])
    assert lines[0] == f"dask: computing {total} task(s)" and total > 100
    progress = [line for line in lines if "%" in line]
    assert 5 <= len(progress) <= 10 and progress[0].startswith("dask: 1")
    assert lines[-1].startswith(f"dask: done, {total}/{total} task(s) in ")
