"""TEST-ENVIRONMENT WORKAROUND for importing torchvision (and so rfdetr, timm) in the dev venv; never product code.

The dev venv pairs a local CPU torch wheel with PyPI's torchvision wheel, whose compiled ops are built for a CUDA
torch and fail to load; `import torchvision` then stops with "operator torchvision::nms does not exist" while
registering fake kernels for `nms` and `qnms`. Declaring those two schemas first lets the import finish; RF-DETR
and the timm backbones never call either op (DETR needs no NMS). Users install matching builds and never get
here: where torchvision's own ops load, this does nothing. Shared by the RF-DETR tests and the benchmark-model
builder (`tools/build_bench_models.py`).
"""

import importlib.util
import sys
from pathlib import Path

_SCHEMA_LIBRARIES = []


def work_around_mismatched_torchvision() -> None:
    """Make `import torchvision` work with a torchvision whose compiled ops do not match torch (see above)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or "torchvision" in sys.modules or _SCHEMA_LIBRARIES:
        return
    import torch

    compiled = sorted(Path(spec.origin).parent.glob("_C.*"))
    if compiled:
        try:
            torch.ops.load_library(str(compiled[0]))
            return  # matching builds: torchvision registers its ops itself
        except (OSError, RuntimeError):
            pass
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SCHEMA_LIBRARIES.append(library)  # the schemas live as long as this object
