"""Uploads through the API (DESIGN.md §6): `POST /imagery` hands out presigned PUT URLs for the
declared files, `POST /imagery/{id}/complete` checks them and writes manifest.json last, and
`GET /imagery/{id}` tells the batch's state.

Between the two POSTs the request (manifest + declared sizes) waits under the batch's own prefix
as `_upload_request.json`; `/complete` deletes it after the manifest is written. Every key the API
writes or signs is `<batch_id>/<path>` with a validated batch id and a manifest-safe path, so
nothing a caller sends can name an object outside the batch's prefix.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

from pipeline.api.auth import require_auth
from pipeline.api.batches import batch_state
from pipeline.api.context import UPLOAD_URL_EXPIRES_S, ApiContext, api_context
from pipeline.api.schemas import (
    UPLOAD_REQUEST_NAME,
    BatchState,
    ErrorOut,
    ImageryCompleted,
    ImageryCreate,
    ImageryCreated,
    UploadUrl,
)
from pipeline.core.manifest import BATCH_ID_PATTERN, MANIFEST_NAME, batch_id_problem
from pipeline.storage import LocalObjectStore, ObjectStoreError

router = APIRouter(dependencies=[Depends(require_auth)], tags=["imagery"],
                   responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}})

BatchId = Path(description="The batch id (DESIGN.md §1).", max_length=200)


def checked_batch_id(batch_id: str = BatchId) -> str:
    problem = batch_id_problem(batch_id)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"`batch_id`: {problem} ({batch_id!r}); use "
                                   f"{BATCH_ID_PATTERN} without '..'")
    return batch_id


def upload_url(ctx: ApiContext, request: Request, key: str, size: int) -> str:
    """A presigned PUT for `key` in the imagery bucket: S3's own, or this API's for a folder."""
    store, bucket = ctx.store, ctx.config.imagery_bucket
    if isinstance(store, LocalObjectStore):
        path = store.signed_path("PUT", bucket, key, expires_s=UPLOAD_URL_EXPIRES_S, size=size)
        return f"{str(request.base_url).rstrip('/')}/{path}"
    return store.presigned_put(bucket, key, expires_s=UPLOAD_URL_EXPIRES_S)


@router.post("/imagery", status_code=status.HTTP_201_CREATED, response_model=ImageryCreated,
             responses={409: {"model": ErrorOut}})
def create_upload(body: ImageryCreate, request: Request,
                  ctx: ApiContext = Depends(api_context)) -> ImageryCreated:
    """Start an upload: validate the manifest (DESIGN.md §2) and answer one presigned PUT URL
    (15 min) per declared file; then PUT every file and call `/imagery/{batch_id}/complete`."""
    bucket, batch_id = ctx.config.imagery_bucket, body.batch_id
    if ctx.store.head(bucket, f"{batch_id}/{MANIFEST_NAME}") is not None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"`batch_id` {batch_id!r} is already complete (its "
                                   f"{MANIFEST_NAME} exists); choose a new batch id")
    ctx.store.put_bytes(bucket, f"{batch_id}/{UPLOAD_REQUEST_NAME}",
                        body.model_dump_json(exclude_none=True).encode(),
                        content_type="application/json")
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=UPLOAD_URL_EXPIRES_S)
    uploads = [UploadUrl(path=f.path, url=upload_url(ctx, request, f"{batch_id}/{f.path}", f.size),
                         headers={}, expires_at=expires_at) for f in body.files]
    return ImageryCreated(batch_id=batch_id, uploads=uploads)


@router.post("/imagery/{batch_id}/complete", status_code=status.HTTP_202_ACCEPTED,
             response_model=ImageryCompleted,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def complete_upload(batch_id: str = Depends(checked_batch_id),
                    ctx: ApiContext = Depends(api_context)) -> ImageryCompleted:
    """Check that every declared file is there with its size, then write manifest.json (last),
    which the pipeline's sensor picks up."""
    store, bucket = ctx.store, ctx.config.imagery_bucket
    manifest_key = f"{batch_id}/{MANIFEST_NAME}"
    try:
        request = json.loads(store.get_bytes(bucket, f"{batch_id}/{UPLOAD_REQUEST_NAME}"))
    except ObjectStoreError:
        if store.head(bucket, manifest_key) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail=f"batch {batch_id!r} is already complete") from None
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"no upload was started for batch {batch_id!r}; "
                                   "POST /imagery first") from None
    body = ImageryCreate.model_validate(request)
    problems = []
    for declared in body.files:
        info = store.head(bucket, f"{batch_id}/{declared.path}")
        if info is None:
            problems.append(f"{declared.path} is missing")
        elif info.size != declared.size:
            problems.append(f"{declared.path} has {info.size} bytes, not the declared "
                            f"{declared.size}")
    if problems:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"batch {batch_id!r} is not complete: {'; '.join(problems)}; "
                                   "PUT the files (new URLs: POST /imagery again)")
    manifest = json.dumps(body.manifest(), indent=2).encode()
    store.put_bytes(bucket, manifest_key, manifest, content_type="application/json")
    store.delete(bucket, f"{batch_id}/{UPLOAD_REQUEST_NAME}")
    return ImageryCompleted(batch_id=batch_id, manifest=store.uri(bucket, manifest_key))


@router.get("/imagery/{batch_id}", response_model=BatchState, responses={404: {"model": ErrorOut}})
def get_batch(batch_id: str = Depends(checked_batch_id),
              ctx: ApiContext = Depends(api_context)) -> BatchState:
    """The batch's state and its Dagster runs, newest first."""
    found = batch_state(store=ctx.store, instance=ctx.instance,
                        imagery_bucket=ctx.config.imagery_bucket,
                        report_bucket=ctx.config.report_bucket, batch_id=batch_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown batch {batch_id!r}")
    return found
