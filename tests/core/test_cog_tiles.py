"""COGs assembled from tiles compressed by window tasks (pipeline.core.cog_tiles): the same
pixels, overview levels and tags as GDAL's COG driver writes, valid COG layout, every encoding."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from pipeline.core import tiff
from pipeline.core.cog import CogEncoding, GridSpec, translate_to_cog
from pipeline.core.cog_tiles import (
    CogBuilder,
    TileSpool,
    assemble,
    downsample,
    encode_block,
    encode_levels,
    insert_range,
    level_shapes,
    template_tags,
    tiled_levels,
)
from pipeline.core.ramps import Scale

SCALE = Scale("viridis", 0.0, 1.0)


def _grid(width: int, height: int) -> GridSpec:
    return GridSpec(CRS.from_epsg(32633), Affine(0.25, 0, 500_000, 0, -0.25, 4_000_000),
                    width, height)


def _values(height: int, width: int, *, holes: bool = True, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = (np.add.outer(np.arange(height), np.arange(width)) / (height + width)).astype(np.float32)
    v += rng.normal(0, 0.01, v.shape).astype(np.float32)
    if holes:
        v[5:40, 7:300] = np.nan
    return v


def _build(tmp_path, data: np.ndarray, *, kind: str = "float32", chunks: int = 1024,
           encoding: CogEncoding = CogEncoding()):
    """Windows of `chunks`² encoded as a window task does, collected by a CogBuilder."""
    h, w = data.shape
    grid = _grid(w, h)
    profile = encoding.profile(kind)
    levels = tiled_levels(chunks)
    builder = CogBuilder("out", workdir=tmp_path, grid=grid, profile=profile,
                         scale=SCALE if kind == "palette" else None, first_low_level=levels)
    for r in range(0, h, chunks):
        for c in range(0, w, chunks):
            block = data[r:r + chunks, c:c + chunks]
            tiles, low = (encode_levels(block, profile=profile, level=0, row0=r, col0=c,
                                        count=levels, last_level=builder.last_level)
                          if levels else ([], block))
            builder.add(tiles, low, rows=(r, r + block.shape[0]), cols=(c, c + block.shape[1]))
    return builder.finish(threads=2), grid


@pytest.mark.parametrize("chunks", [1024, 512, 96])
@pytest.mark.parametrize("shape", [(2100, 3000), (700, 513), (300, 200)])
def test_builder__same_pixels_and_levels_as_gdal_cog_driver(tmp_path, shape, chunks):
    data = _values(*shape)
    ours, grid = _build(tmp_path / "ours", data, chunks=chunks)
    stage = tmp_path / "stage.tif"
    with rasterio.open(stage, "w", driver="GTiff", width=shape[1], height=shape[0], count=1,
                       dtype="float32", crs=grid.crs, transform=grid.transform,
                       nodata=float("nan")) as ds:
        ds.write(data, 1)
    gdal = tmp_path / "gdal.tif"
    translate_to_cog(stage, gdal, profile="float32")
    with rasterio.open(ours) as a, rasterio.open(gdal) as b:
        assert a.overviews(1) == b.overviews(1)
        assert (a.crs, a.transform, a.shape, a.dtypes, a.block_shapes) == \
            (b.crs, b.transform, b.shape, b.dtypes, b.block_shapes)
        assert np.isnan(a.nodata) and a.compression == b.compression
        # GDAL's structural metadata, without BLOCK_ORDER=ROW_MAJOR: level 0 is in window order
        # (so GDAL does not report LAYOUT=COG, which it keeps for its own driver's files)
        raw = ours.read_bytes()[8:8 + 300]
        assert raw.startswith(b"GDAL_STRUCTURAL_METADATA_SIZE=")
        size = int(raw[30:36])
        ghost = raw[43:43 + size].decode()
        assert "ROW_MAJOR" not in ghost and ghost.endswith("KNOWN_INCOMPATIBLE_EDITION=NO\n ")
        assert {"LAYOUT=IFDS_BEFORE_DATA", "BLOCK_LEADER=SIZE_AS_UINT4",
                "BLOCK_TRAILER=LAST_4_BYTES_REPEATED"} <= set(ghost.splitlines())
        assert a.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
        np.testing.assert_array_equal(a.read(1), data)
        levels = level_shapes(width=shape[1], height=shape[0])
        for i, factor in enumerate(a.overviews(1), start=1):
            ra, rb = a.read(1, out_shape=levels[i]), b.read(1, out_shape=levels[i])
            assert ra.shape == rb.shape
            if any(n % 2 for level in levels[:i] for n in level):
                continue  # after an odd size GDAL stretches (ratio < 2); ours halves exactly
            # AVERAGE of the valid pixels of the level above, as GDAL computes it
            np.testing.assert_array_equal(np.isnan(ra), np.isnan(rb))
            np.testing.assert_allclose(ra, rb, rtol=0, atol=1e-6)
    valid, errors, warnings = cog_validate(str(ours))
    assert valid and not errors and not warnings, (errors, warnings)


def test_builder__without_holes_every_overview_is_the_block_mean(tmp_path):
    data = _values(2048, 2048, holes=False)
    ours, _ = _build(tmp_path, data)
    with rasterio.open(ours) as ds:
        for factor in ds.overviews(1):
            n = 2048 // factor
            want = data.reshape(n, factor, n, factor).mean(axis=(1, 3), dtype=np.float64)
            np.testing.assert_allclose(ds.read(1, out_shape=(n, n)), want, atol=1e-6)


def test_builder__paletted_heatmap_keeps_colour_table_and_nearest_overviews(tmp_path):
    data = (np.arange(1500 * 1100) % 251 + 1).astype(np.uint8).reshape(1500, 1100)
    data[:10] = 0  # nodata
    ours, _ = _build(tmp_path, data, kind="palette")
    with rasterio.open(ours) as ds:
        assert ds.colorinterp[0].name == "palette" and ds.nodata == 0
        assert ds.colormap(1)[0][3] == 0  # entry 0 transparent
        np.testing.assert_array_equal(ds.read(1), data)
        first = ds.read(1, out_shape=(750, 550))
        np.testing.assert_array_equal(first, data[1::2, 1::2])  # GDAL NEAREST picks 2i + 1
        assert set(np.unique(first)) <= set(np.unique(data))
    assert cog_validate(str(ours))[0]


@pytest.mark.parametrize("encoding", [CogEncoding("deflate"), CogEncoding("lerc", 1e-3)])
def test_builder__other_encodings(tmp_path, encoding):
    data = _values(1100, 1300)
    ours, _ = _build(tmp_path, data, encoding=encoding)
    with rasterio.open(ours) as ds:
        back = ds.read(1)
        if encoding.compression == "lerc":
            assert ds.compression.name.lower().startswith("lerc")
            assert ds.tags()["MAX_Z_ERROR"] == "0.001"
            np.testing.assert_array_equal(np.isnan(back), np.isnan(data))
            assert np.nanmax(np.abs(back - data)) <= 1e-3 + 1e-7
        else:
            assert ds.compression.name == "deflate"
            np.testing.assert_array_equal(back, data)
    assert cog_validate(str(ours))[0]


def test_assemble__bigtiff_and_gdal_block_leaders(tmp_path):
    data = _values(1024, 1024)
    grid, profile = _grid(1024, 1024), CogEncoding().profile("float32")
    tiles, rest = encode_levels(data, profile=profile, level=0, row0=0, col0=0, count=2,
                                last_level=1)
    assert rest is None and len(tiles) == 5  # 4 tiles of level 0, 1 of level 1
    body, overviews = TileSpool(tmp_path / "body"), TileSpool(tmp_path / "ovr")
    for level, r, c, data_ in tiles:
        (body if level == 0 else overviews).append((level, r, c), data_)
    assemble(tmp_path / "big.tif", shapes=level_shapes(width=1024, height=1024), body=body,
             overviews=overviews, main_tags=template_tags(grid, profile, None), bigtiff=True)
    overviews.close()
    body.close()
    raw = (tmp_path / "big.tif").read_bytes()
    assert raw[:4] == b"II+\x00"
    with rasterio.open(tmp_path / "big.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), data)
        for r in range(2):
            for c in range(2):
                offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                size = int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1))
                assert struct.unpack("<I", raw[offset - 4:offset])[0] == size
                assert raw[offset + size:offset + size + 4] == raw[offset + size - 4:offset + size]
    assert cog_validate(str(tmp_path / "big.tif"))[0]


def test_assemble__a_missing_tile_is_an_error_not_a_hole(tmp_path):
    grid, profile = _grid(600, 600), CogEncoding().profile("float32")
    body, overviews = TileSpool(tmp_path / "body"), TileSpool(tmp_path / "ovr")
    with pytest.raises(RuntimeError, match="never"):
        assemble(tmp_path / "x.tif", shapes=level_shapes(width=600, height=600), body=body,
                 overviews=overviews, main_tags=template_tags(grid, profile, None))
    assert sorted(tmp_path.iterdir()) == [tmp_path / "body", tmp_path / "ovr"]  # nothing written
    body.close()
    overviews.close()


def test_assemble__head_inserted_in_place_or_copied_gives_the_same_bytes(tmp_path):
    """The level-0 tiles stay where they were spooled: the head is inserted in front of them
    (ext4, XFS) -- same inode, no copy -- or, where a file system cannot, copied; same bytes."""
    data = _values(1500, 1100)
    grid, profile = _grid(1100, 1500), CogEncoding().profile("float32")
    written = {}
    for in_place in (True, False):
        folder = tmp_path / str(in_place)
        folder.mkdir()
        body, overviews = TileSpool(folder / "body"), TileSpool(folder / "ovr")
        for r in range(0, 1500, 1024):
            for c in range(0, 1100, 1024):
                tiles, _ = encode_levels(data[r:r + 1024, c:c + 1024], profile=profile,
                                         level=0, row0=r, col0=c, count=2, last_level=2)
                for level, tr, tc, data_ in tiles:
                    (body if level == 0 else overviews).append((level, tr, tc), data_)
        low = downsample(downsample(data, kind="float32"), kind="float32")
        for level, tr, tc, data_ in encode_block(low, profile=profile, row0=0, col0=0, level=2):
            overviews.append((level, tr, tc), data_)
        inode = os.stat(body.path).st_ino
        how = assemble(folder / "x.tif", shapes=level_shapes(width=1100, height=1500),
                       body=body, overviews=overviews,
                       main_tags=template_tags(grid, profile, None), in_place=in_place)
        body.close()
        overviews.close()
        assert sorted(folder.iterdir()) == [folder / "x.tif"]
        assert how == ("inserted" if in_place and _can_insert(tmp_path) else "copied")
        assert (os.stat(folder / "x.tif").st_ino == inode) == (how == "inserted")
        written[in_place] = (folder / "x.tif").read_bytes()
        assert cog_validate(str(folder / "x.tif"))[0]
        with rasterio.open(folder / "x.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), data)
            assert ds.overviews(1) == [2, 4]
    assert written[True] == written[False]


def _can_insert(folder) -> bool:
    """Whether `folder`'s file system inserts ranges (ext4, XFS: yes; tmpfs: no)."""
    with open(folder / "probe", "w+b") as f:
        f.write(bytes(8192))
        f.flush()
        supported = insert_range(f.fileno(), os.fstat(f.fileno()).st_blksize)
    (folder / "probe").unlink()
    return supported


