"""Failures that retrying cannot fix, and how they turn every retry off.

Two retry layers exist. The job's `RetryPolicy` retries a step that raised (pipeline/jobs.py), and
`run_retries` in dagster.yaml retries a failed run from its failed step, including runs whose step
failed outside our code: Postgres cut the connection while Dagster recorded the step's output
(README "Reliability", row 13), or the object store stayed down past the step retries. Neither
layer may retry bad input or a misconfiguration, which would only fail again: the step raises
`dg.Failure(allow_retries=False)`, and the run is tagged `dagster/retry_on_asset_or_op_failure:
false`, which the run-retry decision reads when the run's failure is recorded. A blocking asset
check that fails with ERROR severity fails its step the same way, and is just as final: it judged
outputs that a retry would only compute again.

This module is the one place where the three kinds of `pipeline.core.errors` meet Dagster:
`ImageryError` (bad input) and `ConfigurationError` are final; `TransientError` and anything
unexpected propagate unchanged, so both retry layers apply. Assets wrap their work in
`decided_by_error_kind(context, batch_id)`.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from pipeline.core.errors import ConfigurationError, ImageryError
from pipeline.jobs import NO_RUN_RETRY_TAGS, REFUSED_TAG


def _no_run_retry(context: dg.OpExecutionContext | dg.AssetCheckExecutionContext) -> None:
    context.instance.add_run_tags(context.run.run_id, NO_RUN_RETRY_TAGS)


def _final(context: dg.OpExecutionContext, *, description: str, metadata: dict) -> dg.Failure:
    _no_run_retry(context)
    return dg.Failure(description=description, metadata=metadata, allow_retries=False)


def bad_input(context: dg.OpExecutionContext, exc: ImageryError, batch_id: str) -> dg.Failure:
    """The batch is refused: the input must change, not the weather. The run is tagged refused,
    so no later step of it publishes anything (DESIGN.md §2; resources/io_managers.py)."""
    context.instance.add_run_tags(context.run.run_id, {REFUSED_TAG: "true"})
    return _final(context, description=f"Batch {batch_id!r} refused: {exc}",
                  metadata={"batch_id": batch_id, "file": exc.file or "", "reason": str(exc),
                            "error": type(exc).__name__})


def misconfigured(context: dg.OpExecutionContext, exc: ConfigurationError) -> dg.Failure:
    """Wrong credentials, a missing bucket, an unusable setting: an operator must act."""
    return _final(context, description=f"Configuration: {exc}",
                  metadata={"error": type(exc).__name__, "reason": str(exc),
                            "setting": exc.setting or ""})


@contextmanager
def decided_by_error_kind(context: dg.OpExecutionContext, batch_id: str) -> Iterator[None]:
    """Bad input and misconfiguration raised inside fail the step for good; the rest propagates."""
    try:
        yield
    except ImageryError as exc:
        context.log.error(f"Batch {batch_id} refused: {exc}")
        raise bad_input(context, exc, batch_id) from exc
    except ConfigurationError as exc:
        context.log.error(f"Batch {batch_id}: the deployment is misconfigured: {exc}")
        raise misconfigured(context, exc) from exc


def final_check(context: dg.AssetCheckExecutionContext,
                result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """`result`, after marking the run not to be retried when it fails the (blocking) check."""
    if not result.passed and result.severity == dg.AssetCheckSeverity.ERROR:
        _no_run_retry(context)
    return result
