"""`/analysis-runs` (DESIGN.md §6): a batch's Dagster runs, and reprocessing through Dagster.

Reading: the instance's runs tagged `dagster/partition=<batch_id>` (the same Postgres as the
daemon). Reprocessing submits a run of `process_imagery_batch` for the batch's partition through
Dagster's public GraphQL API (`dagster_graphql.DagsterGraphQLClient.submit_job_execution`, the
webserver at IMAGERY_API_DAGSTER_URL): the webserver builds the run from the code location and
hands it to the run queue, so the daemon launches it like a sensor's or the schedule's run. The
API process itself never loads the code location nor executes a step.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Query, status
from starlette.concurrency import run_in_threadpool

from pipeline.api.auth import require_auth
from pipeline.api.batches import batch_runs
from pipeline.api.context import ApiContext, api_context
from pipeline.api.imagery import checked_batch_id
from pipeline.api.schemas import ErrorOut, RunCreate, RunCreated, RunsOut
from pipeline.cli.status import PARTITION_TAG
from pipeline.core.manifest import MANIFEST_NAME

JOB = "process_imagery_batch"
PARTITIONS = "imagery_batches"
REASON_TAG = "imagery/reprocess_reason"

router = APIRouter(dependencies=[Depends(require_auth)], tags=["runs"],
                   responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.get("/analysis-runs", response_model=RunsOut)
def list_runs(batch_id: str = Query(description="The batch id."),
              ctx: ApiContext = Depends(api_context)) -> RunsOut:
    """The batch's Dagster runs, newest first."""
    checked_batch_id(batch_id)
    return RunsOut(runs=[run for run, _ in batch_runs(ctx.instance, batch_id)])


def submit_run(dagster_url: str, batch_id: str) -> str:
    """Submit `process_imagery_batch` for the partition `batch_id`; the new run's id."""
    from dagster_graphql import DagsterGraphQLClient

    url = urlsplit(dagster_url)
    client = DagsterGraphQLClient(url.hostname or "localhost", port_number=url.port,
                                  use_https=url.scheme == "https",
                                  path_prefix=url.path.rstrip("/"), timeout=60)
    return client.submit_job_execution(JOB, tags={PARTITION_TAG: batch_id, REASON_TAG: "api"})


@router.post("/analysis-runs", status_code=status.HTTP_202_ACCEPTED, response_model=RunCreated,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut},
                        502: {"model": ErrorOut}, 503: {"model": ErrorOut}})
async def create_run(body: RunCreate, ctx: ApiContext = Depends(api_context)) -> RunCreated:
    """Reprocess a batch: a run of `process_imagery_batch` for its partition, through Dagster."""
    batch_id = checked_batch_id(body.batch_id)
    if ctx.store.head(ctx.config.imagery_bucket, f"{batch_id}/{MANIFEST_NAME}") is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"unknown batch {batch_id!r} (no {MANIFEST_NAME})")
    if ctx.instance is not None and not ctx.instance.has_dynamic_partition(PARTITIONS, batch_id):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"batch {batch_id!r} is not registered yet; the upload sensor "
                                   "registers it within its interval, then its first run starts")
    if not ctx.config.dagster_url:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail="reprocessing needs the Dagster webserver: set "
                                   "IMAGERY_API_DAGSTER_URL (e.g. http://dagster-webserver:3000)")
    from dagster_graphql import DagsterGraphQLClientError

    try:
        run_id = await run_in_threadpool(submit_run, ctx.config.dagster_url, batch_id)
    except (DagsterGraphQLClientError, ConnectionError) as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            detail=f"Dagster at {ctx.config.dagster_url} refused the run: "
                                   f"{str(exc)[:300]}") from None
    return RunCreated(run_id=run_id)