def test_level_shapes_and_tiled_levels():
    assert level_shapes(width=512, height=100) == [(100, 512)]
    assert level_shapes(width=3000, height=2100) == [(2100, 3000), (1050, 1500), (525, 750),
                                                     (263, 375)]
    assert [tiled_levels(n) for n in (512, 1024, 2048, 96, 1536, 0)] == [1, 2, 3, 0, 0, 0]


def test_downsample__mean_of_valid_pixels_and_odd_edges():
    nan = np.nan
    block = np.array([[1, 3, 5], [nan, 2, nan], [4, nan, 7]], dtype=np.float32)
    np.testing.assert_array_equal(downsample(block, kind="float32"),
                                  np.array([[2, 5], [4, 7]], dtype=np.float32))
    assert np.isnan(downsample(np.full((2, 2), nan, np.float32), kind="float32")).all()


def test_tiff__ifd_round_trip_classic_and_big():
    tags = {256: tiff.Tag.ints(tiff.LONG, [7]), 324: tiff.Tag.ints(tiff.LONG8, [1, 2, 3]),
            270: tiff.Tag(2, 6, b"hello\0")}
    for big in (False, True):
        at = 16 if big else 8
        body = tiff.write_ifd(tags, at=at, next_ifd=0, big=big)
        assert len(body) == tiff.ifd_size(tags, big=big)
        assert tiff.read_first_ifd(tiff.header(big=big, first_ifd=at) + body) == tags
