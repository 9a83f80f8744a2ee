"""The browser side (DESIGN.md §6): `/login` and the map viewer `/map/{batch_id}`.

The viewer is one HTML page and the files in `static/` (Leaflet 1.9.4, BSD-2-Clause, vendored
from the npm registry with its LICENSE; the viewer's own JS and CSS): nothing is loaded from a
CDN, and the page's Content-Security-Policy allows this origin only (plus IMAGERY_BASEMAP_URL's
host when a basemap is configured). The page reads `/map/{batch_id}/data.json`: the layers and
their legends, the field outlines (the manifest's zones file, in EPSG:4326) with their statistics
from summary.json, areas in IMAGERY_AREA_UNIT, and the site's previous batch for the swipe.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from pipeline.api.auth import COOKIE, authenticated, known_digest, require_auth, session_cookie
from pipeline.api.context import ApiContext, api_context
from pipeline.api.imagery import checked_batch_id
from pipeline.api.layers import ZONES_LAYER, batch_layers
from pipeline.api.reports import read_summary
from pipeline.core.manifest import MANIFEST_NAME, batch_id_problem
from pipeline.core.units import M2_PER_UNIT
from pipeline.storage import ObjectStoreError

router = APIRouter(tags=["viewer"])
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                "X-Content-Type-Options": "nosniff"}

_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Imagery pipeline</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/viewer.css"></head>
<body class="login"><form method="post" action="/login">
<h1>Imagery pipeline</h1>
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">
<p class="error">{error}</p>
<button type="submit">Sign in</button>
</form></body></html>
"""

_MAP = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{batch} · Imagery pipeline</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/leaflet/leaflet.css">
<link rel="stylesheet" href="/static/viewer.css"></head>
<body data-batch="{batch}" data-basemap="{basemap}">
<div id="map"></div>
<aside id="panel"><h1>{batch}</h1>
<fieldset id="layers"><legend>Layer</legend></fieldset>
<div id="legend"></div>
<div id="swipe-control" hidden><label><input type="checkbox" id="swipe"> Compare with
<span id="previous"></span></label></div>
<div id="field"></div></aside>
<script src="/static/leaflet/leaflet.js"></script>
<script src="/static/viewer.js"></script>
</body></html>
"""


def _safe_next(target: str) -> str:
    """Only this service's own /map/ pages are valid targets after sign-in (no open redirect)."""
    return target if target.startswith("/map/") and "//" not in target and "\\" not in target \
        else "/"


