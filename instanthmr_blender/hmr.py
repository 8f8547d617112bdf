"""InstantHMR on ONNX Runtime: person crops in, MHR pose, 2D keypoints and camera-space 3D keypoints out.

The crop geometry and the `cliff_cond` input follow `model-contract.md` section 1 exactly: the model was
distilled with them, and any drift (another margin, another interpolation) silently costs accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .detector import imagenet_chw
from .runtime import TensorSpec, check_signature, create_session, fixed_batch_size

CROP_SIZE = 224
#: The square crop side is this times the larger side of the detector box.
CROP_SCALE = 1.2
NUM_KEYPOINTS = 70

#: Outputs in the order the model returns them (read by position, as upstream does).
OUTPUT_SPECS = (
    TensorSpec("mhr_params", (None, 204)),
    TensorSpec("shape_params", (None, 45)),
    TensorSpec("cam_trans", (None, 3)),
    TensorSpec("joints_2d", (None, NUM_KEYPOINTS, 2)),
    TensorSpec("joints_3d", (None, NUM_KEYPOINTS, 3)),
)
INPUT_SPECS = (
    TensorSpec("image", (None, 3, CROP_SIZE, CROP_SIZE)),
    TensorSpec("cliff_cond", (None, 3)),
)


def implicit_camera(image_size: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """The camera InstantHMR assumes for a frame of (H, W) pixels: (f = sqrt(W^2 + H^2) px, (W/2, H/2) px)."""
    height, width = image_size
    return float(np.hypot(width, height)), (width / 2.0, height / 2.0)


@dataclass(frozen=True)
class CropWindow:
    """The square a person's crop is cut from: centre (cx, cy) and side S, full-frame pixels.

    Pixel coordinates here put the frame's left edge at x = 0 and the first pixel's centre at 0.5, the same
    as the detector's boxes and the model's `u = cx + j2d_x * S / 2`.
    """

    cx: float
    cy: float
    side: float

    @classmethod
    def from_box(cls, box: np.ndarray) -> CropWindow:
        """box: (4,) xyxy pixels, the RAW detector (or propagated) box."""
        x1, y1, x2, y2 = (float(v) for v in box)
        # a degenerate box still gets a (1 px) square, so the affine stays invertible
        return cls((x1 + x2) / 2.0, (y1 + y2) / 2.0, max(CROP_SCALE * max(x2 - x1, y2 - y1), 1.0))

    def affine(self, size: int = CROP_SIZE) -> np.ndarray:
        """(2, 3) float64 frame pixel index -> crop pixel index, for cv2.warpAffine.

        Crop pixel j covers [x0 + j*S/size, x0 + (j+1)*S/size) with x0 = cx - S/2, so its centre samples frame
        position x0 + (j + 0.5) * S/size, i.e. frame pixel index that - 0.5: the same sampling as cutting the
        square out and cv2.resize-ing it.
        """
        scale = size / self.side
        x0, y0 = self.cx - self.side / 2.0, self.cy - self.side / 2.0
        return np.array(
            [[scale, 0.0, (0.5 - x0) * scale - 0.5], [0.0, scale, (0.5 - y0) * scale - 0.5]], np.float64
        )

    def to_frame(self, points_crop: np.ndarray) -> np.ndarray:
        """(..., 2) crop coordinates in [-1, 1] -> full-frame pixels: u = cx + x * S/2, v = cy + y * S/2."""
        half = self.side / 2.0
        return (points_crop * half + np.array([self.cx, self.cy])).astype(np.float32)


def crop_person(frame_rgb: np.ndarray, box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """RGB uint8 (H, W, 3) frame + (4,) xyxy box -> RGB uint8 (size, size, 3) crop; outside the frame is black."""
    window = CropWindow.from_box(box)
    return cv2.warpAffine(
        frame_rgb,
        window.affine(size),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def normalise_crops(crops: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) RGB uint8 -> (N, 3, 224, 224) float32: x/255, ImageNet mean/std, channels first."""
    return imagenet_chw(crops)


