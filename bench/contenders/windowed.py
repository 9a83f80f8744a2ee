"""Contender 4: the windowed peer -- a block-windowed rasterio script.

For each 512² block window of the input (`src.block_windows(1)`, single-threaded): read the 5
bands, compute the 6 indices with numpy, colour heatmaps with a 256-entry LUT, update streaming
statistics (sums, min/max, a fixed-range histogram of 0.001-wide bins for percentiles), write
each result window into 12 open uncompressed tiled (512²) GeoTIFFs. Then COG-translate each with
GDAL's COG driver (`OLD_PROFILES` options, NUM_THREADS=ALL_CPUS) and write PNG previews from the
COG overviews.
"""

from __future__ import annotations

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, Resampling

from bench.contenders._common import OLD_PROFILES, BANDS, REFLECTANCE_SCALE, Phases, parse
from bench.contenders.naive import FORMULAS
from pipeline.core.ramps import lut
from pipeline.core.registry import INDICES

BINS = (-5.0, 5.0, 10000)


def _open_stage(path, like, *, rgba: bool):
    profile = {"driver": "GTiff", "width": like.width, "height": like.height,
               "count": 4 if rgba else 1, "dtype": "uint8" if rgba else "float32",
               "nodata": None if rgba else float("nan"), "crs": like.crs,
               "transform": like.transform, "tiled": True, "blockxsize": 512,
               "blockysize": 512, "compress": "NONE", "bigtiff": "IF_NEEDED"}
    if rgba:
        profile.update(photometric="RGB", alpha="YES")
    dst = rasterio.open(path, "w", **profile)
    if rgba:
        dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                           ColorInterp.alpha)
    return dst


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    phases = Phases()
    tables = {name: lut(INDICES[name].scale.ramp) for name in FORMULAS}
    acc = {name: {"n": 0, "sum": 0.0, "sumsq": 0.0, "min": np.inf, "max": -np.inf,
                  "hist": np.zeros(BINS[2], np.int64)} for name in FORMULAS}
    with rasterio.Env(GDAL_CACHEMAX=128 * 1024 * 1024), rasterio.open(args.input) as src:
        stages = {}
        for name in FORMULAS:
            stages[name] = _open_stage(args.out / f"{name}.stage.tif", src, rgba=False)
            stages[f"{name}_heatmap"] = _open_stage(args.out / f"{name}_heatmap.stage.tif", src,
                                                    rgba=True)
        for _, window in src.block_windows(1):
            raw = src.read(window=window)
            valid = raw[0] != src.nodata
            bands = {b: np.where(valid, raw[i].astype(np.float32) * np.float32(REFLECTANCE_SCALE),
                                 np.float32(np.nan)) for i, b in enumerate(BANDS)}
            for name, formula in FORMULAS.items():
                num, den = formula(bands)
                with np.errstate(divide="ignore", invalid="ignore"):
                    values = np.where(den != 0, num / den, np.nan).astype(np.float32)
                ok = values[~np.isnan(values)]
                a = acc[name]
                if ok.size:
                    a["n"] += ok.size
                    a["sum"] += float(ok.sum(dtype=np.float64))
                    a["sumsq"] += float(np.square(ok, dtype=np.float64).sum())
                    a["min"], a["max"] = min(a["min"], float(ok.min())), max(a["max"], float(ok.max()))
                    a["hist"] += np.histogram(ok, bins=BINS[2], range=BINS[:2])[0]
                scale = INDICES[name].scale
                t = (np.clip(values, scale.vmin, scale.vmax) - scale.vmin) / (scale.vmax - scale.vmin)
                index = np.minimum(np.nan_to_num(t) * 256, 255).astype(np.intp)
                rgba = np.zeros((4, *values.shape), np.uint8)
                rgba[:3] = np.moveaxis(tables[name][index], -1, 0)
                rgba[:, np.isnan(values)] = 0
                rgba[3][~np.isnan(values)] = 255
                stages[name].write(values, 1, window=window)
                stages[f"{name}_heatmap"].write(rgba, window=window)
        for dst in stages.values():
            dst.close()
        phases.mark("windows")
        for name, dst in stages.items():
            profile = "rgba" if name.endswith("_heatmap") else "float32"
            cog = args.out / f"{name}.tif"
            rasterio.shutil.copy(dst.name, cog, driver="COG", num_threads="ALL_CPUS",
                                 **dict(OLD_PROFILES[profile]["creation"]))
            (args.out / f"{name}.stage.tif").unlink()
            phases.mark("cog_translate")
            if profile == "rgba":
                with rasterio.open(cog) as c:
                    scale = max(1, -(-max(c.width, c.height) // 1024))
                    h, w = c.height // scale, c.width // scale
                    data = c.read(out_shape=(4, h, w), resampling=Resampling.nearest)
                with rasterio.open(args.out / f"{name}.png", "w", driver="PNG", width=w,
                                   height=h, count=4, dtype="uint8") as png:
                    png.write(data)
                phases.mark("png")
    a = acc["ndvi"]
    phases.done(files=18, ndvi_mean=a["sum"] / a["n"])


if __name__ == "__main__":
    main()
