"""The optional body mesh: each person's MHR mesh per frame, from the take's `mhr_params`, through Meta's MHR
TorchScript module (`mhr_model.pt`), streamed into a PC2 point cache in Blender world space. One module per
concept: errors.py (the MeshError family), body.py (identity, module input, units and axes, MHR -> camera and
world), runner.py (the module in this Python or in a separate one; where torch runs), mhr_module.py (the module
file, extracted from the MHR release archive, and its level of detail), point_cache.py (the PC2 format and one
person's mesh animation written into it). The public names are re-exported here.
"""

from __future__ import annotations

from .body import mhr_to_camera, mhr_to_world, model_parameters, robust_identity
from .errors import (
    ENABLE_TORCH_ADVICE,
    MeshError,
    MeshModuleError,
    MeshWorkerError,
    TorchUnavailableError,
)
from .mhr_module import (
    ARCHIVE_MEMBER,
    MESH_FOLDER,
    MODULE_FILENAME,
    RELEASE_LOD,
    RELEASE_NUM_VERTICES,
    check_lod,
    ensure_mhr_module,
    extract_mhr_module,
)
from .point_cache import (
    DEFAULT_BATCH_SIZE,
    PC2_HEADER,
    PC2_MAGIC,
    PersonCache,
    PointCacheWriter,
    Progress,
    read_point_cache,
    write_person_cache,
)
from .runner import WORKER_SCRIPT, InProcessRunner, SubprocessRunner, open_runner, torch_importable

__all__ = [
    "ARCHIVE_MEMBER", "DEFAULT_BATCH_SIZE", "ENABLE_TORCH_ADVICE", "MESH_FOLDER", "MODULE_FILENAME", "PC2_HEADER",
    "PC2_MAGIC", "RELEASE_LOD", "RELEASE_NUM_VERTICES", "WORKER_SCRIPT", "InProcessRunner", "MeshError",
    "MeshModuleError", "MeshWorkerError", "PersonCache", "PointCacheWriter", "Progress", "SubprocessRunner",
    "TorchUnavailableError", "check_lod", "ensure_mhr_module", "extract_mhr_module", "mhr_to_camera",
    "mhr_to_world", "model_parameters", "open_runner", "read_point_cache", "robust_identity", "torch_importable",
    "write_person_cache",
]  # fmt: skip
