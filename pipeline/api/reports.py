"""`GET /reports/{batch_id}` (DESIGN.md §6): summary.json and presigned GET links (1 h) for
report.pdf and every COG and PNG of the batch."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request, status

from pipeline.api.auth import require_auth
from pipeline.api.context import REPORT_URL_EXPIRES_S, ApiContext, api_context
from pipeline.api.imagery import checked_batch_id
from pipeline.api.schemas import ErrorOut, ReportOut
from pipeline.core.outputs import Kind, batch_key, lookup, object_name
from pipeline.storage import LocalObjectStore, ObjectStoreError

router = APIRouter(dependencies=[Depends(require_auth)], tags=["reports"],
                   responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}})
LINKED_KINDS = (Kind.FLOAT_COG, Kind.PALETTE_COG, Kind.PNG)


def download_url(ctx: ApiContext, request: Request, bucket: str, key: str) -> str:
    store = ctx.store
    if isinstance(store, LocalObjectStore):
        path = store.signed_path("GET", bucket, key, expires_s=REPORT_URL_EXPIRES_S)
        return f"{str(request.base_url).rstrip('/')}/{path}"
    return store.presigned_get(bucket, key, expires_s=REPORT_URL_EXPIRES_S)


def read_summary(ctx: ApiContext, batch_id: str) -> dict | None:
    try:
        return json.loads(ctx.store.get_bytes(ctx.config.report_bucket,
                                              batch_key(batch_id, object_name("summary.json"))))
    except ObjectStoreError:
        return None


@router.get("/reports/{batch_id}", response_model=ReportOut, responses={404: {"model": ErrorOut}})
def get_report(request: Request, batch_id: str = Depends(checked_batch_id),
               ctx: ApiContext = Depends(api_context)) -> ReportOut:
    """The batch's summary.json and links to its report and rasters."""
    summary = read_summary(ctx, batch_id)
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"batch {batch_id!r} has no report (yet); see "
                                   f"GET /imagery/{batch_id}")
    reports, heatmaps = ctx.config.report_bucket, ctx.config.heatmap_bucket
    links = {}
    pdf = object_name("report.pdf")
    if ctx.store.head(reports, batch_key(batch_id, pdf)) is not None:
        links[pdf] = download_url(ctx, request, reports, batch_key(batch_id, pdf))
    for info in ctx.store.list_objects(heatmaps, prefix=f"{batch_id}/"):
        name = info.key[len(batch_id) + 1:]
        found = lookup(name)
        if found is not None and found[0].kind in LINKED_KINDS:
            links[name] = download_url(ctx, request, heatmaps, info.key)
    return ReportOut(summary=summary, links=links)
