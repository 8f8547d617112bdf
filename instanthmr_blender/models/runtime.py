"""ONNX Runtime sessions: pick an execution provider that really exists, and check a model's signature.

Every model file the engine loads goes through here, so a missing, corrupt or wrong file gives one clear
`ModelError` naming the file and what to do, never a traceback from deep inside onnxruntime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from .fp16 import fp32_model_for_cpu

_LOG = logging.getLogger("instanthmr")

#: The user-facing device names and the execution provider each one asks for.
DEVICE_PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: "auto" tries these in order; the CPU provider is always there.
AUTO_ORDER: tuple[str, ...] = ("cuda", "directml", "coreml", "cpu")

_ORT_FLOAT = "tensor(float)"


class ModelError(ValueError):
    """A model file is missing, unreadable, or not the model it should be. The message names the file."""


def available_devices() -> list[str]:
    """Device names usable in this process, for the UI: "auto" first, then each present provider, "cpu" last."""
    present = set(ort.get_available_providers())
    return ["auto"] + [name for name in AUTO_ORDER if DEVICE_PROVIDERS[name] in present]


def _choose_provider(device: str, log: Callable[[str], None]) -> str:
    present = set(ort.get_available_providers())
    if device == "auto":
        for name in AUTO_ORDER:
            if DEVICE_PROVIDERS[name] in present:
                return DEVICE_PROVIDERS[name]
        return DEVICE_PROVIDERS["cpu"]
    if device not in DEVICE_PROVIDERS:
        raise ModelError(f"unknown device {device!r}: use one of {', '.join(['auto', *DEVICE_PROVIDERS])}")
    wanted = DEVICE_PROVIDERS[device]
    if wanted in present:
        return wanted
    log(
        f"device {device!r} asked for, but this onnxruntime has no {wanted} "
        f"(it has: {', '.join(sorted(present))}); using the CPU"
    )
    return DEVICE_PROVIDERS["cpu"]


def create_session(
    model_path: str | os.PathLike,
    *,
    device: str = "auto",
    threads: int = 0,
    spin: bool = True,
    keep_fp16: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[ort.InferenceSession, str]:
    """Open an ONNX model on the best available provider for `device`.

    device: "auto" | "cpu" | "cuda" | "coreml" | "directml". A provider this onnxruntime lacks, or one that
    fails to initialise, falls back to the CPU with one log line saying what was chosen and why.
    threads: intra-op threads for the CPU provider; 0 lets onnxruntime decide.
    spin: let idle intra-op threads busy-wait for the next run (onnxruntime's default). Turn it off where two
    sessions take turns on the same cores: a session's spinning threads would steal them from the other's run.
    keep_fp16: run an fp16 graph as it is on the CPU provider. By default its fp32 conversion runs there
    instead (`precision.fp32_model_for_cpu`: the CPU has no fast fp16 arithmetic).
    Returns (session, provider actually in use, e.g. "CPUExecutionProvider").
    Raises ModelError for a missing, unreadable or non-ONNX file.
    """
    log = log or _LOG.info
    path = Path(model_path)
    if not path.exists():
        raise ModelError(f"`{path}` does not exist: check the model path in the add-on preferences")
    if not path.is_file():
        raise ModelError(f"`{path}` is a folder, not an .onnx model file: pick the file itself")

    provider = _choose_provider(device, log)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, int(threads))
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are noise for users
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    on_cpu = provider == DEVICE_PROVIDERS["cpu"]
    providers = [provider] if on_cpu else [provider, DEVICE_PROVIDERS["cpu"]]
    source: Path | bytes = path
    if on_cpu and not keep_fp16:
        source = fp32_model_for_cpu(path, log)
    try:
        session = ort.InferenceSession(
            source if isinstance(source, bytes) else str(source), sess_options=options, providers=providers
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise ModelError(
            f"`{path.name}` could not be loaded as an ONNX model ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no details'}): "
            "is it the right file, and fully downloaded?"
        ) from exc

    in_use = session.get_providers()[0]
    if in_use != provider:
        # onnxruntime silently drops a provider whose libraries (CUDA, cuDNN...) fail to load.
        log(f"{provider} could not start for `{path.name}` (missing drivers or libraries?); using {in_use}")
    else:
        log(f"`{path.name}` runs on {in_use}")
    return session, in_use


@dataclass(frozen=True)
class TensorSpec:
    """What one model input or output must look like.

    shape: one entry per axis; an int is a fixed size, None an axis of any size (e.g. the batch).
    """

    name: str
    shape: tuple[int | None, ...]


def _format_shape(shape: Sequence[object]) -> str:
    return "[" + ",".join("N" if d is None or isinstance(d, str) else str(d) for d in shape) + "]"


def _check_one(
    model_name: str, kind: str, expected: TensorSpec, actual: ort.NodeArg, model_hint: str
) -> None:
    shape = list(actual.shape or [])
    mismatch = len(shape) != len(expected.shape) or any(
        isinstance(have, int) and want is not None and have != want
        for have, want in zip(shape, expected.shape)
    )
    if mismatch:
        raise ModelError(
            f"{model_name}: {kind} '{actual.name}' has shape {_format_shape(shape)}, expected "
            f"{_format_shape(expected.shape)} — {model_hint}"
        )
    if actual.type != _ORT_FLOAT:
        raise ModelError(
            f"{model_name}: {kind} '{actual.name}' is {actual.type}, expected float32 — {model_hint}"
        )


def check_signature(
    session: ort.InferenceSession,
    model_name: str,
    *,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    outputs_by_name: bool,
    model_hint: str,
) -> None:
    """Compare a session's inputs and outputs with the expected specs; raise ModelError at the first mismatch.

    Inputs are matched by position (the engine feeds them under the session's own names) and outputs by
    name when `outputs_by_name`, else by position. A symbolic axis in the model accepts any expected size;
    a fixed axis must equal a fixed expected size. Everything must be float32.
    model_hint: the question that ends the message, e.g. "is this the InstantHMR model?".
    """
    have_inputs = session.get_inputs()
    if len(have_inputs) != len(inputs):
        raise ModelError(
            f"{model_name}: has {len(have_inputs)} inputs ({', '.join(a.name for a in have_inputs)}), "
            f"expected {len(inputs)} ({', '.join(s.name for s in inputs)}) — {model_hint}"
        )
    for spec, actual in zip(inputs, have_inputs):
        _check_one(model_name, "input", spec, actual, model_hint)

    have_outputs = session.get_outputs()
    if outputs_by_name:
        by_name = {a.name: a for a in have_outputs}
        for spec in outputs:
            if spec.name not in by_name:
                raise ModelError(
                    f"{model_name}: has no output '{spec.name}' (it has: "
                    f"{', '.join(by_name) or 'none'}) — {model_hint}"
                )
            _check_one(model_name, "output", spec, by_name[spec.name], model_hint)
    else:
        if len(have_outputs) < len(outputs):
            raise ModelError(
                f"{model_name}: has {len(have_outputs)} outputs, expected {len(outputs)} "
                f"({', '.join(s.name for s in outputs)}) — {model_hint}"
            )
        for spec, actual in zip(outputs, have_outputs):
            _check_one(model_name, "output", spec, actual, model_hint)


#: onnxruntime's type strings and the numpy dtypes the engine feeds or reads for them.
ORT_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def dtype_name(ort_type: str) -> str:
    """"tensor(float)" -> "float32"; an unlisted type is returned as onnxruntime writes it."""
    return ORT_DTYPES.get(ort_type, ort_type)


def model_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The model's ONNX `metadata_props` (exporters stamp settings there), as text; {} when it has none."""
    return dict(session.get_modelmeta().custom_metadata_map or {})


def describe_io(session: ort.InferenceSession) -> str:
    """The session's signature in one line: `image uint8[N,3,256,256], cliff_cond float32[N,3] -> mhr_params ...`."""

    def one(arg: ort.NodeArg) -> str:
        return f"{arg.name} {dtype_name(arg.type)}{_format_shape(list(arg.shape or []))}"

    return (", ".join(one(a) for a in session.get_inputs()) + " -> "
            + ", ".join(one(a) for a in session.get_outputs()))


def fixed_batch_size(session: ort.InferenceSession) -> int | None:
    """The batch size baked into the model's first input, or None when the batch axis is dynamic."""
    first = session.get_inputs()[0].shape
    return first[0] if first and isinstance(first[0], int) and first[0] > 0 else None
