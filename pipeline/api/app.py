"""The app factory of `imagery-pipeline serve`: auth, routers, JSON errors, size limit, metrics.

Authentication comes first (`RequireAuth`, DESIGN.md §6): a request without a valid bearer token
or session cookie is answered 401 JSON (a `/map/…` page: a redirect to /login) before routing,
before the size limit and before any body is read, so a malformed or oversized body without a
token is a 401 too, and nothing else happens. Exempt: /healthz, /login, the viewer's static files
and the local store's signed /store/ URLs (their signature is the authorisation). The OpenAPI
document needs a token like every other route; there are no /docs or /redoc pages.

The access log (uvicorn's `uvicorn.access` logger) never holds a signed /store/ URL's query
string: its `signature` is a bearer capability for 15 min (PUT) or 1 h (GET); `RedactSignedUrls`
keeps the path and drops the query.

Every error is JSON `{"detail": "..."}`: validation errors name the field (`body.images.0.path`)
and say what is wrong; an unexpected exception is logged here and answered 500 with an opaque
detail, never a stack trace. Bodies larger than `ApiConfig.max_body_bytes` are refused with 413
before a route reads them (the local store's signed PUTs have their own, signed, size instead).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pipeline.api import imagery, reports, runs, store_urls, tiles, viewer
from pipeline.api.auth import auth_problem, require_auth
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


class RedactSignedUrls(logging.Filter):
    """Logging filter: a logged request line's `/store/…?expires=…&signature=…` loses its query
    string (uvicorn logs `client, method, path?query, http version, status` as arguments)."""

    @staticmethod
    def _redacted(value):
        if isinstance(value, str) and "/store/" in value and "?" in value:
            return value.split("?", 1)[0] + "?(signed; not logged)"
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._redacted(arg) for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = self._redacted(record.msg)
        return True


def redact_access_log(logger: str = "uvicorn.access") -> None:
    """Install `RedactSignedUrls` on `logger` once (uvicorn's logging config keeps it)."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, RedactSignedUrls) for f in target.filters):
        target.addFilter(RedactSignedUrls())


PUBLIC_PATHS = frozenset({"/healthz", "/login"})
PUBLIC_PREFIXES = ("/static/", "/store/")  # /store/: the URL's signature is the authorisation


def login_redirect(path: str) -> RedirectResponse:
    """A `/map/…` request without a session: to /login, then back to that batch's map page."""
    parts = path.split("/")  # "", "map", batch_id, ...
    target = f"/map/{parts[2]}" if len(parts) > 2 and parts[2] else "/"
    return RedirectResponse(f"/login?next={quote(target, safe='')}",
                            status_code=status.HTTP_303_SEE_OTHER)


class RequireAuth:
    """ASGI middleware: DESIGN.md §6 auth before anything else happens (see the module doc)."""

    def __init__(self, app, *, ctx: ApiContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        problem = auth_problem(Request(scope), self.ctx)  # headers and cookies; no body read
        if problem is None:
            await self.app(scope, receive, send)
            return
        if path.startswith("/map/"):
            response = login_redirect(path)
        else:
            response = JSONResponse({"detail": problem}, status_code=status.HTTP_401_UNAUTHORIZED,
                                    headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _route_template(app: FastAPI, scope) -> str:
    """The route a request was for, also when it was answered before routing (401, 413)."""
    route = scope.get("route")
    if route is None:
        for candidate in app.router.routes:
            if candidate.matches(scope)[0] == Match.FULL:
                route = candidate
                break
    return getattr(route, "path", None) or "(unmatched)"


def create_app(*, config: ApiConfig, store: ObjectStore, instance: Any | None = None) -> FastAPI:
    """The ASGI app of DESIGN.md §6 over `store` and (optionally) a Dagster instance."""
    app = FastAPI(title="Imagery pipeline API", version="1",
                  description="Uploads, status, reports, map tiles and viewer (DESIGN.md §6). "
                              "Send `Authorization: Bearer <token>`.",
                  responses={401: {"model": ErrorOut}},
                  openapi_url=None, docs_url=None, redoc_url=None)  # /openapi.json: below
    ctx = ApiContext(config=config, store=store, instance=instance)
    app.state.api = ctx
    redact_access_log()
    registry, requests = build_registry(ctx)

    async def count_requests(request: Request, call_next):
        status_code = 500  # an exception no handler answered becomes a 500 outside
        try:
            response = await call_next(request)
            status_code = response.status_code
            return response
        finally:
            template = _route_template(app, request.scope)
            requests.labels(template, request.method, str(status_code)).inc()

    # The last added runs first: count every request, then auth, then the size limit, then route.
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, exempt=("/store/",))
    app.add_middleware(RequireAuth, ctx=ctx)
    app.middleware("http")(count_requests)

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

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_auth)])
    def openapi() -> JSONResponse:
        """The OpenAPI document of this API (with a token, like every route but §6's few)."""
        return JSONResponse(app.openapi())

    for module in (imagery, runs, reports, tiles, viewer, store_urls):
        app.include_router(module.router)
    static = resources.files("pipeline.api") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
