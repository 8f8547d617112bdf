"""A model folder of contract-shaped stand-ins (contract_models.py) under the file names the add-on looks for,
for the real-Blender tests and the Blender benchmark (tools/bench_blender.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_models(folder: Path, *, people: int = 2, image_size=(994, 1768)) -> Path:
    """Contract-shaped stand-in models (RF-DETR ONNX finding `people` fixed boxes, InstantHMR returning a real
    SAM 3D Body pose) under the file names the add-on looks for in its model folder."""
    from .contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model  # onnx: only when asked

    folder.mkdir(parents=True, exist_ok=True)
    centres = np.linspace(0.3, 0.7, people) if people > 1 else [0.5]
    boxes = tuple(DetectorBox(float(cx), 0.55, 0.18, 0.75) for cx in centres)
    build_rfdetr_model(folder / "rfdetr-nano.onnx", boxes=boxes)
    build_instanthmr_model(folder / "instanthmr.onnx", image_size=image_size)
    return folder
