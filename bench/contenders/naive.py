"""Contender 3: the naive peer -- a full-load numpy script, as a Celery task in a seed project.

Reads all bands with `rasterio .read()`, computes the 6 indices with numpy (float32, NaN where
nodata or a denominator is 0), statistics with numpy (nanmean/nanstd/nanmin/nanmax/
nanpercentile), colours heatmaps with matplotlib (`cmap(norm(values), bytes=True)`), and writes
each output with `rasterio.open(..., driver="COG")` using the `OLD_PROFILES` creation options plus
NUM_THREADS=ALL_CPUS, then a decimated PNG preview. One index at a time (the 5 bands stay loaded).
"""

from __future__ import annotations

import numpy as np
import rasterio
from matplotlib import colormaps
from matplotlib.colors import Normalize

from bench.contenders._common import OLD_PROFILES, BANDS, REFLECTANCE_SCALE, Phases, parse
from pipeline.core.registry import INDICES

FORMULAS = {
    "ndvi": lambda b: (b["nir"] - b["red"], b["nir"] + b["red"]),
    "ndre": lambda b: (b["nir"] - b["red_edge"], b["nir"] + b["red_edge"]),
    "gndvi": lambda b: (b["nir"] - b["green"], b["nir"] + b["green"]),
    "savi": lambda b: (1.5 * (b["nir"] - b["red"]), b["nir"] + b["red"] + 0.5),
    "evi": lambda b: (2.5 * (b["nir"] - b["red"]),
                      b["nir"] + 6.0 * b["red"] - 7.5 * b["blue"] + 1.0),
    "vari": lambda b: (b["green"] - b["red"], b["green"] + b["red"] - b["blue"]),
}


def _write_cog(path, data: np.ndarray, profile_name: str, like) -> None:
    p = OLD_PROFILES[profile_name]
    options = {k.lower(): v for k, v in p["creation"].items()}
    count = 1 if data.ndim == 2 else data.shape[0]
    with rasterio.open(path, "w", driver="COG", width=like.width, height=like.height,
                       count=count, dtype=p["dtype"], nodata=p["nodata"], crs=like.crs,
                       transform=like.transform, num_threads="ALL_CPUS", **options) as dst:
        dst.write(data, 1 if data.ndim == 2 else None)


def main() -> None:
    args = parse(__doc__.splitlines()[0])
    phases = Phases()
    with rasterio.open(args.input) as src:
        raw = src.read()
        nodata = raw[0] == src.nodata
        bands = {}
        for i, name in enumerate(BANDS):
            bands[name] = raw[i].astype(np.float32) * np.float32(REFLECTANCE_SCALE)
            bands[name][nodata] = np.nan
        del raw
        phases.mark("read")
        stats = {}
        for name, formula in FORMULAS.items():
            num, den = formula(bands)
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.where(den != 0, num / den, np.nan).astype(np.float32)
            del num, den
            phases.mark("compute")
            p10, p50, p90 = np.nanpercentile(values, [10, 50, 90])
            stats[name] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                           "min": float(np.nanmin(values)), "max": float(np.nanmax(values)),
                           "p10": p10, "p50": p50, "p90": p90,
                           "valid_fraction": float(np.isfinite(values).mean())}
            phases.mark("stats")
            scale = INDICES[name].scale
            rgba = colormaps[scale.ramp](Normalize(scale.vmin, scale.vmax, clip=True)(values),
                                         bytes=True)
            rgba[np.isnan(values)] = 0
            rgba = np.moveaxis(rgba, -1, 0)
            phases.mark("colorize")
            _write_cog(args.out / f"{name}.tif", values, "float32", src)
            del values
            _write_cog(args.out / f"{name}_heatmap.tif", rgba, "rgba", src)
            phases.mark("write_cog")
            step = max(1, -(-max(src.width, src.height) // 1024))
            preview = np.ascontiguousarray(rgba[:, ::step, ::step])
            del rgba
            with rasterio.open(args.out / f"{name}_heatmap.png", "w", driver="PNG",
                               width=preview.shape[2], height=preview.shape[1], count=4,
                               dtype="uint8") as png:
                png.write(preview)
            phases.mark("png")
    phases.done(files=18, ndvi_mean=stats["ndvi"]["mean"])


if __name__ == "__main__":
    main()
