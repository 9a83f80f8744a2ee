"""Contender 2: the I/O floor -- what any implementation producing the same files must pay.

1. decode: every 512² block of the input (all 5 bands per read), 2 threads with one dataset
   handle each; nothing is computed except the nodata mask of blocks that are partly valid.
2. stage: 6 float32 + 6 RGBA uncompressed tiled (512²) GeoTIFFs written block by block
   (identical to `pipeline.core.cog` staging). Pixel values are NOT computed per block: one
   representative 512² tile of each index and heatmap, computed from a fully valid input block
   near the centre, is written at every valid block (NaN / alpha 0 where the real input mask says
   nodata; fully empty blocks left sparse). DEFLATE compresses each 512² tile on its own, so the
   encode cost per tile equals that of the real data.
3. encode: `pipeline.core.cog.translate_to_cog` (COG driver, `COG_PROFILES`, NUM_THREADS=ALL_CPUS,
   GDAL_CACHEMAX 128 MB) of the 12 staged files, and the 6 PNG previews (`png_preview`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import rasterio
from rasterio.windows import Window

from bench.contenders._common import REFLECTANCE_SCALE, Phases, parse
from pipeline.core.cog import STAGE_BLOCK, translate_to_cog
from pipeline.core.preview import png_preview
from pipeline.core.ramps import colorize
from pipeline.core.registry import available_indices, compute

BLOCK = 512
THREADS = 2


def _decode(path: str) -> tuple[dict[tuple[int, int], np.ndarray | None], np.ndarray]:
    """Decode every block; per block: None if fully valid, its valid mask if partial, absent if
    empty. Also returns one fully valid block (5, 512, 512) near the centre."""
    with rasterio.open(path) as ds:
        width, height = ds.width, ds.height
    starts = [(r, c) for r in range(0, height, BLOCK) for c in range(0, width, BLOCK)]
    centre = (height // 2 // BLOCK * BLOCK, width // 2 // BLOCK * BLOCK)
    masks: dict[tuple[int, int], np.ndarray | None] = {}
    sample: list[np.ndarray] = []
    local = threading.local()

    def read(start: tuple[int, int]) -> None:
        if not hasattr(local, "ds"):
            local.ds = rasterio.open(path)
        r, c = start
        block = local.ds.read(window=Window(c, r, min(BLOCK, width - c), min(BLOCK, height - r)))
        valid = block[0] != 0
        if valid.all():
            masks[start] = None
        elif valid.any():
            masks[start] = valid
        if start == centre:
            sample.append(block)

    with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024), ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(read, starts))
    return masks, sample[0]


def _tiles(sample: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
    import rioxarray  # noqa: F401
    import xarray as xr

    bands = {name: xr.DataArray(sample[i].astype(np.float32) * np.float32(REFLECTANCE_SCALE),
                                dims=("y", "x"))
             for i, name in enumerate(("blue", "green", "red", "red_edge", "nir"))}
    tiles = {}
    for index in available_indices(bands):  # as ours: every index the 5 bands allow
        values = compute(index, bands)
        tiles[index.name] = (values.values, "float32")
        tiles[f"{index.name}_heatmap"] = (colorize(values, scale=index.scale).values, "rgba")
    return tiles


def _stage(path, like: rasterio.DatasetReader, tile: np.ndarray, masks) -> None:
    """Uncompressed tiled stage with the same creation profile as `pipeline.core.cog`."""
    rgba = tile.ndim == 3
    profile = {
        "driver": "GTiff", "width": like.width, "height": like.height, "count": 4 if rgba else 1,
        "dtype": tile.dtype.name, "crs": like.crs, "transform": like.transform,
        "nodata": None if rgba else float("nan"), "tiled": True, "blockxsize": STAGE_BLOCK,
        "blockysize": STAGE_BLOCK, "compress": "NONE", "sparse_ok": True,
        "bigtiff": "IF_NEEDED", "interleave": "band",
    }
    if rgba:
        profile.update(photometric="RGB", alpha="YES")
    with rasterio.open(path, "w", **profile) as dst:
        for (r, c), mask in masks.items():
            h, w = min(BLOCK, like.height - r), min(BLOCK, like.width - c)
            block = tile[..., :h, :w]
            if mask is not None:  # NaN (float) or transparent black (RGBA) where nodata
                block = np.where(mask[:h, :w], block, np.nan if not rgba else 0)
                block = block.astype(tile.dtype)
            dst.write(block, window=Window(c, r, w, h), indexes=[1, 2, 3, 4] if rgba else 1)


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    phases = Phases()
    masks, sample = _decode(str(args.input))
    phases.mark("decode")
    tiles = _tiles(sample)
    staged = {}
    with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024), rasterio.open(args.input) as like:
        for name, (tile, profile) in tiles.items():
            path = args.out / f"{name}.stage.tif"
            _stage(path, like, tile, masks)
            staged[name] = (path, profile)
    phases.mark("stage")
    for name, (path, profile) in staged.items():
        cog = args.out / f"{name}.tif"
        translate_to_cog(path, cog, profile=profile)
        path.unlink()
        phases.mark("cog_translate")
        if profile == "rgba":
            png_preview(cog, args.out / f"{name}.png")
            phases.mark("png")
    phases.done(files=len(staged) + 6)


if __name__ == "__main__":
    main()
