"""Phone-style rotation tags written into real mp4 files (both test tiers use them)."""

import struct
from pathlib import Path


def mp4_boxes(data: bytes, start: int, end: int):
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[position + 8:position + 16])[0]
            header = 16
        elif size == 0:
            size = end - position
        yield position, size, kind.decode("latin-1"), header
        position += size


def set_mp4_rotation(path: Path, degrees_clockwise: int) -> None:
    """Write a display matrix into the video track header (moov/trak/tkhd), as phones do."""
    data = bytearray(path.read_bytes())
    start, end = 0, len(data)
    for wanted in ("moov", "trak", "tkhd"):
        for position, size, kind, header in mp4_boxes(data, start, end):
            if kind == wanted:
                start, end = position + header, position + size
                break
        else:
            raise AssertionError(f"no {wanted} box in {path}")
    version = data[start]
    # full-box header (4), times and ids (20 or 32), reserved (8), layer/group/volume/reserved (8)
    matrix_at = start + 4 + (20 if version == 0 else 32) + 16
    one = 0x10000
    matrices = {0: (one, 0, 0, one), 90: (0, one, -one, 0), 180: (-one, 0, 0, -one), 270: (0, -one, one, 0)}
    a, b, c, d = matrices[degrees_clockwise]
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
