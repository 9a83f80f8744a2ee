"""The embedded local store's presigned URLs, answered by the API (DESIGN.md §6 on a folder).

S3/MinIO answers its own presigned URLs. A folder cannot, so for `LocalObjectStore` the API does:
`PUT /store/<bucket>/<key>` and `GET /store/<bucket>/<key>` with the `expires`, `size` and
`signature` that `LocalObjectStore.signed_path` issued. The signature is the authorisation (no
bearer token, like S3), and covers method, bucket, key, expiry and the PUT's exact size, so the
URL of one batch's file cannot write another object. PUTs go to the imagery bucket only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, Response

from pipeline.api.context import ApiContext, api_context
from pipeline.api.schemas import ErrorOut
from pipeline.storage import AccessDenied, LocalObjectStore

router = APIRouter(tags=["store"], include_in_schema=False,
                   responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}})


def _local(ctx: ApiContext) -> LocalObjectStore:
    if not isinstance(ctx.store, LocalObjectStore):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail="this API's store is S3: use the URLs it signs directly")
    return ctx.store


def _verify(store: LocalObjectStore, method: str, bucket: str, key: str, request: Request) -> None:
    q = request.query_params
    if "expires" not in q or "signature" not in q:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="not a presigned URL: `expires` and `signature` are missing")
    try:
        store.verify_signed(method, bucket, key, expires=q["expires"], signature=q["signature"],
                            size=q.get("size"))
    except (AccessDenied, ValueError) as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None


@router.put("/store/{bucket}/{key:path}")
async def put_object(bucket: str, key: str, request: Request,
                     ctx: ApiContext = Depends(api_context)) -> Response:
    store = _local(ctx)
    if bucket != ctx.config.imagery_bucket:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="uploads go to the imagery bucket only")
    _verify(store, "PUT", bucket, key, request)
    size = int(request.query_params.get("size", "-1"))
    if size < 0:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the URL carries no `size`")
    received = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body"
        with path.open("wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > size:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                        detail=f"body is larger than the declared {size} bytes")
                out.write(chunk)
        if received != size:
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                detail=f"body has {received} bytes, not the declared {size}")
        info = store.upload_file(bucket, key, path)
    return Response(status_code=200, headers={"ETag": f'"{info.etag}"'})


@router.get("/store/{bucket}/{key:path}")
def get_object(bucket: str, key: str, request: Request,
               ctx: ApiContext = Depends(api_context)) -> FileResponse:
    store = _local(ctx)
    if bucket not in (ctx.config.heatmap_bucket, ctx.config.report_bucket):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only outputs are served")
    _verify(store, "GET", bucket, key, request)
    if store.head(bucket, key) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no object {bucket}/{key}")
    return FileResponse(store.gdal_path(bucket, key), filename=key.rsplit("/", 1)[-1])
