"""What goes wrong with the body mesh: one MeshError family, each message naming the input and what to do."""

from __future__ import annotations


class MeshError(RuntimeError):
    """The body mesh could not be built; the message names the input and what to do."""


class TorchUnavailableError(MeshError):
    """No torch in this Python and no separate Python configured."""


class MeshModuleError(MeshError):
    """The file is not a usable MHR module (not TorchScript, wrong call signature or output shapes)."""


class MeshWorkerError(MeshError):
    """The separate Python could not be started, died, or answered garbage."""


# The worker's problem kinds (mesh_worker.WorkerProblem.kind, and its error replies) -> the error raised here.
PROBLEM_CLASSES = {"torch": TorchUnavailableError, "module": MeshModuleError, "request": MeshWorkerError}

ENABLE_TORCH_ADVICE = (
    "the body mesh needs PyTorch, which this Python does not have: install it into a Python of your own "
    "(`python -m pip install torch`) and set that Python as \"Python for the body mesh\" in the InstantHMR "
    "add-on preferences (or pass `--mesh-python PATH` to capture.py)"
)
