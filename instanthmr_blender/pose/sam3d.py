"""SAM 3D Body as the capture's pose model: the add-on's side of `sam3d_worker.py`, run under the Python of the
user's SAM 3D Body environment (the add-on never imports torch).

`Sam3DBody.predict(frame_rgb, boxes)` answers like `InstantHMR.predict` (a `PersonPoses`), so detection,
tracking, the take, the solve and everything after stay the same. The camera is the take's: the worker passes
its intrinsics to SAM 3D Body (`cam_int`), which is what upstream's default does with `f = sqrt(W^2 + H^2)`
and the principal point at the centre, or the known focal length when one is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..video.lens import Lens
from ..workers import sam3d_worker
from ..workers.client import WorkerProcess

if TYPE_CHECKING:
    from .hmr import PersonPoses

# Nothing here imports ONNX Runtime or OpenCV at load time (the panel checks the settings on every redraw);
# hmr.py's helpers are imported where a capture uses them.

WORKER_SCRIPT = Path(sam3d_worker.__file__).resolve()
#: SAM 3D Body's crop square: 1.25 x the box's larger side (upstream's GetBBoxCenterScale padding).
CROP_PADDING = 1.25
LABEL = "SAM 3D Body"
BACKENDS = ("instanthmr", "sam3d")


class Sam3DError(ValueError):
    """SAM 3D Body cannot run as configured (environment, checkpoint, backbone): the message says what to fix
    (bad input, like a missing model file)."""


class Sam3DWorkerError(RuntimeError):
    """The SAM 3D Body worker crashed, hung or failed on a frame."""


_PROBLEMS = {
    "checkpoint": Sam3DError, "torch": Sam3DError, "environment": Sam3DError, "backbone": Sam3DError,
    "request": Sam3DWorkerError, "model": Sam3DWorkerError,
}  # fmt: skip


@dataclass
class Sam3DSettings:
    """Where SAM 3D Body lives. python: the environment's interpreter; checkpoint: the folder with model.ckpt,
    model_config.yaml and assets/mhr_model.pt; code: a checkout of facebookresearch/sam-3d-body when it is not
    installed in that Python; backbone: the Embedl INT8 build (.pt2, .onnx or a TensorRT .engine), "" for the
    checkpoint's FP32 backbone. Timeouts in seconds: loading (first TensorRT build included), then per frame."""

    python: str = ""
    checkpoint: str = ""
    code: str = ""
    backbone: str = ""
    engine_cache: str = ""
    device: str = "auto"  # auto | cuda | cpu | mps
    inference_type: str = "full"  # full (body + hand decoders, upstream's default) | body
    load_timeout: float = 1800.0
    frame_timeout: float = 300.0

    def check(self) -> None:
        """Sam3DError naming the first thing that is missing, before any worker starts."""
        if not self.python:
            raise Sam3DError(
                "SAM 3D Body needs its own Python environment: set \"SAM 3D Body Python\" in the preferences (or "
                "--sam3d-python) to the python of an environment with torch and facebookresearch/sam-3d-body"
            )
        python = Path(self.python)
        if not python.is_file() or not os.access(python, os.X_OK):
            raise Sam3DError(
                f"the SAM 3D Body Python `{python}` is not an executable file: point at the python of your "
                "SAM 3D Body environment (for example `/path/to/env/bin/python`)"
            )
        if not self.checkpoint:
            raise Sam3DError(
                "no SAM 3D Body checkpoint folder chosen: set it in the preferences (or --sam3d-checkpoint) to the "
                "folder with model.ckpt, model_config.yaml and assets/mhr_model.pt"
            )
        missing = sam3d_worker.missing_checkpoint_files(self.checkpoint)
        if missing:
            raise Sam3DError(
                f"`{self.checkpoint}` is not a SAM 3D Body checkpoint folder: missing {', '.join(missing)} "
                "(download facebook/sam-3d-body-dinov3 from Hugging Face and point at its folder)"
            )
        if self.code and not Path(self.code).is_dir():
            raise Sam3DError(f"the SAM 3D Body code folder `{self.code}` does not exist")
        if self.backbone and not Path(self.backbone).is_file():
            raise Sam3DError(f"the SAM 3D Body backbone file `{self.backbone}` does not exist")

    def worker_arguments(self) -> list[str]:
        arguments = ["--checkpoint", str(self.checkpoint), "--device", self.device,
                     "--inference-type", self.inference_type]
        for flag, value in (("--code", self.code), ("--backbone", self.backbone),
                            ("--engine-cache", self.engine_cache)):
            if value:
                arguments += [flag, str(value)]
        return arguments


@dataclass
class StageTimes:
    """Milliseconds per crop of each worker stage, and of the round trip through the pipe, summed over a run."""

    crops: int = 0
    totals: dict[str, float] = field(default_factory=dict)

    def add(self, crops: int, stages: dict[str, float]) -> None:
        self.crops += crops
        for name, ms in stages.items():
            self.totals[name] = self.totals.get(name, 0.0) + float(ms)

    def per_crop(self) -> dict[str, float]:
        return {name: total / self.crops for name, total in self.totals.items()} if self.crops else {}

    def summary(self) -> str:
        stages = " · ".join(f"{name.replace('_', ' ')} {ms:.1f} ms" for name, ms in self.per_crop().items())
        return f"{LABEL} per crop ({self.crops} crops): {stages}" if self.crops else f"{LABEL}: no crops"


