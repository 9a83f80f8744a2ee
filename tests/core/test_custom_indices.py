"""Custom indices (DESIGN.md §3.2): the formula grammar, its evaluation, every refusal at load."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import yaml

from pipeline.core.errors import ConfigurationError
from pipeline.core.formula import FormulaError, parse_formula
from pipeline.core.manifest import OPTICAL_BANDS
from pipeline.core.registry import BUILTIN_REGISTRY, INDICES, build_registry, compute
from tests.core.test_indices import raster

MSAVI_LIKE = {"name": "wdrvi", "formula": "(0.1 * nir - red) / (0.1 * nir + red)",
              "vmin": -1.0, "vmax": 0.5, "ramp": "RdYlGn",
              "description": "Wide dynamic range vegetation index (alpha 0.1). Keeps contrast "
                             "in dense canopy."}


def _write(tmp_path: Path, entries, *, suffix: str = ".yaml", name: str = "indices") -> Path:
    path = tmp_path / f"{name}{suffix}"
    text = json.dumps(entries) if suffix == ".json" else yaml.safe_dump(entries, sort_keys=False)
    path.write_text(text)
    return path


# ---- the formula ---------------------------------------------------------------------------------


def test_formula__analytic_values_numpy_and_dask():
    formula = parse_formula("-(nir - swir1) / (nir + swir1) + 2 * red - 0.5", bands=OPTICAL_BANDS)
    assert formula.bands == ("nir", "swir1", "red")
    nir = raster([[0.4, 0.25, 0.0, np.nan]])
    swir1 = raster([[0.1, 0.25, 0.0, 0.2]])
    red = raster([[0.5, 0.25, 0.1, 0.1]])
    expected = [[-0.6 + 1.0 - 0.5, 0.0 + 0.5 - 0.5, np.nan, np.nan]]  # 0/0 -> NaN, nodata -> NaN
    with np.errstate(all="raise"):
        eager = formula(nir=nir, swir1=swir1, red=red)
    assert eager.dtype == np.float32
    np.testing.assert_allclose(eager.values, expected, rtol=1e-6, atol=1e-7)
    lazy = formula(nir=nir.chunk({"x": 2}), swir1=swir1.chunk({"x": 2}), red=red.chunk({"x": 2}))
    assert isinstance(lazy.data, dsa.Array) and lazy.dtype == np.float32
    np.testing.assert_array_equal(lazy.compute().values, eager.values)
    assert eager.rio.crs == nir.rio.crs


def test_formula__division_by_a_constant_zero_is_nan_and_precedence_is_arithmetic():
    nir = raster([[0.5, 0.25]])

    def of(text):
        return parse_formula(text, bands=OPTICAL_BANDS)(nir=nir).values

    np.testing.assert_array_equal(of("nir / (2 - 2)"), [[np.nan, np.nan]])
    np.testing.assert_allclose(of("1 - nir * 2 / 4"), [[0.75, 0.875]])
    np.testing.assert_allclose(of("1 / nir"), [[2.0, 4.0]])


def test_formula__non_finite_results_are_nodata():
    """±inf from float32 overflow (a division by a subnormal difference, a product beyond
    3.4e38) is NaN, like 0/0: never a value at the end of the palette or in the sums (REVIEW m5)."""
    nir = raster([[0.5, 0.5, 0.3, 3e38]])
    red = raster([[0.5, 0.5 - 1e-7, 0.1, 1.0]])
    tiny = raster([[1e-45, -1e-45, 1.0, 1.0]])  # float32 subnormals
    for values in (
        parse_formula("nir / tiny_free", bands=("nir", "tiny_free"))(nir=nir,
                                                                      tiny_free=tiny).values,
        parse_formula("nir * 1e10 * nir", bands=OPTICAL_BANDS)(nir=nir).values,
        parse_formula("(nir + red) / (nir - red)", bands=OPTICAL_BANDS)(nir=nir, red=red).values,
    ):
        assert not np.isinf(values).any(), values
    np.testing.assert_array_equal(
        np.isnan(parse_formula("nir / tiny_free", bands=("nir", "tiny_free"))(
            nir=nir, tiny_free=tiny).values), [[True, True, False, False]])
    lazy = parse_formula("nir * 1e10 * nir", bands=OPTICAL_BANDS)(nir=nir.chunk({"x": 2}))
    assert isinstance(lazy.data, dsa.Array)
    np.testing.assert_allclose(lazy.compute().values, [[2.5e9, 2.5e9, 9e8, np.nan]], rtol=1e-6)


def test_formula__canonical_text_ignores_spacing_and_redundant_parentheses():
    a = parse_formula("(nir-red)/(nir+red)", bands=OPTICAL_BANDS)
    b = parse_formula(" ( (nir) - red ) / ( nir + red ) ", bands=OPTICAL_BANDS)
    assert a.canonical == b.canonical
    assert a.canonical != parse_formula("(nir-red)/(nir+green)", bands=OPTICAL_BANDS).canonical


@pytest.mark.parametrize("text", [
    "nir ** 2", "abs(nir)", "nir.values", "nir[0]", "(lambda: nir)()", "nir if red else green",
    "nir < red", "'nir'", "nir; red", "thermal - nir", "os", "True + nir", "1e400 * nir",
    "[nir][0]", "{nir}", "nir @ red", "not nir", "nir // red", "nir % red",
])
def test_formula__outside_the_grammar_is_refused(text):
    with pytest.raises(FormulaError):
        parse_formula(text, bands=OPTICAL_BANDS)


# ---- the registry built from an indices file -----------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_registry__custom_index_after_the_builtins_computed_like_one(tmp_path, suffix):
    registry = build_registry(indices_file=_write(tmp_path, [MSAVI_LIKE], suffix=suffix))
    assert list(registry) == [*INDICES, "wdrvi"]
    index = registry["wdrvi"]
    assert index.custom and index.bands == ("nir", "red") and index.value_range is None
    assert index.scale.as_dict() == {"ramp": "RdYlGn", "vmin": -1.0, "vmax": 0.5}
    assert index.code_version.startswith("c-")
    assert [d.name for d in registry.available(["nir", "red"])] == ["ndvi", "savi", "wdrvi"]
    nir, red = raster([[0.8, 0.0]]), raster([[0.02, 0.0]])
    result = compute(index, {"nir": nir, "red": red})
    np.testing.assert_allclose(result.values[0, 0], (0.08 - 0.02) / (0.08 + 0.02), rtol=1e-6)
    assert np.isnan(result.values[0, 1]) and result.name == "wdrvi"
    assert pickle.loads(pickle.dumps(registry)) == registry  # shipped to distributed workers


def test_registry__code_version_is_a_hash_of_the_definition(tmp_path):
    first = build_registry(indices_file=_write(tmp_path, [MSAVI_LIKE]))
    respaced = build_registry(indices_file=_write(
        tmp_path, [{**MSAVI_LIKE, "formula": "(0.1*nir-red)/(0.1*nir+red)"}], name="b"))
    edited = build_registry(indices_file=_write(
        tmp_path, [{**MSAVI_LIKE, "formula": "(0.2 * nir - red) / (0.2 * nir + red)"}], name="c"))
    rescaled = build_registry(indices_file=_write(tmp_path, [{**MSAVI_LIKE, "vmax": 0.6}],
                                                  name="d"))
    assert first["wdrvi"].code_version == respaced["wdrvi"].code_version
    assert len({first["wdrvi"].code_version, edited["wdrvi"].code_version,
                rescaled["wdrvi"].code_version}) == 3
    assert first.code_version != edited.code_version != BUILTIN_REGISTRY.code_version


def test_registry__no_file_or_empty_file_is_the_builtins(tmp_path):
    assert build_registry(indices_file=None) == BUILTIN_REGISTRY
    empty = tmp_path / "empty.yaml"
    empty.write_text("# no custom index yet\n")
    assert list(build_registry(indices_file=empty)) == list(INDICES)


REFUSALS = [  # (entry changes, words the message must hold: the problem and the fix)
    ({"formula": "(nir - red / (nir + red)"}, ["not a valid expression", "parentheses"]),
    ({"formula": "(nir - rde) / (nir + rde)"}, ["'rde'", "not a band", "swir1"]),
    ({"formula": "(nir - thermal) / 2"}, ["'thermal'", "not a band"]),
    ({"ramp": "Rainbowz"}, ["'Rainbowz'", "matplotlib colormap", "RdYlGn"]),
    ({"name": "WDRVI"}, ["'WDRVI'", "lower-case letter"]),
    ({"name": "2ndvi"}, ["'2ndvi'", "lower-case letter"]),
    ({"name": "a" * 33}, ["not allowed", "up to 31"]),
    ({"name": "ndmi"}, ["shadows the built-in", "another name"]),
    ({"name": "change_ndvi"}, ["collides", "another name"]),
    ({"name": "ndvi_heatmap"}, ["collides", "another name"]),
    ({"vmin": 0.5, "vmax": 0.5}, ["vmin (0.5) must be below vmax (0.5)"]),
    ({"vmin": 1.0, "vmax": -1.0}, ["must be below", "swap"]),
    ({"vmin": "low"}, ["`vmin`", "finite number"]),
    ({"formula": "nir.real"}, ["attribute access", "not allowed"]),
    ({"formula": "abs(nir)"}, ["function call", "not allowed"]),
    ({"formula": "nir[0]"}, ["Subscript", "not allowed"]),
    ({"formula": "(lambda: nir)()"}, ["function call", "not allowed"]),
    ({"formula": "nir ** 2"}, ["Pow", "not allowed"]),
    ({"formula": "9" * 400 + " * nir"}, ["not finite", "999"]),  # int beyond float: REVIEW m3
    ({"formula": "nir - 1e999"}, ["not finite"]),
    ({"description": ""}, ["`description`"]),
    ({"colour": "red"}, ["unknown field(s) colour"]),
]


@pytest.mark.parametrize(("changes", "words"), REFUSALS)
def test_registry__refused_at_load_naming_file_entry_and_fix(tmp_path, changes, words):
    ok = {**MSAVI_LIKE, "name": "first_ok"}
    path = _write(tmp_path, [ok, {**MSAVI_LIKE, **changes}])
    with pytest.raises(ConfigurationError) as info:
        build_registry(indices_file=path)
    message = str(info.value)
    assert message.startswith("IMAGERY_INDICES_FILE: ") and str(path) in message
    assert "entry 2" in message
    if isinstance(changes.get("name", "wdrvi"), str):
        assert f"({changes.get('name', 'wdrvi')!r})" in message
    for word in words:
        assert word in message, message


def test_registry__code_injection_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    attempts = [
        f"__import__('os').system('touch {marker}')",
        f"nir + __import__('os').system('touch {marker}')",
        f"(lambda: __import__('os').system('touch {marker}'))()",
        f"().__class__.__base__.__subclasses__()[0]('touch {marker}')",
        f"open('{marker}', 'w').write('x')",
        "exec(\"open('" + str(marker) + "', 'w')\")",
    ]
    for i, formula in enumerate(attempts):
        path = _write(tmp_path, [{**MSAVI_LIKE, "formula": formula}], name=f"evil{i}")
        with pytest.raises(ConfigurationError, match="not allowed|not a band"):
            build_registry(indices_file=path)
    # YAML's own object tags are not honoured either (safe_load)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text(f"- !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        build_registry(indices_file=tagged)
    assert not marker.exists()


def test_registry__bad_file_shapes(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match="does not exist"):
        build_registry(indices_file=missing)
    mapping = _write(tmp_path, {"wdrvi": MSAVI_LIKE}, suffix=".json")
    with pytest.raises(ConfigurationError, match="must be a list"):
        build_registry(indices_file=mapping)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"name": "x",}]')
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        build_registry(indices_file=broken)
    twice = _write(tmp_path, [MSAVI_LIKE, MSAVI_LIKE], name="twice")
    with pytest.raises(ConfigurationError, match="entry 2 .*declared twice"):
        build_registry(indices_file=twice)


def test_registry__example_file_shipped_in_docs_loads():
    example = Path(__file__).resolve().parents[2] / "docs" / "indices.example.yaml"
    registry = build_registry(indices_file=example)
    assert registry.custom and all(d.name not in INDICES for d in registry.custom)
