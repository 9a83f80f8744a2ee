"""The few bytes of TIFF the COG assembler needs: read one IFD's tags, write a chain of IFDs.

Little-endian only (what GDAL writes on every platform we run). A tag is kept as its raw value
bytes with type and count, so tags GDAL wrote (georeferencing, compression parameters, colour
table, nodata, metadata) are copied into an assembled COG exactly (`pipeline.core.cog_tiles`).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4, 16: 8, 17: 8, 18: 8}
SHORT, LONG, LONG8 = 3, 4, 16

NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH = 254, 256, 257
TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325


@dataclass(frozen=True)
class Tag:
    """One IFD entry: TIFF type, count and the value's raw little-endian bytes."""

    type: int
    count: int
    data: bytes

    @classmethod
    def ints(cls, type_: int, values: Sequence[int]) -> Tag:
        fmt = {SHORT: "H", LONG: "I", LONG8: "Q"}[type_]
        return cls(type_, len(values), struct.pack(f"<{len(values)}{fmt}", *values))

    def values(self) -> tuple[int, ...]:
        """The integers of a SHORT, LONG or LONG8 tag."""
        fmt = {SHORT: "H", LONG: "I", LONG8: "Q"}[self.type]
        return struct.unpack(f"<{self.count}{fmt}", self.data)


def read_first_ifd(buf: bytes) -> dict[int, Tag]:
    """The tags of the first IFD of the TIFF (classic or BigTIFF) in `buf`."""
    buf = memoryview(buf).cast("B")
    if buf[:2] != b"II":
        raise ValueError("only little-endian TIFF is supported")
    version = struct.unpack_from("<H", buf, 2)[0]
    big = version == 43
    if version not in (42, 43):
        raise ValueError(f"not a TIFF file (version {version})")
    offset = struct.unpack_from("<Q", buf, 8)[0] if big else struct.unpack_from("<I", buf, 4)[0]
    count_fmt, entry_fmt, entry_size, inline = (("<Q", "<HHQ", 20, 8) if big
                                                else ("<H", "<HHI", 12, 4))
    (n,) = struct.unpack_from(count_fmt, buf, offset)
    pos = offset + struct.calcsize(count_fmt)
    tags: dict[int, Tag] = {}
    for _ in range(n):
        tag, type_, count = struct.unpack_from(entry_fmt, buf, pos)
        size = TYPE_SIZES.get(type_, 1) * count
        value_at = pos + struct.calcsize(entry_fmt)
        if size > inline:
            value_at = struct.unpack_from("<Q" if big else "<I", buf, value_at)[0]
        tags[tag] = Tag(type_, count, bytes(buf[value_at:value_at + size]))
        pos += entry_size
    return tags


def ifd_size(tags: Mapping[int, Tag], *, big: bool) -> int:
    """Bytes one IFD takes when written by `write_ifd` (entries, next pointer, values)."""
    entry, inline, head = (20, 8, 8 + 8) if big else (12, 4, 2 + 4)
    values = sum(_padded(len(t.data)) for t in tags.values() if len(t.data) > inline)
    return head + entry * len(tags) + values


def write_ifd(tags: Mapping[int, Tag], *, at: int, next_ifd: int, big: bool) -> bytes:
    """The bytes of one IFD placed at file offset `at`, its out-of-line values right after it."""
    entry_fmt, count_fmt, ptr_fmt, entry, inline = (
        ("<HHQ", "<Q", "<Q", 20, 8) if big else ("<HHI", "<H", "<I", 12, 4))
    ordered = sorted(tags.items())
    head = struct.calcsize(count_fmt) + entry * len(ordered) + struct.calcsize(ptr_fmt)
    entries, values = [struct.pack(count_fmt, len(ordered))], []
    value_at = at + head
    for number, tag in ordered:
        entries.append(struct.pack(entry_fmt, number, tag.type, tag.count))
        if len(tag.data) <= inline:
            entries.append(tag.data.ljust(inline, b"\0"))
        else:
            entries.append(struct.pack(ptr_fmt, value_at))
            padded = tag.data.ljust(_padded(len(tag.data)), b"\0")
            values.append(padded)
            value_at += len(padded)
    entries.append(struct.pack(ptr_fmt, next_ifd))
    return b"".join(entries + values)


def header(*, big: bool, first_ifd: int) -> bytes:
    """The TIFF file header pointing at the first IFD."""
    if big:
        return b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd)
    return b"II" + struct.pack("<HI", 42, first_ifd)


def _padded(n: int) -> int:
    return n + (n & 1)  # values start on a word boundary