@router.get("/login", response_class=HTMLResponse, include_in_schema=True)
def login_form(next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return HTMLResponse(_LOGIN.format(next=html.escape(_safe_next(next)), error=""),
                        headers=PAGE_HEADERS)


@router.post("/login", response_class=HTMLResponse)
def login(token: str = Form(max_length=4096), next: str = Form("/"),
          ctx: ApiContext = Depends(api_context)):
    """Check the token; set the HttpOnly, SameSite=Strict session cookie and go on."""
    digest = known_digest(ctx, token.strip()) if ctx.config.token_digests else None
    if digest is None:
        return HTMLResponse(_LOGIN.format(next=html.escape(_safe_next(next)),
                                          error="Unknown token."),
                            status_code=status.HTTP_401_UNAUTHORIZED, headers=PAGE_HEADERS)
    response = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(COOKIE, session_cookie(ctx, digest), max_age=ctx.config.session_max_age_s,
                        httponly=True, samesite="strict", path="/",
                        secure=False)  # TLS terminates in front of the service, if at all
    return response


def _csp(ctx: ApiContext) -> str:
    img = "'self' data:"
    if ctx.config.basemap_url:
        parts = urlsplit(ctx.config.basemap_url.replace("{", "").replace("}", ""))
        img += f" {parts.scheme}://{parts.netloc}"
    return (f"default-src 'self'; img-src {img}; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@router.get("/map/{batch_id}", response_class=HTMLResponse)
def map_page(batch_id: str, request: Request, ctx: ApiContext = Depends(api_context)):
    """The map viewer; without a session (or token) a redirect to /login."""
    if not ctx.config.token_digests or not authenticated(request, ctx):
        return RedirectResponse(f"/login?next={quote('/map/' + batch_id, safe='')}",
                                status_code=status.HTTP_303_SEE_OTHER)
    checked_batch_id(batch_id)
    if read_summary(ctx, batch_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"batch {batch_id!r} has no report (yet); nothing to map")
    page = _MAP.format(batch=html.escape(batch_id),
                       basemap=html.escape(ctx.config.basemap_url or ""))
    return HTMLResponse(page, headers={"Content-Security-Policy": _csp(ctx),
                                       "X-Content-Type-Options": "nosniff"})


def _zones_geojson(ctx: ApiContext, batch_id: str) -> dict | None:
    """The manifest's zones file in EPSG:4326 (reprojected from its `crs` member if needed)."""
    store, bucket = ctx.store, ctx.config.imagery_bucket
    try:
        manifest = json.loads(store.get_bytes(bucket, f"{batch_id}/{MANIFEST_NAME}"))
        name = manifest.get("zones")
        if not name:
            return None
        collection = json.loads(store.get_bytes(bucket, f"{batch_id}/{name}"))
    except (ObjectStoreError, ValueError):
        return None
    crs = ((collection.get("crs") or {}).get("properties") or {}).get("name")
    if crs and "4326" not in crs and "CRS84" not in crs.upper():
        from pyproj import Transformer
        from shapely.geometry import mapping, shape
        from shapely.ops import transform

        project = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform
        for feature in collection.get("features", []):
            feature["geometry"] = mapping(transform(project, shape(feature["geometry"])))
        collection.pop("crs", None)
    return collection


def _field_stats(summary: dict, unit: str) -> dict[str, dict]:
    stats = {}
    for zone in summary.get("zones") or []:
        indices = {k: v.get("mean") for k, v in (zone.get("indices") or {}).items()}
        area = zone.get("area_m2")
        stats[zone.get("name")] = {
            "area": None if area is None else area / M2_PER_UNIT[unit],
            "indices": indices, "thermal": zone.get("thermal"),
            "canopy_cover": zone.get("canopy_cover"),
            "change": {k: v.get("mean") for k, v in (zone.get("change") or {}).items()},
        }
    return stats


@router.get("/map/{batch_id}/data.json", dependencies=[Depends(require_auth)])
def map_data(request: Request, batch_id: str = Depends(checked_batch_id),
             ctx: ApiContext = Depends(api_context)) -> JSONResponse:
    """What the viewer shows: layers, legends, field outlines and statistics, previous batch."""
    summary = read_summary(ctx, batch_id)
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"batch {batch_id!r} has no report")
    keys = [o.key for o in ctx.store.list_objects(ctx.config.heatmap_bucket, prefix=f"{batch_id}/")]
    layers = [layer.as_dict() for layer in batch_layers(keys, batch_id, summary)]
    for layer in layers:
        if layer["name"] == ZONES_LAYER:
            classes = (summary.get("management_zones") or {}).get("classes") or []
            layer["classes"] = [c.get("class") for c in classes]
    previous = (summary.get("site") or {}).get("previous_batch_id")
    previous_layers: list[str] = []
    if previous and batch_id_problem(previous) is None:
        prev_summary = read_summary(ctx, previous)
        prev_keys = [o.key for o in ctx.store.list_objects(ctx.config.heatmap_bucket,
                                                           prefix=f"{previous}/")]
        previous_layers = [l.name for l in batch_layers(prev_keys, previous, prev_summary)]
    else:
        previous = None
    grid = summary.get("grid") or {}
    return JSONResponse({
        "batch_id": batch_id, "area_unit": ctx.config.area_unit,
        "bounds_4326": _bounds_4326(grid), "layers": layers,
        "fields": _zones_geojson(ctx, batch_id),
        "field_stats": _field_stats(summary, ctx.config.area_unit),
        "previous": {"batch_id": previous, "layers": previous_layers} if previous else None,
        "basemap_url": ctx.config.basemap_url,
    })


def _bounds_4326(grid: dict) -> list[float] | None:
    bounds, crs = grid.get("bounds"), grid.get("crs")
    if not bounds or not crs:
        return None
    from rasterio.warp import transform_bounds

    return list(transform_bounds(crs, "EPSG:4326", *bounds))