def cliff_condition(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) RAW xyxy boxes -> (N, 3) float32 `[2cx/W - 1, 2cy/H - 1, max(bw, bh) / max(W, H)]`."""
    height, width = image_size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return np.stack([2 * cx / width - 1, 2 * cy / height - 1, size / max(width, height)], axis=1).astype(
        np.float32
    )


@dataclass
class PersonPoses:
    """InstantHMR's results for the N people of one frame, in the order of the boxes given.

    windows: (N, 3) float32 crop square (cx, cy, S), pixels.
    mhr_params: (N, 204); shape_params: (N, 45); cam_trans: (N, 3) metres, OpenCV camera axes (the MHR rig
    origin, not the pelvis). joints_3d: (N, 70, 3) metres, relative to the rig origin.
    joints_crop: (N, 70, 2) crop coordinates in [-1, 1]. joints_2d: (N, 70, 2) full-frame pixels.
    joints_cam: (N, 70, 3) metres, camera space (joints_3d + cam_trans), OpenCV axes.
    focal_length / principal_point: the implicit camera of this frame size, pixels.
    """

    windows: np.ndarray
    mhr_params: np.ndarray
    shape_params: np.ndarray
    cam_trans: np.ndarray
    joints_3d: np.ndarray
    joints_crop: np.ndarray
    joints_2d: np.ndarray
    joints_cam: np.ndarray
    focal_length: float
    principal_point: tuple[float, float]

    def __len__(self) -> int:
        return len(self.windows)


def map_outputs(
    outputs: list[np.ndarray], boxes: np.ndarray, image_size: tuple[int, int]
) -> PersonPoses:
    """Raw model outputs (by position, N rows each) + the (N, 4) boxes that made the crops -> PersonPoses."""
    mhr_params, shape_params, cam_trans, joints_crop, joints_3d = (np.asarray(o, np.float32) for o in outputs)
    windows = [CropWindow.from_box(box) for box in np.asarray(boxes).reshape(-1, 4)]
    joints_2d = np.stack([w.to_frame(j) for w, j in zip(windows, joints_crop)]) if windows else joints_crop
    focal, centre = implicit_camera(image_size)
    return PersonPoses(
        windows=np.array([(w.cx, w.cy, w.side) for w in windows], np.float32).reshape(-1, 3),
        mhr_params=mhr_params,
        shape_params=shape_params,
        cam_trans=cam_trans,
        joints_3d=joints_3d,
        joints_crop=joints_crop,
        joints_2d=joints_2d.astype(np.float32),
        joints_cam=(joints_3d + cam_trans[:, None, :]).astype(np.float32),
        focal_length=focal,
        principal_point=centre,
    )


class InstantHMR:
    """The InstantHMR ONNX model, signature-checked on load.

    max_batch: people per session run; a model with a fixed batch size uses that.
    Padding: on a GPU provider every run gets exactly `max_batch` rows (zero-padded, padded rows dropped), as
    upstream does, so the provider never re-plans for a new shape (re-planning costs more there than the padded
    crops). On the CPU provider a run gets only the real rows: a padded crop costs almost what a real one costs
    (measured: batch 2 ~1.9x batch 1, batch 3 ~2.7x) and a new shape costs next to nothing.
    one_at_a_time: run each person alone (batch 1), for providers where batching does not pay.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        device: str = "auto",
        max_batch: int = 2,
        *,
        one_at_a_time: bool = False,
        threads: int = 0,
        spin: bool = True,
        keep_fp16: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.session, self.provider = create_session(
            model_path, device=device, threads=threads, spin=spin, keep_fp16=keep_fp16, log=log
        )
        check_signature(
            self.session,
            self.model_path.name,
            inputs=INPUT_SPECS,
            outputs=OUTPUT_SPECS,
            outputs_by_name=False,
            model_hint="is this the InstantHMR model?",
        )
        self._image_name, self._cliff_name = (i.name for i in self.session.get_inputs())
        fixed = fixed_batch_size(self.session)
        self.batch_size = fixed or (1 if one_at_a_time else max(1, int(max_batch)))
        self.pad = bool(fixed) or self.provider != "CPUExecutionProvider"

    def predict(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> PersonPoses:
        """frame_rgb: RGB uint8 (H, W, 3); boxes: (N, 4) xyxy pixels, RAW. Returns N people's poses."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        image_size = frame_rgb.shape[:2]
        if len(boxes) == 0:
            empty = [np.zeros((0, *spec.shape[1:]), np.float32) for spec in OUTPUT_SPECS]
            return map_outputs(empty, boxes, image_size)
        crops = np.stack([crop_person(frame_rgb, box) for box in boxes])
        images = normalise_crops(crops)
        cliff = cliff_condition(boxes, image_size)
        collected: list[list[np.ndarray]] = [[] for _ in OUTPUT_SPECS]
        for start in range(0, len(boxes), self.batch_size):
            rows = min(self.batch_size, len(boxes) - start)
            image_batch, cliff_batch = images[start : start + rows], cliff[start : start + rows]
            if self.pad and rows < self.batch_size:
                image_batch = np.concatenate(
                    [image_batch, np.zeros((self.batch_size - rows, *image_batch.shape[1:]), np.float32)]
                )
                cliff_batch = np.concatenate([cliff_batch, np.zeros((self.batch_size - rows, 3), np.float32)])
            outputs = self.session.run(None, {self._image_name: image_batch, self._cliff_name: cliff_batch})
            for store, output in zip(collected, outputs):
                store.append(output[:rows])
        return map_outputs([np.concatenate(parts) for parts in collected], boxes, image_size)