class Sam3DBody:
    """SAM 3D Body in its worker process. focal_px (or lens, the user's lens in px or mm): the take's focal
    length; neither: upstream's default camera (`sqrt(W^2 + H^2)`, centred). Errors: Sam3DError before or while
    loading, Sam3DWorkerError afterwards."""

    label = LABEL

    def __init__(
        self,
        settings: Sam3DSettings,
        *,
        focal_px: float | None = None,
        lens: Lens | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        settings.check()
        self.settings = settings
        self.focal_px = None if focal_px is None else float(focal_px)
        self.lens = lens if lens is not None and lens.known else None
        self.times = StageTimes()
        self._worker = WorkerProcess(
            settings.python, WORKER_SCRIPT, settings.worker_arguments(), describe="the SAM 3D Body worker",
            error=Sam3DWorkerError, problems=_PROBLEMS,
        )  # fmt: skip
        try:
            header, _ = self._worker.receive("ready", settings.load_timeout)
        except BaseException:
            self._worker.close(timeout=1.0)
            raise
        self.worker_info = {k: v for k, v in header.items() if k not in ("op", "arrays")}
        if log is not None:
            log(f"{LABEL}: {self.worker_info.get('backbone')} ({self.worker_info.get('precision')}) on "
                f"{self.worker_info.get('device')}, torch {self.worker_info.get('torch')}")

    @property
    def model_info(self) -> dict:
        """What the take records about the model that made it (text and numbers, JSON-ready)."""
        info = self.worker_info
        return {
            "backend": "sam3d", "model": LABEL, "checkpoint": str(info.get("checkpoint", self.settings.checkpoint)),
            "checkpoint_bytes": int(info.get("checkpoint_bytes", 0)), "backbone": str(info.get("backbone", "")),
            "precision": str(info.get("precision", "")), "device": str(info.get("device", "")),
            "torch": str(info.get("torch", "")), "sam_3d_body": str(info.get("sam_3d_body", "")),
            "inference_type": self.settings.inference_type,
            "focal_source": self._focal_source(),
        }  # fmt: skip

    def _focal_source(self) -> str:
        if self.focal_px is not None:
            return "given"
        return f"given: {self.lens.describe()}" if self.lens is not None else "default (sqrt(W^2 + H^2))"

    def camera(self, image_size: tuple[int, int]) -> tuple[float, tuple[float, float]]:
        """(focal px, (cx, cy) px) of a frame of (H, W) pixels: the given focal length, else upstream's default."""
        from .hmr import implicit_camera

        focal, centre = implicit_camera(image_size)
        if self.focal_px is not None:
            return self.focal_px, centre
        if self.lens is not None:
            return self.lens.focal_pixels(image_size), centre
        return focal, centre

    def predict(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> PersonPoses:
        """frame_rgb: RGB uint8 (H, W, 3); boxes: (N, 4) xyxy px. N people's poses in the boxes' order."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        image_size = frame_rgb.shape[:2]
        focal, centre = self.camera(image_size)
        if len(boxes):
            header, arrays = self._worker.request(
                {"op": "predict", "focal_length": focal, "principal_point": list(centre)},
                [np.ascontiguousarray(frame_rgb, np.uint8), boxes], "poses", self.settings.frame_timeout,
            )  # fmt: skip
            self.times.add(len(boxes), header.get("ms", {}))
            keypoints_3d, keypoints_2d, cam_t, mhr_params, shape_params, used_focal = arrays
            if np.any(np.abs(used_focal - focal) > 1e-3 * focal):
                raise Sam3DWorkerError(
                    f"{LABEL} used focal lengths {np.unique(used_focal).tolist()} px instead of the take's {focal:.2f}"
                )
        else:
            keypoints_3d, keypoints_2d = np.zeros((0, 70, 3), np.float32), np.zeros((0, 70, 2), np.float32)
            cam_t, mhr_params, shape_params = (np.zeros((0, n), np.float32) for n in (3, 204, 45))
        return poses_from_outputs(boxes, keypoints_3d, keypoints_2d, cam_t, mhr_params, shape_params, focal, centre)

    def close(self) -> None:
        self._worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def crop_windows(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy px -> (N, 3) float32 SAM 3D Body crop squares (cx, cy, S), S = 1.25 x the larger side."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = CROP_PADDING * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    return np.column_stack([centre, np.maximum(side, 1.0)]).astype(np.float32)


def poses_from_outputs(
    boxes, keypoints_3d, keypoints_2d, cam_t, mhr_params, shape_params, focal: float, centre
) -> PersonPoses:
    """SAM 3D Body's per-person outputs (pred_keypoints_3d (N, 70, 3) m relative to the MHR rig origin,
    pred_keypoints_2d (N, 70, 2) px, pred_cam_t (N, 3) m, mhr_model_params, shape_params) -> PersonPoses, the
    contract InstantHMR's outputs follow: `joints_cam = joints_3d + cam_trans`, crop coordinates in [-1, 1]."""
    from .hmr import PersonPoses

    windows = crop_windows(boxes)
    keypoints_3d = np.asarray(keypoints_3d, np.float32)
    keypoints_2d = np.asarray(keypoints_2d, np.float32)
    cam_t = np.asarray(cam_t, np.float32)
    half = windows[:, None, 2:3] / 2.0
    joints_crop = ((keypoints_2d - windows[:, None, :2]) / half).astype(np.float32)
    return PersonPoses(
        windows=windows, mhr_params=np.asarray(mhr_params, np.float32),
        shape_params=np.asarray(shape_params, np.float32), cam_trans=cam_t, joints_3d=keypoints_3d,
        joints_crop=joints_crop, joints_2d=keypoints_2d,
        joints_cam=(keypoints_3d + cam_t[:, None, :]).astype(np.float32),
        focal_length=float(focal), principal_point=(float(centre[0]), float(centre[1])),
    )  # fmt: skip
