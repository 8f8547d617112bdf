"""fp16 ONNX graphs on providers without fast fp16 arithmetic: convert the weights to fp32 once and cache that.

Upstream ships InstantHMR as an fp16 graph with a float32 boundary (`convert_float_to_float16(keep_io_types=True)`).
x86 CPUs have no fp16 arithmetic, so ONNX Runtime's CPU provider runs it slower than the same network in fp32
(measured in `tools/bench_pipeline.py`). Turning every fp16 tensor back into fp32 is exact (fp16 values are a
subset of fp32), so the converted graph computes what the fp16 one computes, in fp32 arithmetic.

The add-on bundles onnxruntime but not the `onnx` package, so the conversion edits the protobuf wire format
directly: only the few message fields that carry element types are touched (tensor data types and data, type
protos of graph values, the `to`/`dtype` attributes of Cast and friends, nested graphs); every other byte is
copied as it is. Field numbers are those of `onnx.proto` (ONNX IR 3-10).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .files import file_identity, sha256_of

FLOAT, FLOAT16 = 1, 10  # TensorProto.DataType values
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
#: The converted file sits beside the model as `<name>.fp32-<first 16 hex digits of its SHA-256>.onnx`.
CACHE_TAG = ".fp32-"


class ConversionUnsupported(ValueError):
    """The graph uses something this converter does not rewrite (external data, fp16 sparse tensors...)."""


# ------------------------------------------------------------------------------------------------------------
# Protobuf wire format: a message is a list of (field number, wire type, value); value is an int for varints,
# bytes otherwise.


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields are written as 10-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _parse(data: bytes | memoryview) -> list[tuple[int, int, object]]:
    view = memoryview(data)
    fields, pos = [], 0
    while pos < len(view):
        key, pos = _read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(view, pos)
        elif wire == _LEN:
            size, pos = _read_varint(view, pos)
            value, pos = view[pos : pos + size], pos + size
        elif wire == _FIXED64:
            value, pos = view[pos : pos + 8], pos + 8
        elif wire == _FIXED32:
            value, pos = view[pos : pos + 4], pos + 4
        else:
            raise ConversionUnsupported(f"protobuf wire type {wire} (groups) is not used by ONNX")
        fields.append((number, wire, value))
    return fields


def _serialise(fields: list[tuple[int, int, object]]) -> bytes:
    parts: list[bytes] = []
    for number, wire, value in fields:
        parts.append(_varint(number << 3 | wire))
        if wire == _VARINT:
            parts.append(_varint(int(value)))
        elif wire == _LEN:
            parts.append(_varint(len(value)))
            parts.append(bytes(value))
        else:
            parts.append(bytes(value))
    return b"".join(parts)


def _rewrite(data, rules: dict[int, Callable[[object], object]]) -> bytes:
    """Re-serialise a message with each field whose number is in `rules` replaced by rule(value)."""
    return _serialise([(n, w, rules[n](v) if n in rules else v) for n, w, v in _parse(data)])


# ------------------------------------------------------------------------------------------------------------
# ONNX messages.


class _Converter:
    def __init__(self) -> None:
        self.converted = 0  # fp16 tensors and types turned into fp32

    def model(self, data) -> bytes:
        # ModelProto: 7 graph; 25 functions (local functions are not rewritten: refused below if fp16)
        fields = _parse(data)
        if any(number == 25 for number, _, _ in fields):
            raise ConversionUnsupported("the model has local functions")
        return _serialise([(n, w, self.graph(v) if n == 7 else v) for n, w, v in fields])

    def graph(self, data) -> bytes:
        # GraphProto: 1 node, 5 initializer, 11 input, 12 output, 13 value_info, 15 sparse_initializer
        def refuse_sparse(value):
            if FLOAT16 in _tensor_types(value):
                raise ConversionUnsupported("the model has fp16 sparse initializers")
            return value

        return _rewrite(data, {1: self.node, 5: self.tensor, 11: self.value_info, 12: self.value_info,
                               13: self.value_info, 15: refuse_sparse})

    def node(self, data) -> bytes:
        return _rewrite(data, {5: self.attribute})  # NodeProto: 5 attribute

    def attribute(self, data) -> bytes:
        # AttributeProto: 1 name, 3 i, 5 t, 6 g, 10 tensors, 11 graphs, 14 tp, 15 type_protos
        fields = _parse(data)
        name = next((bytes(v).decode() for n, _, v in fields if n == 1), "")
        out = []
        for number, wire, value in fields:
            if number == 3 and name in ("to", "dtype") and value == FLOAT16:
                value = FLOAT  # Cast(to=fp16), RandomNormal(dtype=fp16), EyeLike(dtype=fp16)...
                self.converted += 1
            elif number in (5, 10):
                value = self.tensor(value)
            elif number in (6, 11):
                value = self.graph(value)
            elif number in (14, 15):
                value = self.type_proto(value)
            out.append((number, wire, value))
        return _serialise(out)

    def tensor(self, data) -> bytes:
        # TensorProto: 1 dims, 2 data_type, 5 int32_data, 9 raw_data, 14 data_location (1 = external)
        fields = _parse(data)
        if not any(n == 2 and v == FLOAT16 for n, _, v in fields):
            return bytes(data)
        if any(n == 14 and v == 1 for n, _, v in fields):
            raise ConversionUnsupported("fp16 weights are stored in external data files")
        halves = [bytes(v) for n, _, v in fields if n == 9]
        if halves:
            values = np.frombuffer(halves[0], "<f2")
        else:  # small tensors may keep fp16 bit patterns in int32_data (packed or one varint per value)
            bits: list[int] = []
            for n, w, v in fields:
                if n == 5 and w == _LEN:
                    view, pos = memoryview(v), 0
                    while pos < len(view):
                        value, pos = _read_varint(view, pos)
                        bits.append(value)
                elif n == 5:
                    bits.append(int(v))
            values = np.array(bits, np.uint16).view("<f2")
        out = [(n, w, v) for n, w, v in fields if n not in (2, 5, 9)]
        out.append((2, _VARINT, FLOAT))
        out.append((9, _LEN, values.astype("<f4").tobytes()))
        self.converted += 1
        return _serialise(out)

    def value_info(self, data) -> bytes:
        return _rewrite(data, {2: self.type_proto})  # ValueInfoProto: 2 type

    def type_proto(self, data) -> bytes:
        # TypeProto: 1 tensor_type, 4 sequence_type, 5 map_type, 8 sparse_tensor_type, 9 optional_type
        return _rewrite(data, {1: self.tensor_type, 8: self.tensor_type, 4: self.element_holder,
                               9: self.element_holder, 5: self.map_type})

    def tensor_type(self, data) -> bytes:
        # TypeProto.Tensor: 1 elem_type, 2 shape
        fields = _parse(data)
        out = []
        for number, wire, value in fields:
            if number == 1 and value == FLOAT16:
                value = FLOAT
                self.converted += 1
            out.append((number, wire, value))
        return _serialise(out)

    def element_holder(self, data) -> bytes:
        return _rewrite(data, {1: self.type_proto})  # Sequence / Optional: 1 elem_type (a TypeProto)

    def map_type(self, data) -> bytes:
        return _rewrite(data, {2: self.type_proto})  # Map: 1 key_type, 2 value_type


def _tensor_types(data) -> set[int]:
    """The data types of the tensors inside a SparseTensorProto (1 values, 2 indices)."""
    found = set()
    for number, _, value in _parse(data):
        if number in (1, 2):
            found |= {v for n, _, v in _parse(value) if n == 2}
    return found


def convert_fp16_to_fp32(model_bytes: bytes) -> bytes | None:
    """An ONNX model (serialised ModelProto) with every fp16 tensor, type and cast made fp32; None when it has
    nothing in fp16. Raises ConversionUnsupported for graphs it cannot rewrite completely."""
    converter = _Converter()
    converted = converter.model(model_bytes)
    return converted if converter.converted else None


# ------------------------------------------------------------------------------------------------------------
# The cache beside the model.


def cached_fp32_path(path: Path, digest: str) -> Path:
    """Where the fp32 conversion of the model at `path` with SHA-256 `digest` is cached."""
    return path.with_name(f"{path.stem}{CACHE_TAG}{digest[:16]}.onnx")


#: Identities (model_files.file_identity) of files found to have no fp16 tensor in this process.
_NOTHING_IN_FP16: set[tuple] = set()


def fp32_model_for_cpu(path: str | os.PathLike, log: Callable[[str], None]) -> Path | bytes:
    """What to load on a provider without fast fp16: `path` itself when the graph has no fp16, else its fp32
    conversion (a cached file beside it, keyed by the model's hash; made on first use; the converted bytes
    when the folder is read-only). A graph the converter cannot rewrite is used as it is, with one log line."""
    path = Path(path)
    if CACHE_TAG in path.name:
        return path  # already a conversion
    identity = file_identity(path)
    if identity in _NOTHING_IN_FP16:
        return path  # read through once already in this process: nothing to convert
    digest = sha256_of(path)
    cached = cached_fp32_path(path, digest)
    if cached.is_file():
        log(f"`{path.name}` has fp16 weights: using its fp32 conversion `{cached.name}` (faster on the CPU)")
        return cached
    try:
        converted = convert_fp16_to_fp32(path.read_bytes())
    except (ConversionUnsupported, IndexError, ValueError) as error:
        log(f"`{path.name}`: its fp16 weights could not be converted to fp32 ({error}); running it as it is")
        return path
    if converted is None:
        _NOTHING_IN_FP16.add(identity)  # an fp32 model is not parsed again on the next load
        return path
    partial = cached.with_name(cached.name + ".partial")
    try:
        partial.write_bytes(converted)
        os.replace(partial, cached)
    except OSError as error:
        log(f"`{path.name}` has fp16 weights: converted to fp32 in memory (could not cache it beside the model: "
            f"{error.strerror or error})")
        return converted
    log(f"`{path.name}` has fp16 weights: converted once to fp32 for the CPU, cached as `{cached.name}`")
    return cached
