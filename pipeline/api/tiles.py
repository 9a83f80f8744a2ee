"""`GET /tiles/{batch_id}/{layer}/{z}/{x}/{y}.png`: 256² Web-Mercator tiles from the batch's COGs.

Designed around range reads: GDAL opens the COG in the object store (`/vsis3/` or the local path)
and reads only the header and the blocks under the tile, from the overview whose resolution is
the finest not finer than the tile's (so a zoomed-out tile reads a few overview blocks, not the
full-resolution raster). A WarpedVRT reprojects that window to the tile's EPSG:3857 grid
(bilinear for floats, nearest for classes). A tile that does not touch the data is the same fully
transparent PNG, answered without reading any pixel.
"""

from __future__ import annotations

import io
import math
import time
from functools import lru_cache

import numpy as np
import rasterio
from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from pipeline.api.auth import require_auth
from pipeline.api.context import ApiContext, api_context
from pipeline.api.imagery import checked_batch_id
from pipeline.api.layers import Layer, layer_for
from pipeline.api.reports import read_summary
from pipeline.api.schemas import ErrorOut
from pipeline.core.ramps import colour_table, palette_index
from pipeline.storage import ObjectStore

TILE = 256
HALF_WORLD = 20037508.342789244  # EPSG:3857 half extent, metres
MAX_ZOOM = 24
# A found layer is remembered this long, so a map view's dozens of tiles cost one summary read and
# one HEAD, not one per tile; a reprocessed batch shows its new scale after at most this delay.
LAYER_CACHE_S = 30.0
LAYER_CACHE_SIZE = 1024

router = APIRouter(dependencies=[Depends(require_auth)], tags=["tiles"],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut},
                              422: {"model": ErrorOut}})


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of XYZ tile z/x/y in EPSG:3857 metres."""
    size = 2 * HALF_WORLD / (1 << z)
    left, top = -HALF_WORLD + x * size, HALF_WORLD - y * size
    return left, top - size, left + size, top


def _png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def empty_tile() -> bytes:
    return _png(np.zeros((TILE, TILE, 4), dtype=np.uint8))


def _overview_level(src, tile_res_m: float) -> int | None:
    """The coarsest overview still at least as fine as the tile, or None for full resolution."""
    if not src.crs or not src.crs.is_projected:
        return None
    factors = src.overviews(1)
    res = abs(src.transform.a) * (src.crs.linear_units_factor[1] or 1.0)
    # Web-Mercator metres are stretched by 1/cos(lat): compare at the raster's centre latitude.
    lat = transform_bounds(src.crs, "EPSG:4326", *src.bounds)[1::2]
    tile_res_ground = tile_res_m * math.cos(math.radians(sum(lat) / 2))
    level = None
    for i, factor in enumerate(factors):
        if res * factor <= tile_res_ground:
            level = i
    return level


def render_tile(*, store: ObjectStore, bucket: str, layer: Layer, z: int, x: int, y: int) -> bytes:
    """The PNG of one tile of `layer` (its COG must exist)."""
    left, bottom, right, top = tile_bounds(z, x, y)
    path = store.gdal_path(bucket, layer.key)
    with rasterio.Env(**store.gdal_options()):
        with rasterio.open(path) as src:
            data = transform_bounds(src.crs, "EPSG:3857", *src.bounds)
            if data[0] >= right or data[2] <= left or data[1] >= top or data[3] <= bottom:
                return empty_tile()
            level = _overview_level(src, (right - left) / TILE)
            colormap = src.colormap(1) if layer.scale is None else None
        with rasterio.open(path, **({"overview_level": level} if level is not None else {})) as src:
            categorical = layer.scale is None
            nodata = src.nodata if src.nodata is not None else (0 if categorical else math.nan)
            with WarpedVRT(src, crs="EPSG:3857", width=TILE, height=TILE,
                           transform=from_bounds(left, bottom, right, top, TILE, TILE),
                           resampling=Resampling.nearest if categorical else Resampling.bilinear,
                           src_nodata=nodata, nodata=nodata) as vrt:
                values = vrt.read(1)
    if categorical:
        table = np.zeros((256, 4), dtype=np.uint8)
        for value, rgba in (colormap or {}).items():
            table[value] = rgba
        table[int(nodata)] = 0
        rgba = table[values.astype(np.uint8)]
    else:
        values = np.where(values == nodata, np.nan, values) if not math.isnan(nodata) else values
        scale = layer.scale
        rgba = colour_table(scale.ramp)[palette_index(values, vmin=scale.vmin, vmax=scale.vmax)]
    if not rgba[..., 3].any():
        return empty_tile()
    return _png(np.ascontiguousarray(rgba))


@router.get("/tiles/{batch_id}/{layer}/{z}/{x}/{y}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def get_tile(layer: str, batch_id: str = Depends(checked_batch_id),
             z: int = Path(ge=0, le=MAX_ZOOM), x: int = Path(ge=0), y: int = Path(ge=0),
             ctx: ApiContext = Depends(api_context)) -> Response:
    """A 256² PNG tile of a layer on its fixed colour scale; transparent outside the data."""
    if x >= 1 << z or y >= 1 << z:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            detail=f"`x`/`y`: tile {x}/{y} does not exist at zoom {z}")
    bucket = ctx.config.heatmap_bucket
    cached = ctx.tile_layers.get((batch_id, layer))
    if cached is not None and cached[0] > time.monotonic():
        found = cached[1]
    else:
        summary = read_summary(ctx, batch_id)
        found = layer_for(layer, batch_id, summary)
        if found is None or ctx.store.head(bucket, found.key) is None:
            if summary is None and next(iter(ctx.store.list_objects(
                    bucket, prefix=f"{batch_id}/")), None) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND,
                                    detail=f"unknown batch {batch_id!r}")
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                detail=f"batch {batch_id!r} has no layer {layer!r}")
        if len(ctx.tile_layers) > LAYER_CACHE_SIZE:
            ctx.tile_layers.clear()
        ctx.tile_layers[(batch_id, layer)] = (time.monotonic() + LAYER_CACHE_S, found)
    png = render_tile(store=ctx.store, bucket=bucket, layer=found, z=z, x=x, y=y)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
