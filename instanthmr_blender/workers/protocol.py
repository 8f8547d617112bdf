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
from collections.abc import Callable

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


class WorkerProblem(Exception):
    """A failure a worker reports to the add-on as `{"op": "error", "kind", "message"}`; each worker's docstring
    lists its kinds."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def report(replies, problem: WorkerProblem) -> None:
    write_message(replies, {"op": "error", "kind": problem.kind, "message": str(problem)})


Handler = Callable[[dict, list], tuple[dict, list]]


def answer_requests(requests, replies, handlers: dict[str, Handler],
                    failure: Callable[[Exception], WorkerProblem] | None = None) -> int:
    """A worker's loop: read requests until `close` or the end of input (exit status 0) and answer each with its
    handler's (header, arrays). A WorkerProblem is answered as an error reply and the worker goes on; so is any
    other exception when `failure` turns it into one (without it, the exception ends the worker)."""
    while True:
        try:
            header, arrays = read_message(requests)
        except EOFError:
            return 0
        op = header.get("op")
        if op == "close":
            return 0
        try:
            if op not in handlers:
                raise WorkerProblem("request", f"unknown request {op!r}")
            reply, outputs = handlers[op](header, arrays)
            write_message(replies, reply, outputs)
        except WorkerProblem as problem:
            report(replies, problem)
        except Exception as error:
            if failure is None:
                raise
            report(replies, failure(error))
