"""The app factory of `imagery-pipeline serve`: routers, JSON errors, size limit, metrics.

Every error is JSON `{"detail": "..."}`: validation errors name the field (`body.images.0.path`)
and say what is wrong; an unexpected exception is logged here and answered 500 with an opaque
detail, never a stack trace. Bodies larger than `ApiConfig.max_body_bytes` are refused with 413
before a route reads them (the local store's signed PUTs have their own, signed, size instead).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.api import imagery, reports, runs, store_urls, tiles, viewer
from pipeline.api.auth import require_auth
from pipeline.api.context import ApiConfig, ApiContext
from pipeline.api.metrics import build_registry
from pipeline.api.schemas import ErrorOut, Health
from pipeline.storage import ObjectStore, ObjectStoreError

log = logging.getLogger("pipeline.api")


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return ".".join(parts) or "(body)"


def _validation_detail(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        msg = str(error.get("msg", "")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            msg = "is not a field of this request; remove it or check its spelling"
        elif error.get("type") == "missing":
            msg = "is required"
        elif error.get("type") == "json_invalid":
            msg = "is not valid JSON"
        problems.append(f"`{_field(tuple(error.get('loc', ())))}` {msg}")
    return "; ".join(problems)


class BodyLimit:
    """ASGI middleware: 413 for a body above `limit` bytes, by Content-Length or while streaming."""

    def __init__(self, app, *, limit: int, exempt: tuple[str, ...]) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"detail": f"the request body is larger than {self.limit} "
                                            "bytes"}, status_code=413)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await too_large(scope, receive, send)
                return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await too_large(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(*, config: ApiConfig, store: ObjectStore, instance: Any | None = None) -> FastAPI:
    """The ASGI app of DESIGN.md §6 over `store` and (optionally) a Dagster instance."""
    app = FastAPI(title="Imagery pipeline API", version="1",
                  description="Uploads, status, reports, map tiles and viewer (DESIGN.md §6). "
                              "Send `Authorization: Bearer <token>`.",
                  responses={401: {"model": ErrorOut}})
    ctx = ApiContext(config=config, store=store, instance=instance)
    app.state.api = ctx
    registry, requests = build_registry(ctx)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        status_code = 500  # an exception no handler answered becomes a 500 outside
        try:
            response = await call_next(request)
            status_code = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            requests.labels(template, request.method, str(status_code)).inc()

    app.add_middleware(BodyLimit, limit=config.max_body_bytes, exempt=("/store/",))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(ObjectStoreError)
    async def store_error(request: Request, exc: ObjectStoreError) -> JSONResponse:
        log.error("object store error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "the object store failed; try again later"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"},
                            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> Health:
        """Liveness, without a token."""
        return Health(ok=True)

    @app.get("/metrics", response_class=Response, tags=["service"],
             dependencies=[Depends(require_auth)])
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for module in (imagery, runs, reports, tiles, viewer, store_urls):
        app.include_router(module.router)
    static = resources.files("pipeline.api") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
