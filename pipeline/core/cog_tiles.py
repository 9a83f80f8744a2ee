"""COGs assembled from tiles compressed where they are computed (DESIGN.md §3.1, §5).

A window task (a thread of this process or a `distributed` worker) encodes the 512² tiles of
its own window -- and of the overview levels its window covers whole -- with GDAL's own GTiff
encoders (`encode_levels`), so every codec and option of a `CogProfile` (ZSTD or DEFLATE with
the floating-point predictor, LERC with an error bound, paletted uint8) is exactly GDAL's. Only
compressed bytes travel back, plus the window's block at the first level it could not encode
(a 1024² window: levels 0 and 1 as tiles, a 256² block of level 2).

The run worker's `CogBuilder` appends the level-0 tiles, in the order windows arrive and in
GDAL's block format (4-byte size leader, last 4 bytes repeated), to the file that becomes the
COG, and the overview tiles to a second spool; it writes the small blocks into a local stage of
the low levels (1/16 of the pixels), encodes those levels itself at the end, and `assemble`s
the COG: header, GDAL's structural metadata, every IFD (tags copied from a one-tile GeoTIFF
GDAL writes with the same CRS, transform, nodata, colour table, compression parameters), the
overview tiles (smallest first, row-major), then level 0. The head goes in front of the level-0
bytes where they lie (`fallocate` FALLOC_FL_INSERT_RANGE: ext4, XFS), so the bulk of the COG is
written to disk once; elsewhere the file is copied. Either way the bytes are the same, built
under a temporary name and renamed: the destination is never half-written. Level 0 is in window
order (2 × 2 tiles of a 1024² window together), so the structural metadata does not claim
BLOCK_ORDER=ROW_MAJOR; overviews are row-major.

Overviews: AVERAGE of the valid pixels for float rasters (NaN is nodata), NEAREST for paletted
ones, each level from the one above, 2× per level until it fits one tile -- the levels, sizes and
values of GDAL's COG driver (tests/core/test_cog_tiles.py), except after a level of odd size:
there GDAL stretches (513 px -> 257 px at a ratio of 1.996) where this halves exactly and pads
the last row or column, so from that level on an overview pixel may sit up to half its width
away from GDAL's. Level 0 is always exact; powers of two (the bench sizes) never differ.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import errno
import functools
import math
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.windows import Window

from pipeline.core import tiff
from pipeline.core.cog import TILE, CogProfile, GridSpec, Stage, gdal_env, gtiff_options
from pipeline.core.ramps import Scale, gdal_colormap

Tiles = list[tuple[int, int, int, bytes]]  # (level, tile row, tile column, compressed bytes)
LOW_WINDOW = 1024  # windows the run worker encodes its low levels in (2 levels each)
ALIGN = 4096  # level 0 starts on a multiple of it: the block of ext4 and XFS, whatever the disk
_GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112)  # + GDAL_METADATA: main IFD only
_STRUCTURE = (254, 256, 257, 273, 278, 279, 324, 325)
_GHOST = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_LEADER=SIZE_AS_UINT4\n"
          "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
_PLACEHOLDER = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 1.0)  # tiles need none; it keeps GDAL quiet
GHOST = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST):06d} bytes\n{_GHOST}".encode()


def level_shapes(*, width: int, height: int) -> list[tuple[int, int]]:
    """(height, width) of level 0 and of each overview: halved (rounding up) until it fits one
    tile."""
    shapes, factor = [(height, width)], 1
    while max(shapes[-1]) > TILE:
        factor *= 2
        shapes.append((math.ceil(height / factor), math.ceil(width / factor)))
    return shapes


def tiled_levels(chunks: int) -> int:
    """How many levels a window of `chunks`² (aligned on multiples of it) covers with whole tiles:
    1024 -> 2 (levels 0 and 1); 0 when `chunks` is not 512 × a power of two."""
    ratio, rest = divmod(chunks, TILE)
    if rest or ratio < 1 or ratio & (ratio - 1):
        return 0
    return ratio.bit_length()


def downsample(block: np.ndarray, *, kind: str) -> np.ndarray:
    """The next overview level of `block` (2× smaller, rounding up): mean of the valid (non-NaN)
    pixels of each 2 × 2 for float rasters, NEAREST (GDAL's choice of pixel) for paletted ones."""
    h, w = block.shape
    if kind == "palette":
        rows = np.minimum(np.arange((h + 1) // 2) * 2 + 1, h - 1)
        cols = np.minimum(np.arange((w + 1) // 2) * 2 + 1, w - 1)
        return block[rows][:, cols]
    if h % 2 or w % 2:
        padded = np.full((h + h % 2, w + w % 2), np.nan, dtype=block.dtype)
        padded[:h, :w] = block
        block = padded
    quads = block.reshape(block.shape[0] // 2, 2, block.shape[1] // 2, 2)
    if not np.isnan(block).any():  # no hole: the same sums in the same order, 3x faster
        total = quads[:, 0, :, 0] + quads[:, 0, :, 1]
        total += quads[:, 1, :, 0]
        total += quads[:, 1, :, 1]
        total /= np.float32(4)
        return total.astype(block.dtype, copy=False)
    total = np.zeros((quads.shape[0], quads.shape[2]), dtype=np.float32)
    count = np.zeros_like(total)
    for i in (0, 1):  # the four corners as strided views: 6x faster than a (1, 3) reduction
        for j in (0, 1):
            corner = quads[:, i, :, j]
            valid = corner == corner  # not NaN
            total += np.where(valid, corner, np.float32(0))
            count += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(block.dtype, copy=False)


def encode_block(block: np.ndarray, *, profile: CogProfile, row0: int, col0: int,
                 level: int) -> Tiles:
    """The compressed 512² tiles of `block`, whose top-left pixel is (`row0`, `col0`) of its level
    (multiples of 512), encoded by GDAL's GTiff driver with the profile's codec and options."""
    if row0 % TILE or col0 % TILE:
        raise ValueError(f"a block encoded as tiles starts on the tile grid, not at ({row0}, "
                         f"{col0})")
    h, w = block.shape
    with gdal_env(1), MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=1, dtype=profile.dtype,
                      nodata=profile.nodata, transform=_PLACEHOLDER,
                      **gtiff_options(profile)) as ds:
            ds.write(block, 1)
        buf = mem.getbuffer()
        tags = tiff.read_first_ifd(buf)  # the tiles' places, without opening the file again
        across = math.ceil(w / TILE)
        spans = zip(tags[tiff.TILE_OFFSETS].values(), tags[tiff.TILE_BYTE_COUNTS].values(),
                    strict=True)
        return [(level, row0 // TILE + i // across, col0 // TILE + i % across, bytes(buf[o:o + n]))
                for i, (o, n) in enumerate(spans)]


def encode_levels(block: np.ndarray, *, profile: CogProfile, level: int, row0: int, col0: int,
                  count: int, last_level: int) -> tuple[Tiles, np.ndarray | None]:
    """Encode `block` (at `level`, top-left (`row0`, `col0`)) and up to `count` - 1 overview
    levels made from it, never beyond `last_level`; returns (tiles, the block of the next level
    still to encode, or None when `last_level` was reached)."""
    tiles: Tiles = []
    for _ in range(count):
        tiles += encode_block(block, profile=profile, row0=row0, col0=col0, level=level)
        if level == last_level:
            return tiles, None
        block, row0, col0, level = downsample(block, kind=profile.kind), row0 // 2, col0 // 2, \
            level + 1
    return tiles, block


class TileSpool:
    """Compressed tiles appended to a file in GDAL's block format -- a 4-byte size leader, the
    bytes, their last 4 bytes repeated -- and where each one starts (its leader)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file = open(self.path, "w+b")  # noqa: SIM115 - closed in close()
        self.index: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.size = 0

    def append(self, key: tuple[int, int, int], data: bytes) -> None:
        self.index[key] = (self.size, len(data))
        self.file.write(struct.pack("<I", len(data)) + data + data[-4:])
        self.size += len(data) + 8

    def close(self) -> None:
        """Close and remove the file (a no-op for a spool already renamed into a COG)."""
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


class CogBuilder:
    """The run worker's side of one output COG: spools compressed tiles as they arrive (level 0
    into the file that becomes the COG), stages the blocks of the levels workers did not encode,
    then encodes those and assembles the file."""

    def __init__(self, name: str, *, workdir: Path, grid: GridSpec, profile: CogProfile,
                 scale: Scale | None, first_low_level: int) -> None:
        if profile.kind == "palette" and scale is None:
            raise ValueError(f"{name}: a paletted COG needs the Scale of its colour table")
        self.name, self.workdir, self.grid = name, Path(workdir), grid
        self.profile, self.scale = profile, scale
        self.shapes = level_shapes(width=grid.width, height=grid.height)
        self.last_level = len(self.shapes) - 1
        self.low_level = min(first_low_level, len(self.shapes))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._body = TileSpool(self.workdir / f".{name}.tif.{uuid.uuid4().hex}.body")
        self._overviews: TileSpool | None = None
        self._low: Stage | None = None
        try:
            self._overviews = TileSpool(self.workdir / f"{name}.overviews.tiles")
            if self.low_level <= self.last_level:
                self._low = self._stage(self.low_level)
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path:
        return self.workdir / f"{self.name}.tif"

    def _stage(self, level: int) -> Stage:
        h, w = self.shapes[level]
        factor = 2 ** level
        transform = Affine(*tuple(self.grid.transform)[:6]) @ Affine.scale(factor, factor)
        return Stage(self.workdir / f"{self.name}.level{level}.stage.tif",
                     grid=GridSpec(self.grid.crs, transform, w, h), profile=self.profile,
                     scale=self.scale)

    def add(self, tiles: Tiles, low: np.ndarray | None, *, rows: tuple[int, int],
            cols: tuple[int, int]) -> None:
        """One window's result: its tiles, and its block at `low_level` (`rows`, `cols` are the
        window's level-0 ranges)."""
        for level, r, c, data in tiles:
            (self._body if level == 0 else self._overviews).append((level, r, c), data)
        if low is not None and self._low is not None:
            f = 2 ** self.low_level
            r0, c0 = rows[0] // f, cols[0] // f
            self._low.write(low, rows=(r0, r0 + low.shape[0]), cols=(c0, c0 + low.shape[1]))

    def _encode_low(self, threads: int) -> None:
        """Encode the staged low levels in this process, 2 levels per pass, staging the next."""
        stage, level = self._low, self.low_level
        while stage is not None:
            stage.close()
            h, w = self.shapes[level]
            following = level + 2 if level + 2 <= self.last_level else None
            deeper = self._stage(following) if following is not None else None
            starts = [(r, c) for r in range(0, h, LOW_WINDOW) for c in range(0, w, LOW_WINDOW)]

            def one(start: tuple[int, int], path=stage.path, level=level):
                r, c = start
                with gdal_env(1), rasterio.open(path) as ds:
                    block = ds.read(1, window=Window(c, r, min(LOW_WINDOW, w - c),
                                                     min(LOW_WINDOW, h - r)))
                return start, encode_levels(block, profile=self.profile, level=level, row0=r,
                                            col0=c, count=2, last_level=self.last_level)

            with cf.ThreadPoolExecutor(max(1, threads)) as pool:
                for (r, c), (tiles, rest) in pool.map(one, starts):
                    self.add(tiles, None, rows=(0, 0), cols=(0, 0))
                    if deeper is not None and rest is not None:
                        deeper.write(rest, rows=(r // 4, r // 4 + rest.shape[0]),
                                     cols=(c // 4, c // 4 + rest.shape[1]))
            stage.path.unlink(missing_ok=True)
            stage, level = deeper, following
        self._low = None

    def finish(self, *, threads: int = 2) -> Path:
        """Encode the low levels, assemble `<workdir>/<name>.tif`, remove the spools."""
        try:
            self._encode_low(threads)
            assemble(self.path, shapes=self.shapes, body=self._body,
                     overviews=self._overviews,
                     main_tags=template_tags(self.grid, self.profile, self.scale))
        finally:
            self.close()
        return self.path

    def close(self) -> None:
        if self._low is not None:
            self._low.close()
            self._low.path.unlink(missing_ok=True)
            self._low = None
        for spool in (self._body, self._overviews):
            if spool is not None:
                spool.close()


def template_tags(grid: GridSpec, profile: CogProfile, scale: Scale | None) -> dict[int, tiff.Tag]:
    """The IFD tags GDAL writes for a one-tile GeoTIFF of this grid and profile (georeferencing,
    codec and its parameters, sample format, nodata, metadata, colour table), minus the
    structure tags the assembler sets per level."""
    with gdal_env(1), MemoryFile() as mem:
        with mem.open(driver="GTiff", width=TILE, height=TILE, count=1, dtype=profile.dtype,
                      nodata=profile.nodata, crs=grid.crs, transform=grid.transform,
                      sparse_ok=True, **({"photometric": "PALETTE"}
                                         if profile.kind == "palette" else {}),
                      **gtiff_options(profile)) as ds:
            if profile.kind == "palette":
                ds.write_colormap(1, gdal_colormap(scale.ramp))
            if profile.tags:
                ds.update_tags(**profile.tags)
        tags = tiff.read_first_ifd(bytes(mem.getbuffer()))
    return {k: v for k, v in tags.items() if k not in _STRUCTURE}


def assemble(dst: Path, *, shapes: Sequence[tuple[int, int]], body: TileSpool,
             overviews: TileSpool, main_tags: dict[int, tiff.Tag], bigtiff: bool | None = None,
             in_place: bool = True) -> str:
    """Write the COG `dst`: header, structural metadata, IFDs of every level, the overview tiles
    (smallest overview first, row-major), zeros up to a multiple of ALIGN (4096),
    then `body` -- the level-0 tiles as they were spooled, each with GDAL's size leader and
    trailer. BigTIFF when the file would pass 4 GiB (`bigtiff` None), or as `bigtiff` says.
    With `in_place`, the head is inserted in front of the body's file, which is then renamed
    (no copy of level 0); where the file system cannot, or without `in_place`, the same bytes
    are copied into a new file. Returns "inserted" or "copied"."""
    order, missing = [], []  # per level (0 first): the tile keys in file order
    for level, (h, w) in enumerate(shapes):
        keys = [(level, r, c) for r in range(math.ceil(h / TILE))
                for c in range(math.ceil(w / TILE))]
        spool = body if level == 0 else overviews
        missing += [k for k in keys if k not in spool.index]
        order.append(keys)
    if missing:
        raise RuntimeError(f"{dst.name}: {len(missing)} tile(s) never arrived, e.g. "
                           f"(level, row, column) {missing[0]}")
    if len(body.index) != len(order[0]) or len(overviews.index) != sum(map(len, order[1:])):
        raise RuntimeError(f"{dst.name}: tiles outside the image's levels were spooled")
    body.file.flush()
    overviews.file.flush()
    ovr_tags = {k: v for k, v in main_tags.items() if k not in _GEO_TAGS}
    ovr_tags[tiff.NEW_SUBFILE_TYPE] = tiff.Tag.ints(tiff.LONG, [1])

    def ifds(big: bool, offsets: list[list[int]] | None) -> list[dict[int, tiff.Tag]]:
        out = []
        for level, ((h, w), keys) in enumerate(zip(shapes, order, strict=True)):
            spool = body if level == 0 else overviews
            tags = dict(main_tags if level == 0 else ovr_tags)
            tags[tiff.IMAGE_WIDTH] = tiff.Tag.ints(tiff.LONG, [w])
            tags[tiff.IMAGE_LENGTH] = tiff.Tag.ints(tiff.LONG, [h])
            tags[tiff.TILE_OFFSETS] = tiff.Tag.ints(tiff.LONG8 if big else tiff.LONG,
                                                    offsets[level] if offsets else [0] * len(keys))
            tags[tiff.TILE_BYTE_COUNTS] = tiff.Tag.ints(tiff.LONG,
                                                        [spool.index[k][1] for k in keys])
            out.append(tags)
        return out

    def layout(big: bool) -> tuple[int, list[int], int]:
        """(bytes before the first IFD, each IFD's size, where the body starts)."""
        head = len(tiff.header(big=big, first_ifd=0)) + len(GHOST)
        sizes = [tiff.ifd_size(t, big=big) for t in ifds(big, None)]
        return head, sizes, -(-(head + sum(sizes) + overviews.size) // ALIGN) * ALIGN

    big = layout(False)[2] + body.size >= 2**32 if bigtiff is None else bigtiff
    head, sizes, body_at = layout(big)
    offsets: list[list[int]] = [[] for _ in shapes]
    ovr_runs: list[tuple[int, int]] = []  # (spool offset, bytes) in file order, runs merged
    pos = ovr_at = head + sum(sizes)
    for level in reversed(range(1, len(shapes))):  # smallest overview first, row-major
        for k in order[level]:
            start, n = overviews.index[k]
            offsets[level].append(pos + 4)
            pos += n + 8
            if ovr_runs and sum(ovr_runs[-1]) == start:
                ovr_runs[-1] = (ovr_runs[-1][0], ovr_runs[-1][1] + n + 8)
            else:
                ovr_runs.append((start, n + 8))
    offsets[0] = [body_at + body.index[k][0] + 4 for k in order[0]]
    parts = [tiff.header(big=big, first_ifd=head), GHOST]
    at = head
    for level, tags in enumerate(ifds(big, offsets)):
        nxt = at + sizes[level] if level + 1 < len(shapes) else 0
        parts.append(tiff.write_ifd(tags, at=at, next_ifd=nxt, big=big))
        at += sizes[level]
    meta = b"".join(parts)
    if len(meta) != ovr_at:
        raise RuntimeError(f"{dst.name}: header and IFDs took {len(meta)} bytes, "
                           f"expected {ovr_at}")
    def write_head(fd: int) -> None:
        """The head at offset 0 of `fd`: metadata, overview records, zero padding."""
        _pwrite_all(fd, meta, 0)
        pos = len(meta)
        for start, n in ovr_runs:
            _copy(overviews.file.fileno(), fd, start, n, pos)
            pos += n
        _pwrite_all(fd, bytes(body_at - pos), pos)

    if in_place and insert_range(body.file.fileno(), body_at):
        write_head(body.file.fileno())
        body.file.close()
        os.replace(body.path, dst)
        return "inserted"
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            write_head(fd)
            _copy(body.file.fileno(), fd, 0, body.size, body_at)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return "copied"


_FALLOC_FL_INSERT_RANGE = 0x20


@functools.cache
def _fallocate():
    """glibc's fallocate64 (64-bit offsets on every platform), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate64
    except (OSError, AttributeError):  # pragma: no cover - not glibc/Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fn


def insert_range(fd: int, n: int) -> bool:
    """Insert `n` bytes (a multiple of the file system's block) of hole at the start of `fd`,
    shifting its bytes without copying them; False where the file system or platform cannot.
    ext4 and XFS first write the file's dirty pages back (the bulk of the COG reaches the disk
    here, once, instead of in a copy)."""
    fallocate = _fallocate()
    if fallocate is None:  # pragma: no cover
        return False
    if fallocate(fd, _FALLOC_FL_INSERT_RANGE, 0, n) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ENODEV, errno.EPERM):
        return False
    raise OSError(err, f"inserting {n} bytes before the tiles: {os.strerror(err)}")


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _copy(src_fd: int, fd: int, offset: int, n: int, out: int) -> None:
    """Copy `n` bytes at `offset` of `src_fd` to `out` of `fd` (in the kernel where it can)."""
    if hasattr(os, "copy_file_range"):
        while n > 0:
            done = os.copy_file_range(src_fd, fd, n, offset, out)
            if done == 0:
                raise OSError(f"short copy from a tile spool at {offset}")
            offset, out, n = offset + done, out + done, n - done
        return
    while n > 0:  # pragma: no cover - platforms without copy_file_range
        chunk = os.pread(src_fd, min(n, 1 << 24), offset)
        _pwrite_all(fd, chunk, out)
        offset, out, n = offset + len(chunk), out + len(chunk), n - len(chunk)
