"""Streaming statistics against numpy over the same pixels (DESIGN.md §3 accuracy)."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.stats import (
    Bins,
    LazyStats,
    block_table,
    finalize,
    finalize_thermal,
    finalize_zone,
    lazy_stats,
    zone_area_m2,
    zone_classes,
)

NDVI_CLASSES = [("bare", -1.0, 0.2), ("stressed", 0.2, 0.4), ("moderate", 0.4, 0.6),
                ("healthy", 0.6, 1.0)]


def _da(values, chunks):
    return xr.DataArray(dsa.from_array(values, chunks=chunks), dims=("y", "x"))


def _check(summary, values):
    v = values[np.isfinite(values)].astype(np.float64)
    for key, exact in (("mean", v.mean()), ("std", v.std()), ("min", v.min()), ("max", v.max())):
        assert summary[key] == pytest.approx(exact, rel=1e-4, abs=1e-7), key
    for key, q in (("p10", 10), ("p50", 50), ("p90", 90)):
        assert abs(summary[key] - np.percentile(v, q)) <= 0.005, key


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 90), st.integers(1, 90)),
    chunk=st.integers(1, 40),
    nan_fraction=st.floats(0.0, 0.9),
    spread=st.floats(0.001, 1.0),
)
def test_lazy_stats__matches_numpy_for_random_data_and_chunks(seed, shape, chunk, nan_fraction,
                                                             spread):
    rng = np.random.default_rng(seed)
    values = np.clip(rng.normal(rng.uniform(-0.5, 0.5), spread, shape), -1, 1).astype(np.float32)
    values[rng.random(shape) < nan_fraction] = np.nan
    values.flat[0] = 0.3  # at least one valid pixel
    lazy = lazy_stats(_da(values, chunk), lo=-1.0, hi=1.0, bins=2000)
    assert isinstance(lazy.sums, dsa.Array) and isinstance(lazy.extrema, dsa.Array)
    (parts,) = dask.compute(lazy)
    summary = finalize(parts, grid_pixels=values.size, pixel_area_m2=0.04, classes=NDVI_CLASSES)
    _check(summary, values)
    v = values[np.isfinite(values)]
    assert summary["valid_fraction"] == pytest.approx(v.size / values.size, rel=1e-9)
    assert summary["valid_area_m2"] == pytest.approx(v.size * 0.04, rel=1e-9)
    fractions = [c["fraction"] for c in summary["classes"]]
    expected = [np.mean((v >= lo) & (v < hi)) for _, lo, hi in NDVI_CLASSES[:-1]]
    expected.append(np.mean(v >= 0.6))
    np.testing.assert_allclose(fractions, expected, atol=1e-3)
    assert sum(fractions) == pytest.approx(1.0)


def test_finalize__exact_keys_and_class_areas():
    values = np.array([[-0.5, 0.1, 0.25, 0.5], [0.7, 1.0, np.nan, 0.45]], dtype=np.float32)
    (parts,) = dask.compute(lazy_stats(_da(values, 2), lo=-1, hi=1, bins=2000))
    summary = finalize(parts, grid_pixels=8, pixel_area_m2=2.0, classes=NDVI_CLASSES)
    assert set(summary) == {"mean", "std", "min", "max", "p10", "p50", "p90", "valid_fraction",
                            "valid_area_m2", "classes"}
    assert [(c["name"], c["area_m2"]) for c in summary["classes"]] == [
        ("bare", pytest.approx(4.0)), ("stressed", pytest.approx(2.0)),
        ("moderate", pytest.approx(4.0)), ("healthy", pytest.approx(4.0))]
    assert summary["valid_fraction"] == pytest.approx(7 / 8)
    assert summary["min"] == pytest.approx(-0.5) and summary["max"] == 1.0


def test_finalize__no_valid_pixel_gives_none():
    values = np.full((4, 4), np.nan, dtype=np.float32)
    (parts,) = dask.compute(lazy_stats(_da(values, 2), lo=-1, hi=1, bins=10))
    summary = finalize(parts, grid_pixels=16, pixel_area_m2=1.0)
    assert summary["mean"] is None and summary["p50"] is None and summary["min"] is None
    assert summary["valid_fraction"] == 0.0 and summary["valid_area_m2"] == 0.0


def test_finalize__percentile_outside_range_is_bounded_by_min_and_lo():
    values = np.concatenate([np.full(50, -3.0), np.linspace(0, 1, 50)]).astype(np.float32)
    (parts,) = dask.compute(lazy_stats(_da(values.reshape(10, 10), 5), lo=-1, hi=1, bins=200))
    summary = finalize(parts, grid_pixels=100, pixel_area_m2=1.0)
    assert -3.0 <= summary["p10"] <= -1.0  # underflow: only known to lie in [min, lo]
    assert summary["min"] == -3.0 and summary["mean"] == pytest.approx(values.mean(), rel=1e-6)
    assert abs(summary["p90"] - np.percentile(values, 90)) <= 0.01


def test_lazy_stats__per_zone_labels_match_numpy_masks():
    rng = np.random.default_rng(7)
    values = rng.uniform(20, 45, (64, 80)).astype(np.float32)
    values[rng.random(values.shape) < 0.2] = np.nan
    labels = np.zeros(values.shape, dtype=np.int32)
    labels[5:30, 10:50], labels[35:60, 40:75] = 1, 2
    lazy = lazy_stats(_da(values, 16), lo=-40, hi=100, bins=14000,
                      labels=_da(labels, 24), n_labels=2)
    (parts,) = dask.compute(lazy)
    for z in (1, 2):
        v = values[(labels == z) & np.isfinite(values)]
        zone = finalize_zone(parts, label=z)
        assert set(zone) == {"mean", "p10", "p50", "p90"}
        assert zone["mean"] == pytest.approx(v.mean(), rel=1e-4)
        for key, q in (("p10", 10), ("p50", 50), ("p90", 90)):
            assert abs(zone[key] - np.percentile(v, q)) <= 0.005
        assert zone_area_m2(parts, label=z, pixel_area_m2=0.5) == (labels == z).sum() * 0.5
        thermal = finalize_thermal(parts, label=z)
        assert thermal["max_c"] == pytest.approx(v.max()) and thermal["min_c"] == v.min()
    whole = finalize(parts, grid_pixels=values.size, pixel_area_m2=0.5)
    _check(whole, values)  # group 0 is every pixel, labelled or not


def test_zone_classes__fractions_of_each_zone_match_numpy_masks():
    rng = np.random.default_rng(11)
    values = rng.uniform(-0.3, 0.95, (48, 64)).astype(np.float32)
    values[rng.random(values.shape) < 0.15] = np.nan
    labels = np.zeros(values.shape, dtype=np.int32)
    labels[:20, :30], labels[25:, 20:] = 1, 2
    labels[40:, 50:] = 3
    values[labels == 3] = np.nan  # a zone without a valid pixel (not flown)
    lazy = lazy_stats(_da(values, 16), lo=-1, hi=1, bins=2000, labels=_da(labels, 16),
                      n_labels=3)
    (parts,) = dask.compute(lazy)
    for z in (1, 2):
        v = values[(labels == z) & np.isfinite(values)]
        got = zone_classes(parts, label=z, pixel_area_m2=0.25, classes=NDVI_CLASSES)
        assert [c["name"] for c in got] == ["bare", "stressed", "moderate", "healthy"]
        expected = [np.mean((v >= lo) & (v < hi)) for _, lo, hi in NDVI_CLASSES[:-1]]
        expected.append(np.mean(v >= 0.6))
        np.testing.assert_allclose([c["fraction"] for c in got], expected, atol=1e-3)
        np.testing.assert_allclose([c["area_m2"] for c in got],
                                   np.array(expected) * v.size * 0.25, rtol=1e-2, atol=0.26)
    empty = zone_classes(parts, label=3, pixel_area_m2=0.25, classes=NDVI_CLASSES)
    assert [c["fraction"] for c in empty] == [None] * 4 and [c["area_m2"] for c in empty] == [0.0] * 4


@given(seed=st.integers(0, 2**16), spread=st.integers(1, 3000))
@settings(max_examples=25, deadline=None)
def test_percentiles__quantised_input_exact_on_the_quantum(seed, spread):
    """Centikelvin DN → °C (float32, as the thermal kernel stores it): with one bin per quantum
    the percentiles equal numpy's on the values, far inside 0.005 °C."""
    rng = np.random.default_rng(seed)
    dn = rng.integers(29_000, 29_000 + spread, size=(37, 53)).astype(np.float64)
    dn[rng.random(dn.shape) < 0.1] = np.nan
    celsius = (dn * 0.01 - 273.15).astype(np.float32)
    bins = Bins.quantum(step=0.01, origin=-273.15, lo=-60.0, hi=160.0)
    table = block_table(celsius[:20], bins=bins) + 0
    rest = block_table(celsius[20:], bins=bins)
    table[:, :-2] += rest[:, :-2]
    table[:, -2] = np.minimum(table[:, -2], rest[:, -2])
    table[:, -1] = np.maximum(table[:, -1], rest[:, -1])
    got = finalize(LazyStats.from_table(table, bins=bins), grid_pixels=dn.size, pixel_area_m2=1.0)
    valid = celsius[~np.isnan(celsius)].astype(np.float64)
    for q, key in ((10, "p10"), (50, "p50"), (90, "p90")):
        assert abs(got[key] - np.percentile(valid, q)) < 1e-4, key


@given(seed=st.integers(0, 2**16), nan_share=st.floats(0, 1))
@settings(max_examples=30, deadline=None)
def test_block_table__fast_whole_grid_path_equals_the_labelled_path(seed, nan_share):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1.6, 1.6, (23, 31)).astype(np.float32)
    values[rng.random(values.shape) < nan_share] = np.nan
    values[0, :3] = [-1.5, 1.5, 0.0]
    bins = Bins(lo=-1.5, hi=1.5, bins=300)
    fast = block_table(values, bins=bins)
    general = block_table(values, np.zeros(values.shape, np.int32), bins=bins, groups=1)
    exact = np.r_[0, 1, 4, 5, 6:6 + bins.bins]  # counts and histogram
    np.testing.assert_array_equal(fast[:, exact], general[:, exact])
    np.testing.assert_allclose(fast[:, 2:4], general[:, 2:4], rtol=1e-12)
    np.testing.assert_array_equal(fast[:, -2:], general[:, -2:])
