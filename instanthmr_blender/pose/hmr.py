"""InstantHMR on ONNX Runtime: person crops in, MHR pose, 2D keypoints and camera-space 3D keypoints out.

The crop geometry follows `model-contract.md` section 1 exactly (a 1.2 x max(bw, bh) square, bilinear, black
outside the frame): the model was distilled with it, and any drift silently costs accuracy. What differs between
published graphs (crop size, dtype, who normalises, the `cliff_cond` convention, the camera) is read from the
graph itself by `hmr_graph.read_graph`; a graph it cannot read is refused, never guessed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..models.runtime import create_session
from ..video.lens import Lens
from .detector import imagenet_chw
from .hmr_graph import (
    ANGULAR,
    OUTPUTS,
    CaptureCamera,
    HMRGraph,
    capture_camera,
    cliff_angular,
    cliff_pixel,
    prepare_crops,
    read_graph,
)

#: The first release's crop size; other graphs give theirs (HMRGraph.crop_size).
CROP_SIZE = 224
#: The square crop side is this times the larger side of the detector box.
CROP_SCALE = 1.2
NUM_KEYPOINTS = 70
#: The outputs the capture reads, by name, in the order map_outputs takes them.
OUTPUT_NAMES = tuple(OUTPUTS)


def implicit_camera(image_size: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """The camera the first release (pixel-form cliff_cond) assumes for a frame of (H, W) pixels:
    (f = sqrt(W^2 + H^2) px, (W/2, H/2) px)."""
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
    """(N, S, S, 3) RGB uint8 -> (N, 3, S, S) float32: x/255, ImageNet mean/std, channels first."""
    return imagenet_chw(crops)


def cliff_condition(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) RAW xyxy boxes -> (N, 3) float32 pixel-form cliff_cond `[2cx/W - 1, 2cy/H - 1, max(bw, bh) / max(W, H)]`
    (the first release's convention; focal-aware graphs take `hmr_graph.cliff_angular`)."""
    return cliff_pixel(boxes, image_size)


