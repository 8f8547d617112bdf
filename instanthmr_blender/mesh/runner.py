"""Running the MHR module: in this Python, or in a separate Python as a worker.

Where torch runs. torch is optional and never imported on the default path (capture, solve, rig). The
module runs either in-process, when no separate Python is configured and `import torch` works in this
Python, or in a separate Python the user points to (preference "Python for the body mesh", CLI
`--mesh-python PATH`): `workers/mesh_worker.py` runs there as a subprocess (`workers/client.py`) and exchanges
length-prefixed `.npy` arrays over stdin/stdout, one batch of frames per request (no pickle, so no code crosses
the pipe). Blender's own Python usually has no torch, so the separate Python is the usual path.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..workers import mesh_worker
from ..workers.client import WorkerProcess
from .errors import ENABLE_TORCH_ADVICE, PROBLEM_CLASSES, MeshModuleError, MeshWorkerError, TorchUnavailableError
from .mhr_module import MODULE_FILENAME

WORKER_SCRIPT = Path(mesh_worker.__file__).resolve()


class InProcessRunner:
    """The module loaded in this Python (needs torch here). `faces` (Fc, 3) int32, `num_vertices`."""

    def __init__(self, module_path: str | os.PathLike) -> None:
        self.module_path = Path(module_path)
        self._name = f"`{self.module_path.name}`"
        try:
            self._module = mesh_worker.load_module(self.module_path)
            info, self.faces = mesh_worker.describe_module(self._module, self._name)
        except mesh_worker.WorkerProblem as problem:
            raise PROBLEM_CLASSES[problem.kind](str(problem)) from None
        self.num_vertices = int(info["num_vertices"])

    def evaluate(self, identity: np.ndarray, model_params: np.ndarray) -> np.ndarray:
        """identity (B, 45), model_params (B, 204) -> verts (B, V, 3) float32, cm, MHR-native axes."""
        try:
            return mesh_worker.evaluate(self._module, identity, model_params, self._name)
        except mesh_worker.WorkerProblem as problem:
            raise PROBLEM_CLASSES[problem.kind](str(problem)) from None

    def close(self) -> None:
        self._module = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SubprocessRunner:
    """The module run by `mesh_worker.py` under another Python (see the module docstring for the protocol).

    Same interface as InProcessRunner. Worker errors arrive as the matching MeshError; a worker that dies
    raises MeshWorkerError with its exit status and its last line of output (workers.client.WorkerProcess).
    """

    def __init__(self, module_path: str | os.PathLike, python: str | os.PathLike) -> None:
        self.module_path = Path(module_path)
        self.python = Path(python)
        if not self.python.is_file() or not os.access(self.python, os.X_OK):
            raise MeshWorkerError(
                f"the Python for the body mesh `{self.python}` is not an executable file: set it to a python "
                "executable that has torch installed (for example `/path/to/venv/bin/python`)"
            )
        if not self.module_path.is_file():
            raise MeshModuleError(
                f"MHR module `{self.module_path}` does not exist: point at `{MODULE_FILENAME}` from the MHR "
                "release archive (assets.zip, folder assets/)"
            )
        self._worker = WorkerProcess(
            self.python, WORKER_SCRIPT, [str(self.module_path)], describe="the body-mesh worker",
            error=MeshWorkerError, problems=PROBLEM_CLASSES,
        )  # fmt: skip
        try:
            header, arrays = self._worker.receive("ready", None)
        except BaseException:
            self.close()
            raise
        self.faces = np.asarray(arrays[0], np.int32)
        self.num_vertices = int(header["num_vertices"])
        self.torch_version = str(header.get("torch", ""))

    def evaluate(self, identity: np.ndarray, model_params: np.ndarray) -> np.ndarray:
        """identity (B, 45), model_params (B, 204) -> verts (B, V, 3) float32, cm, MHR-native axes."""
        arrays = [np.asarray(identity, np.float32), np.asarray(model_params, np.float32)]
        return self._worker.request({"op": "evaluate"}, arrays, "vertices", None)[1][0]

    def echo(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Send arrays to the worker and back (a check of the channel)."""
        return self._worker.request({"op": "echo"}, list(arrays), "echo", None)[1]

    def close(self) -> None:
        self._worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def torch_importable() -> bool:
    """Whether `import torch` would find a package here (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def open_runner(module_path: str | os.PathLike, python: str | os.PathLike | None = None):
    """The module ready to evaluate: in `python` (a separate Python, as a worker) when given, else in this
    Python when torch is importable here, else TorchUnavailableError saying how to enable the mesh."""
    if python:
        return SubprocessRunner(module_path, python)
    if not torch_importable():
        raise TorchUnavailableError(ENABLE_TORCH_ADVICE)
    return InProcessRunner(module_path)
