#!/usr/bin/env python3
"""Writes a 640x480 RGB test card as PNG (gradients, bars and discs), with the
standard library only: the image the main job runs on when no photo could be
fetched. Usage: python3 scripts/test_card.py OUT.png"""

import struct
import sys
import zlib
from pathlib import Path

WIDTH, HEIGHT = 640, 480
BARS = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
        (192, 0, 192), (192, 0, 0), (0, 0, 192)]
DISCS = [(160, 330, 60, (240, 240, 240)), (330, 360, 80, (30, 30, 30)),
         (500, 320, 50, (250, 120, 20))]


def pixel(x: int, y: int) -> tuple:
    for cx, cy, r, colour in DISCS:
        if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
            return colour
    if y < HEIGHT // 2:
        return BARS[x * len(BARS) // WIDTH]
    return (x * 255 // WIDTH, y * 255 // HEIGHT, 255 - x * 255 // WIDTH)


def png(width: int, height: int) -> bytes:
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(png(WIDTH, HEIGHT))
    tmp.replace(out)


if __name__ == "__main__":
    main()
