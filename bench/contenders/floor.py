"""Contender 2: the I/O floor -- what any implementation producing the same files must pay.

1. decode: every 512² block of the input (all 5 bands per read), 2 threads with one dataset
   handle each; nothing is computed except the nodata mask of blocks that are partly valid.
2. stage: 6 float32 + 6 paletted uint8 uncompressed tiled (512²) GeoTIFFs written block by block
   (`pipeline.core.cog.Stage`, as the engine stages). Pixel values are NOT computed per block: one
   representative 512² tile of each index and heatmap, computed from a fully valid input block
   near the centre, is written at every valid block (NaN / palette 0 where the real input mask
   says nodata; fully empty blocks left sparse). The codec compresses each 512² tile on its own,
   so the encode cost per tile equals that of the real data.
3. encode: `pipeline.core.cog.translate_to_cog` (COG driver, the production encodings of
   DESIGN.md §3.1: float ZSTD + predictor 3, paletted heatmaps; NUM_THREADS=ALL_CPUS,
   GDAL_CACHEMAX 128 MB) of the 12 staged files, and the 6 PNG previews (`png_preview`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import rasterio
from rasterio.windows import Window

from bench.contenders._common import REFLECTANCE_SCALE, Phases, parse
from pipeline.core.cog import CogEncoding, GridSpec, Stage, translate_to_cog
from pipeline.core.preview import png_preview
from pipeline.core.ramps import palette_index
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
        tiles[index.name] = (values.values, "float32", None)
        tiles[f"{index.name}_heatmap"] = (
            palette_index(values.values, vmin=index.scale.vmin, vmax=index.scale.vmax), "palette",
            index.scale)
    return tiles


def _stage(path, like: rasterio.DatasetReader, tile: np.ndarray, kind: str, scale, masks) -> Stage:
    """Uncompressed tiled stage, exactly as the engine writes them."""
    stage = Stage(path, grid=GridSpec(like.crs, like.transform, like.width, like.height),
                  profile=CogEncoding().profile(kind), scale=scale)
    try:
        for (r, c), mask in masks.items():
            h, w = min(BLOCK, like.height - r), min(BLOCK, like.width - c)
            block = tile[:h, :w]
            if mask is not None:  # NaN (float) or palette 0 where nodata
                block = np.where(mask[:h, :w], block, np.nan if kind == "float32" else 0)
                block = block.astype(tile.dtype)
            stage.write(block, rows=(r, r + h), cols=(c, c + w))
    finally:
        stage.close()
    return stage


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    phases = Phases()
    masks, sample = _decode(str(args.input))
    phases.mark("decode")
    tiles = _tiles(sample)
    staged = {}
    with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024), rasterio.open(args.input) as like:
        for name, (tile, kind, scale) in tiles.items():
            staged[name] = _stage(args.out / f"{name}.stage.tif", like, tile, kind, scale, masks)
    phases.mark("stage")
    for name, stage in staged.items():
        cog = args.out / f"{name}.tif"
        translate_to_cog(stage.path, cog, profile=stage.profile)
        stage.path.unlink()
        phases.mark("cog_translate")
        if stage.profile.kind == "palette":
            png_preview(cog, args.out / f"{name}.png")
            phases.mark("png")
    phases.done(files=len(staged) + 6)


if __name__ == "__main__":
    main()
