"""The array protocol the add-on speaks with its worker processes (`mesh_worker.py`, `sam3d_worker.py`).

Standalone on purpose (numpy and the standard library only): a worker running under another Python loads this
file by its path, and the add-on imports it as part of the engine.

A message is `b"IHMR"`, a little-endian uint32 length and that many bytes of UTF-8 JSON (the header, with
`"arrays": n`), then n arrays, each a little-endian uint64 length and a `.npy` file of that length. `.npy` is
read and written with `allow_pickle=False` both ways: data only, never code.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys

import numpy as np

MAGIC = b"IHMR"
_MAX_HEADER_BYTES = 1 << 20


def write_message(stream, header: dict, arrays: list[np.ndarray] = ()) -> None:
    """Write one message (header dict + arrays) to a binary stream and flush it."""
    payload = json.dumps(dict(header, arrays=len(arrays))).encode("utf-8")
    stream.write(MAGIC + struct.pack("<I", len(payload)) + payload)
    for array in arrays:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        data = buffer.getbuffer()
        stream.write(struct.pack("<Q", len(data)))
        stream.write(data)
    stream.flush()


def read_message(stream) -> tuple[dict, list[np.ndarray]]:
    """Read one message; EOFError at a clean end of stream (or a truncated one), ValueError on garbage."""
    start = _read_exactly(stream, 8)
    if start[:4] != MAGIC:
        raise ValueError(f"not a worker message (starts with {start[:16]!r})")
    (length,) = struct.unpack("<I", start[4:])
    if length > _MAX_HEADER_BYTES:
        raise ValueError(f"worker message header of {length} bytes is implausible")
    header = json.loads(_read_exactly(stream, length).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("worker message header is not a JSON object")
    arrays = []
    for _ in range(int(header.get("arrays", 0))):
        (size,) = struct.unpack("<Q", _read_exactly(stream, 8))
        arrays.append(np.load(io.BytesIO(_read_exactly(stream, size)), allow_pickle=False))
    return header, arrays


def _read_exactly(stream, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            raise EOFError(f"stream ended {missing} bytes before the end of a message")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def run_worker(serve) -> int:
    """A worker process's main: `serve(requests, replies)` on stdin and a claimed stdout (see claim_stdout);
    returns its exit status, 0 when the add-on went away mid-reply (nothing left to tell it)."""
    replies = claim_stdout()
    try:
        return serve(sys.stdin.buffer, replies)
    except BrokenPipeError:
        return 0
    finally:
        try:
            replies.close()
        except BrokenPipeError:
            pass


def claim_stdout():
    """The protocol's own binary copy of stdout, for a worker process; fd 1 then points at stderr, so anything a
    model or library prints lands in the log instead of corrupting the stream."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return replies
