"""Just enough PNG and pcap reading for tests: image size and how much of it is drawn on;
the packets of a capture file. Standard library only."""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> list[bytes]:
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    offset = 0
    for _ in range(height):
        kind = raw[offset]
        row = bytearray(raw[offset + 1 : offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                row[i] = (row[i] + pred) & 0xFF
        rows.append(bytes(row))
        previous = row
    return rows


def png_stats(path: Path) -> tuple[int, int, int, float]:
    """(width, height, distinct colours, share of pixels unlike the most common colour) of an
    8-bit RGB or RGBA, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    offset, idat = 8, b""
    width = height = bpp = 0
    while offset < len(data):
        length, kind = struct.unpack_from("!I4s", data, offset)
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack_from("!IIBB", body)
            assert depth == 8 and colour in (2, 6), (depth, colour)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    rows = _unfilter(zlib.decompress(idat), width, height, bpp)
    pixels: Counter[bytes] = Counter()
    for row in rows[:: max(1, height // 200)]:
        for x in range(0, width * bpp, bpp * max(1, width // 200)):
            pixels[row[x : x + 3]] += 1
    total = sum(pixels.values())
    background = pixels.most_common(1)[0][1]
    return width, height, len(pixels), 1 - background / total


def pcap_packets(path: Path) -> list[bytes]:
    """The frames of a classic pcap file (microsecond or nanosecond, either byte order)."""
    data = path.read_bytes()
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    assert magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4",
                     b"\xa1\xb2\x3c\x4d"), "not a pcap file"
    offset, frames = 24, []
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack_from(order + "IIII", data, offset)
        frames.append(data[offset + 16 : offset + 16 + captured])
        offset += 16 + captured
    return frames
