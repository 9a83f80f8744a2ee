"""Thermal plausibility, checked while the batch is validated (DESIGN.md §2).

A thermal image whose converted values are mostly outside -40…150 °C is refused, naming the file
and the unit its values look like, before anything of the batch is computed or published (a wrong
`thermal_unit` otherwise shows only as a thermal_c.tif at -273.15 °C).

Cost: a sample, never the whole image. With overviews (any COG), or when the image is small
(≤ `SMALL_PIXELS`, e.g. a 640 × 512 radiometric frame), one decimated read of at most
`SAMPLE_SIDE`² pixels (GDAL serves it from the smallest fitting overview). A large image without
overviews is sampled as a lattice of `LATTICE`² windows of `WINDOW`² pixels, so at most that many
blocks are decoded (range reads in S3) however large the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
import xarray as xr
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from pipeline.core.errors import ImplausibleThermal
from pipeline.core.sources import _READ_ERRORS, ImageSource, _read_failure
from pipeline.core.thermal import to_celsius

PLAUSIBLE_C = (-40.0, 150.0)
__all__ = ["PLAUSIBLE_C", "ImplausibleThermal", "ThermalSample", "check_thermal_plausible",
           "sample_thermal"]

MOSTLY = 0.5  # refused when more than this fraction of the valid sample is implausible
SAMPLE_SIDE = 256
SMALL_PIXELS = 4_000_000
LATTICE, WINDOW = 8, 32
_KELVIN = 273.15
# (how the values would be declared, DN -> °C scale, offset), in the order they are suggested
_CANDIDATES = (
    ('thermal_unit "celsius"', 1.0, 0.0),
    ('thermal_unit "kelvin"', 1.0, -_KELVIN),
    ('thermal_unit "centikelvin"', 0.01, -_KELVIN),
    ("thermal_scale 0.04 and thermal_offset -273.15 (DJI XT2 / FLIR TIFF)", 0.04, -_KELVIN),
    ("thermal_scale 0.1 and thermal_offset -273.15 (decikelvin)", 0.1, -_KELVIN),
)


@dataclass(frozen=True)
class ThermalSample:
    dn: np.ndarray  # valid digital numbers of the sample, float64, 1-D
    how: str  # "overview", "decimated" or "windows"


def sample_thermal(source: ImageSource) -> ThermalSample:
    """Valid digital numbers of the thermal band of `source`, sampled cheaply (module docstring)."""
    band = source.bands.index("thermal") + 1
    alpha = source.bands.index("alpha") + 1 if "alpha" in source.bands else None
    try:
        with rasterio.Env(**dict(source.gdal_options)), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(source.path) as ds:
                indexes = [band] + ([alpha] if alpha else [])
                overviews = ds.overviews(band)
                if overviews or ds.width * ds.height <= SMALL_PIXELS:
                    factor = max(1.0, max(ds.width, ds.height) / SAMPLE_SIDE)
                    shape = (len(indexes), max(1, int(ds.height / factor)),
                             max(1, int(ds.width / factor)))
                    data = ds.read(indexes, out_shape=shape).reshape(len(indexes), -1)
                    how = "overview" if overviews and factor > 1 else "decimated"
                else:
                    parts = []
                    for i in range(LATTICE):
                        for j in range(LATTICE):
                            h, w = min(WINDOW, ds.height), min(WINDOW, ds.width)
                            row = int((i + 0.5) * ds.height / LATTICE) - h // 2
                            col = int((j + 0.5) * ds.width / LATTICE) - w // 2
                            window = Window(min(max(col, 0), ds.width - w),
                                            min(max(row, 0), ds.height - h), w, h)
                            parts.append(ds.read(indexes, window=window).reshape(len(indexes), -1))
                    data, how = np.concatenate(parts, axis=1), "windows"
                nodata = ds.nodatavals[band - 1]
    except _READ_ERRORS as exc:
        raise _read_failure(source.name, exc) from exc
    dn = data[0].astype(np.float64)
    keep = np.isfinite(dn)
    if nodata is not None:
        keep &= data[0] != np.asarray(nodata).astype(data.dtype)
    if alpha:
        keep &= data[1] != 0
    return ThermalSample(dn=dn[keep], how=how)


def check_thermal_plausible(*, source: ImageSource, unit: str | None, scale: float | None,
                            offset: float | None) -> ThermalSample:
    """Refuse `source` (ImplausibleThermal) when most of its sampled values, converted as the
    manifest says, lie outside PLAUSIBLE_C; the message names the unit the values look like.
    Returns the sample (an image without a valid sampled pixel passes here: the analysis
    refuses an image without any valid pixel)."""
    sample = sample_thermal(source)
    if sample.dn.size == 0:
        return sample
    celsius = to_celsius(xr.DataArray(sample.dn), unit=unit, scale=scale, offset=offset).values
    lo, hi = PLAUSIBLE_C
    outside = float(np.mean(~((celsius >= lo) & (celsius <= hi))))
    if outside <= MOSTLY:
        return sample
    if scale is not None:
        declared = f"thermal_scale {scale} and thermal_offset {offset}"
    else:
        declared = f'thermal_unit "{unit or "celsius"}"' + (" (the default)" if unit is None else "")
    median = float(np.median(sample.dn))
    fits = [name for name, k, b in _CANDIDATES
            if lo <= median * k + b <= hi and name.split(" (")[0] != declared.split(" (")[0]]
    hint = (f"the values (median {median:g}) look like {fits[0]}: set that in manifest.json"
            if fits else f"no usual unit fits the values (median {median:g}); give thermal_scale "
            "and thermal_offset (°C = DN × scale + offset) from the camera's documentation")
    raise ImplausibleThermal(
        f"converted with {declared}, {outside:.0%} of its sampled pixels lie outside "
        f"{lo:g}…{hi:g} °C (median {float(np.median(celsius)):.2f} °C); {hint}",
        file=source.name)
