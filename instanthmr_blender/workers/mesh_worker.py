"""Runs Meta's MHR TorchScript body module (`mhr_model.pt`) for the body mesh, in-process or as a worker process.

Standalone on purpose: `python mesh_worker.py MODEL.pt` runs under any Python that has numpy and torch (not
Blender's), imports nothing from the add-on but the protocol file beside it (loaded by `bootstrap.py`), and
speaks that protocol over stdin/stdout.
The engine (`mesh/`) imports the same functions to run the module in-process; torch is imported lazily.

Protocol: `protocol.py` (length-prefixed JSON headers and `.npy` arrays, no pickle). The worker first sends
`{"op": "ready", "num_vertices", "num_faces", "torch"}` with the faces `(Fc, 3) int32`, or an error. Requests:
`{"op": "evaluate"}` with identity `(B, 45) float32` and model_params `(B, 204) float32` -> `{"op": "vertices"}`
with verts `(B, V, 3) float32` (cm, MHR-native axes); `{"op": "echo"}` -> the same arrays back; `{"op":
"close"}` (or end of input) -> the worker exits 0. Any failure -> `{"op": "error", "kind", "message"}`, where
kind is "torch" (torch missing), "module" (the file is not a usable MHR module) or "request".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

if __package__:
    from . import protocol
else:  # run as a script under another Python: bootstrap.py beside this file comes first
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bootstrap import protocol_module

    protocol = protocol_module()
# the protocol's names, as the add-on and the tests reach them through this module
read_message, run_worker, write_message = protocol.read_message, protocol.run_worker, protocol.write_message
WorkerProblem = protocol.WorkerProblem

NUM_IDENTITY = 45
NUM_MODEL_PARAMS = 204
NUM_EXPRESSION = 72
NUM_SKELETON_JOINTS = 127
SKELETON_STATE_SIZE = 8  # translation (3, cm), rotation quaternion (x, y, z, w), scale
# Where the release module keeps its triangle list (a buffer of the traced pymomentum character).
FACES_BUFFER = "character_torch.mesh.faces"


# ---------------------------------------------------------------------------------------------------------
# The module (torch, imported only here).


def import_torch():
    """torch, or WorkerProblem("torch") saying how to get it into this Python."""
    try:
        import torch
    except Exception as error:  # ImportError, or a broken install raising anything at import
        raise WorkerProblem(
            "torch",
            f"the Python at `{sys.executable}` cannot import torch ({error}): install it there with "
            f"`{sys.executable} -m pip install torch`, or point the add-on at a Python that has it",
        ) from None
    return torch


def load_module(path: str | os.PathLike):
    """Load a TorchScript file on the CPU, in eval mode. WorkerProblem("module") when it is not one."""
    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise WorkerProblem(
            "module",
            f"MHR module `{path}` does not exist: point at `mhr_model.pt` from the MHR release archive "
            "(assets.zip, folder assets/)",
        )
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkerProblem(
            "module",
            f"`{path.name}` is not a TorchScript module ({first_line}): use `mhr_model.pt` from the MHR "
            "release archive (assets.zip, v1.0.0 or later)",
        ) from None
    return module.eval()


def describe_module(module, name: str = "the MHR module") -> tuple[dict, np.ndarray]:
    """Check the module on a one-row call and read its faces: ({"num_vertices", "num_faces", "torch"},
    faces (Fc, 3) int32). WorkerProblem("module") names the first mismatch with MHR's contract."""
    torch = import_torch()
    verts = _call(module, name, np.zeros((1, NUM_IDENTITY), np.float32), np.zeros((1, NUM_MODEL_PARAMS), np.float32))
    num_vertices = int(verts.shape[1])
    faces = _faces(module, name, num_vertices)
    return {"num_vertices": num_vertices, "num_faces": int(faces.shape[0]), "torch": torch.__version__}, faces


def evaluate(module, identity: np.ndarray, model_params: np.ndarray, name: str = "the MHR module") -> np.ndarray:
    """identity (B, 45), model_params (B, 204) -> verts (B, V, 3) float32, cm, MHR-native axes (expression 0)."""
    identity = np.asarray(identity, np.float32)
    model_params = np.asarray(model_params, np.float32)
    if identity.ndim != 2 or identity.shape[1] != NUM_IDENTITY:
        raise WorkerProblem("request", f"identity must be (B, {NUM_IDENTITY}), got {identity.shape}")
    if model_params.shape != (identity.shape[0], NUM_MODEL_PARAMS):
        raise WorkerProblem(
            "request", f"model_params must be ({identity.shape[0]}, {NUM_MODEL_PARAMS}), got {model_params.shape}"
        )
    return _call(module, name, identity, model_params)