@dataclass
class PersonPoses:
    """InstantHMR's results for the N people of one frame, in the order of the boxes given.

    windows: (N, 3) float32 crop square (cx, cy, S), pixels.
    mhr_params: (N, 204); shape_params: (N, 45); cam_trans: (N, 3) metres, OpenCV camera axes (the MHR rig
    origin, not the pelvis). joints_3d: (N, 70, 3) metres, relative to the rig origin.
    joints_crop: (N, 70, 2) crop coordinates in [-1, 1]. joints_2d: (N, 70, 2) full-frame pixels.
    joints_cam: (N, 70, 3) metres, camera space (joints_3d + cam_trans), OpenCV axes.
    focal_length / principal_point: the capture's camera for this frame size, pixels (`InstantHMR.camera`).
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
    outputs: list[np.ndarray],
    boxes: np.ndarray,
    image_size: tuple[int, int],
    camera: CaptureCamera | None = None,
) -> PersonPoses:
    """Model outputs (in OUTPUT_NAMES order, N rows each) + the (N, 4) boxes that made the crops -> PersonPoses.

    camera: the capture's camera (`hmr_graph.capture_camera`); None is the first release's implicit camera.
    Its depth_scale moves cam_trans along z (a pixel-form graph given the user's focal length).
    """
    mhr_params, shape_params, cam_trans, joints_crop, joints_3d = (np.asarray(o, np.float32) for o in outputs)
    if camera is None:
        focal, centre = implicit_camera(image_size)
        camera = CaptureCamera(focal, centre, "model", None, 1.0)
    if camera.depth_scale != 1.0:
        cam_trans = cam_trans * np.array([1.0, 1.0, camera.depth_scale], np.float32)
    windows = [CropWindow.from_box(box) for box in np.asarray(boxes).reshape(-1, 4)]
    joints_2d = np.stack([w.to_frame(j) for w, j in zip(windows, joints_crop)]) if windows else joints_crop
    return PersonPoses(
        windows=np.array([(w.cx, w.cy, w.side) for w in windows], np.float32).reshape(-1, 3),
        mhr_params=mhr_params,
        shape_params=shape_params,
        cam_trans=cam_trans.astype(np.float32),
        joints_3d=joints_3d,
        joints_crop=joints_crop,
        joints_2d=joints_2d.astype(np.float32),
        joints_cam=(joints_3d + cam_trans[:, None, :]).astype(np.float32),
        focal_length=camera.focal_length,
        principal_point=camera.principal_point,
    )


class InstantHMR:
    """An InstantHMR ONNX model, its layout read from the graph on load (`hmr_graph.read_graph`).

    max_batch: people per session run; a model with a fixed batch size uses that.
    Padding: on a GPU provider every run gets exactly `max_batch` rows (zero-padded, padded rows dropped), as
    upstream does, so the provider never re-plans for a new shape (re-planning costs more there than the padded
    crops). On the CPU provider a run gets only the real rows: a padded crop costs almost what a real one costs
    and a new shape costs next to nothing (README "Performance").
    one_at_a_time: run each person alone (batch 1), for providers where batching does not pay.
    spin / keep_fp16: as `runtime.create_session` (an fp16 graph runs as its fp32 conversion on the CPU).
    lens: the known camera lens, if any: it goes into an angular cliff_cond and decides the capture's camera
    (`camera`); without it the graph's own camera applies.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        device: str = "auto",
        max_batch: int = 2,
        *,
        one_at_a_time: bool = False,
        threads: int = 0,
        lens: Lens | None = None,
        spin: bool = True,
        keep_fp16: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.session, self.provider = create_session(
            model_path, device=device, threads=threads, spin=spin, keep_fp16=keep_fp16, log=log
        )
        self.graph: HMRGraph = read_graph(self.session, self.model_path.name)
        self.lens = (lens or Lens()).check()
        if log is not None:
            log(f"`{self.model_path.name}`: {self.graph.summary()}; camera lens: {self.lens.describe()}")
        self.batch_size = self.graph.fixed_batch or (1 if one_at_a_time else max(1, int(max_batch)))
        self.pad = bool(self.graph.fixed_batch) or self.provider != "CPUExecutionProvider"
        self._cameras: dict[tuple[int, int], CaptureCamera] = {}

    def camera(self, image_size: tuple[int, int]) -> CaptureCamera:
        """The camera the results for frames of (H, W) pixels live in (the take's intrinsics)."""
        key = (int(image_size[0]), int(image_size[1]))
        if key not in self._cameras:
            self._cameras[key] = capture_camera(self.graph, key, self.lens.focal_pixels(key))
        return self._cameras[key]

    def _crop_batch_shape(self, rows: int) -> tuple[int, ...]:
        size = self.graph.crop_size
        return (rows, size, size, 3) if self.graph.channels_last else (rows, 3, size, size)

    def predict(self, frame_rgb: np.ndarray, boxes: np.ndarray) -> PersonPoses:
        """frame_rgb: RGB uint8 (H, W, 3); boxes: (N, 4) xyxy pixels, RAW. Returns N people's poses."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        image_size = frame_rgb.shape[:2]
        camera = self.camera(image_size)
        if len(boxes) == 0:
            empty = [np.zeros((0, *tail), np.float32) for tail in OUTPUTS.values()]
            return map_outputs(empty, boxes, image_size, camera)
        graph = self.graph
        crops = np.stack([crop_person(frame_rgb, box, graph.crop_size) for box in boxes])
        images = prepare_crops(crops, graph)
        if graph.cliff_form == ANGULAR:
            cliff = cliff_angular(boxes, image_size, camera.cliff_focal)
        else:
            cliff = cliff_pixel(boxes, image_size)
        cliff = cliff.astype(np.dtype(graph.cliff_dtype))
        collected: list[list[np.ndarray]] = [[] for _ in OUTPUT_NAMES]
        for start in range(0, len(boxes), self.batch_size):
            rows = min(self.batch_size, len(boxes) - start)
            planned = self.batch_size if self.pad else rows  # padded only where padding pays (see the class)
            image_batch = np.zeros(self._crop_batch_shape(planned), images.dtype)
            cliff_batch = np.zeros((planned, 3), cliff.dtype)
            image_batch[:rows] = images[start : start + rows]
            cliff_batch[:rows] = cliff[start : start + rows]
            outputs = self.session.run(
                list(OUTPUT_NAMES), {graph.image_input: image_batch, graph.cliff_input: cliff_batch}
            )
            for store, output in zip(collected, outputs):
                store.append(np.asarray(output[:rows], np.float32))
        return map_outputs([np.concatenate(parts) for parts in collected], boxes, image_size, camera)