def _call(module, name: str, identity: np.ndarray, model_params: np.ndarray) -> np.ndarray:
    torch = import_torch()
    rows = identity.shape[0]
    signature = (
        f"(identity[{rows},{NUM_IDENTITY}], model_params[{rows},{NUM_MODEL_PARAMS}], "
        f"expr[{rows},{NUM_EXPRESSION}])"
    )
    try:
        with torch.inference_mode():
            outputs = module(
                # Copies: torch wants writable arrays, and a broadcast identity is a read-only view.
                torch.from_numpy(np.array(identity, np.float32)),
                torch.from_numpy(np.array(model_params, np.float32)),
                torch.zeros((rows, NUM_EXPRESSION), dtype=torch.float32),
            )
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkerProblem(
            "module",
            f"{name} rejected the MHR call {signature} ({first_line}): is it `mhr_model.pt` from the MHR release?",
        ) from None
    if not isinstance(outputs, tuple | list) or len(outputs) < 2 or not all(
        isinstance(o, torch.Tensor) for o in outputs[:2]
    ):
        got = type(outputs).__name__ + (f" of {len(outputs)}" if isinstance(outputs, tuple | list) else "")
        raise WorkerProblem(
            "module", f"{name} returned {got}; expected (verts[B,V,3], skel_state[B,127,8]): not an MHR module"
        )
    verts, skeleton = outputs[0], outputs[1]
    if verts.ndim != 3 or verts.shape[0] != rows or verts.shape[2] != 3 or verts.shape[1] < 1:
        raise WorkerProblem(
            "module", f"{name} returned verts of shape {tuple(verts.shape)}; expected ({rows}, V, 3)"
        )
    expected_skeleton = (rows, NUM_SKELETON_JOINTS, SKELETON_STATE_SIZE)
    if tuple(skeleton.shape) != expected_skeleton:
        raise WorkerProblem(
            "module", f"{name} returned skel_state of shape {tuple(skeleton.shape)}; expected {expected_skeleton}"
        )
    return verts.detach().to(device="cpu", dtype=torch.float32).numpy()


def _faces(module, name: str, num_vertices: int) -> np.ndarray:
    buffers = dict(module.named_buffers())
    faces = buffers.get(FACES_BUFFER)
    if faces is None:
        raise WorkerProblem(
            "module", f"{name} has no `{FACES_BUFFER}` buffer (the triangle list of MHR's mhr_model.pt)"
        )
    faces = faces.detach().cpu().numpy()
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise WorkerProblem(
            "module", f"{name}: `{FACES_BUFFER}` has shape {faces.shape} dtype {faces.dtype}; expected (Fc, 3) ints"
        )
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise WorkerProblem(
            "module", f"{name}: `{FACES_BUFFER}` indexes vertices {faces.min()}..{faces.max()} but verts has "
            f"{num_vertices}",
        )
    return faces.astype(np.int32)


# ---------------------------------------------------------------------------------------------------------
# The worker process.


def serve(module_path: str, requests, replies) -> int:
    """Load the module, announce it, answer requests until close or end of input. Returns the exit status."""
    name = f"`{Path(module_path).name}`"
    try:
        module = load_module(module_path)
        info, faces = describe_module(module, name)
    except WorkerProblem as problem:
        protocol.report(replies, problem)
        return 1
    write_message(replies, {"op": "ready", **info}, [faces])

    def evaluate_request(header: dict, arrays: list) -> tuple[dict, list]:
        if len(arrays) != 2:
            raise WorkerProblem("request", f"evaluate needs 2 arrays (identity, model_params), got {len(arrays)}")
        return {"op": "vertices"}, [evaluate(module, arrays[0], arrays[1], name)]

    handlers = {"echo": lambda header, arrays: ({"op": "echo"}, arrays), "evaluate": evaluate_request}
    return protocol.answer_requests(requests, replies, handlers)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python mesh_worker.py MODEL.pt  (then speak the protocol on stdin/stdout)", file=sys.stderr)
        return 2
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so anything the module or torch
    # prints lands in the log instead of corrupting the stream.
    return run_worker(lambda requests, replies: serve(argv[0], requests, replies))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
