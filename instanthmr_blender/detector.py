"""Person detection: one interface, an ONNX Runtime RF-DETR backend and an optional PyTorch `rfdetr` one.

Both return, per frame, the person boxes above a confidence threshold, best first, in full-frame pixels.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .runtime import ModelError, TensorSpec, check_signature, create_session, fixed_batch_size

#: COCO category id of "person" in RF-DETR's sparse 91-column label space.
PERSON_CLASS = 1
NUM_QUERIES = 300
NUM_CLASSES = 91
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: Native input resolution of each RF-DETR variant.
RFDETR_RESOLUTIONS = {"nano": 384, "small": 512, "medium": 576, "large": 704}


@dataclass(frozen=True)
class Detections:
    """People found in one frame, best first.

    boxes: (K, 4) float32 xyxy, full-frame pixels, as the detector gave them (not clipped to the frame).
    scores: (K,) float32 person probability in (0, 1), descending.
    """

    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.scores)


#: Boxes narrower or shorter than this (pixels) cannot be cropped meaningfully and are dropped.
MIN_BOX_SIZE = 2.0


def _sorted_above(boxes: np.ndarray, scores: np.ndarray, confidence: float) -> Detections:
    sizes = boxes[:, 2:] - boxes[:, :2]
    keep = (scores > confidence) & np.isfinite(boxes).all(axis=1) & (sizes >= MIN_BOX_SIZE).all(axis=1)
    boxes, scores = boxes[keep], scores[keep]
    # stable sort: equal scores keep query order, so results are reproducible
    order = np.argsort(-scores, kind="stable")
    return Detections(np.ascontiguousarray(boxes[order], np.float32), np.ascontiguousarray(scores[order], np.float32))


class PersonDetector(ABC):
    """Finds people in RGB frames. Implementations must be safe to call from one thread at a time."""

    confidence: float

    @abstractmethod
    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[Detections]:
        """frames_rgb: RGB uint8 (H, W, 3) frames (sizes may differ). Returns one Detections per frame."""


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def decode_rfdetr(
    dets: np.ndarray, labels: np.ndarray, image_size: tuple[int, int], confidence: float
) -> Detections:
    """RF-DETR raw outputs of one image -> person Detections.

    dets: (300, 4) normalised (cx, cy, w, h); labels: (300, 91) raw logits (column 1 = person);
    image_size: (H, W) of the original frame. Normalised coordinates map straight to pixels because the
    input was a plain stretch of the whole frame.
    """
    height, width = image_size
    scores = _sigmoid(labels[:, PERSON_CLASS]).astype(np.float32)
    cx, cy, w, h = (dets[:, i].astype(np.float32) for i in range(4))
    boxes = np.stack(
        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], axis=1
    )
    return _sorted_above(boxes, scores, confidence)


def preprocess_rfdetr(frame_rgb: np.ndarray, resolution: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, R, R): stretched to R x R, /255, ImageNet mean/std.

    INTER_AREA when shrinking (what RF-DETR's antialiased torchvision resize approximates; plain bilinear
    would alias a 1920-wide frame down to 384), INTER_LINEAR when enlarging.
    """
    height, width = frame_rgb.shape[:2]
    shrink = resolution < width or resolution < height
    resized = cv2.resize(
        frame_rgb, (resolution, resolution), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return imagenet_chw(resized)


#: uint8 value -> normalised float, per channel: a table lookup is several times faster than the arithmetic.
_IMAGENET_TABLE = ((np.arange(256)[:, None] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def imagenet_chw(image_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (..., H, W, 3) -> float32 (..., 3, H, W): (x/255 - ImageNet mean) / ImageNet std."""
    out = np.empty((*image_rgb.shape[:-3], 3, *image_rgb.shape[-3:-1]), np.float32)
    for channel in range(3):
        out[..., channel, :, :] = _IMAGENET_TABLE[:, channel][image_rgb[..., channel]]
    return out


class OnnxRFDETR(PersonDetector):
    """RF-DETR exported to ONNX (`tools/export_rfdetr_onnx.py`, or a published export), on ONNX Runtime.

    resolution: None reads R from the model's input [B,3,R,R]; a model with a symbolic R needs it given.
    max_batch: frames per session run; a model exported with a fixed batch size uses that size instead
    (short batches are padded with black frames, whose rows are dropped).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        resolution: int | None = None,
        confidence: float = 0.5,
        device: str = "auto",
        *,
        threads: int = 0,
        max_batch: int = 4,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.confidence = float(confidence)
        self.session, self.provider = create_session(model_path, device=device, threads=threads, log=log)
        name = self.model_path.name
        hint = "is this an RF-DETR detection model exported to ONNX?"
        input_shape = self.session.get_inputs()[0].shape
        model_resolution = input_shape[2] if len(input_shape) == 4 and isinstance(input_shape[2], int) else None
        if resolution is None:
            if model_resolution is None:
                raise ModelError(
                    f"{name}: the input resolution is not fixed in the model; give it explicitly "
                    f"(384 nano, 512 small, 576 medium, 704 large)"
                )
            resolution = model_resolution
        self.resolution = int(resolution)
        check_signature(
            self.session,
            name,
            inputs=[TensorSpec("input", (None, 3, self.resolution, self.resolution))],
            outputs=[
                TensorSpec("dets", (None, NUM_QUERIES, 4)),
                TensorSpec("labels", (None, NUM_QUERIES, NUM_CLASSES)),
            ],
            outputs_by_name=True,
            model_hint=hint,
        )
        self._input_name = self.session.get_inputs()[0].name
        self.fixed_batch = fixed_batch_size(self.session)
        self.batch_size = self.fixed_batch or max(1, int(max_batch))

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = []
        for start in range(0, len(frames_rgb), self.batch_size):
            chunk = frames_rgb[start : start + self.batch_size]
            batch = np.stack([preprocess_rfdetr(frame, self.resolution) for frame in chunk])
            if self.fixed_batch and len(chunk) < self.fixed_batch:
                padding = np.zeros((self.fixed_batch - len(chunk), *batch.shape[1:]), np.float32)
                batch = np.concatenate([batch, padding])
            dets, labels = self.session.run(["dets", "labels"], {self._input_name: batch})
            for i, frame in enumerate(chunk):
                results.append(decode_rfdetr(dets[i], labels[i], frame.shape[:2], self.confidence))
        return results


class DetectorUnavailable(ModelError):
    """The PyTorch detector was asked for but `rfdetr` (or torch) is not installed."""


class TorchRFDETR(PersonDetector):
    """RF-DETR through the `rfdetr` PyTorch package, only when the user installed it (imported lazily).

    variant: "nano" | "small" | "medium" | "large". weights: a checkpoint path, or None for the package's
    COCO weights (which it downloads on first use).
    """

    def __init__(
        self,
        variant: str = "nano",
        confidence: float = 0.5,
        device: str = "auto",
        *,
        weights: str | os.PathLike | None = None,
        resolution: int | None = None,
    ) -> None:
        if variant not in RFDETR_RESOLUTIONS:
            raise ModelError(f"unknown RF-DETR variant {variant!r}: use one of {', '.join(RFDETR_RESOLUTIONS)}")
        rfdetr = import_rfdetr()
        model_class = getattr(rfdetr, "RFDETR" + variant.capitalize())
        kwargs: dict[str, object] = {}
        if weights is not None:
            kwargs["pretrain_weights"] = str(weights)
        if resolution is not None:
            kwargs["resolution"] = int(resolution)
        if device in ("cpu", "cuda"):
            kwargs["device"] = device
        try:
            self.model = model_class(**kwargs)
        except Exception as exc:
            raise ModelError(f"RF-DETR {variant} could not be created ({type(exc).__name__}: {exc})") from exc
        self.variant = variant
        self.confidence = float(confidence)

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[Detections]:
        if not frames_rgb:
            return []
        # rfdetr takes RGB numpy images and returns one supervision Detections per image for a list.
        predictions = self.model.predict(list(frames_rgb), threshold=self.confidence)
        if not isinstance(predictions, list):
            predictions = [predictions]
        results = []
        for prediction in predictions:
            person = np.asarray(prediction.class_id) == PERSON_CLASS
            boxes = np.asarray(prediction.xyxy, np.float32).reshape(-1, 4)[person]
            scores = np.asarray(prediction.confidence, np.float32).reshape(-1)[person]
            results.append(_sorted_above(boxes, scores, self.confidence))
        return results


def import_rfdetr():
    """Import the optional `rfdetr` package, or raise DetectorUnavailable saying how to get it."""
    try:
        # optional heavy dependency (torch), imported only when this backend is asked for
        import rfdetr
    except ImportError as exc:
        raise DetectorUnavailable(
            "the PyTorch RF-DETR detector needs the `rfdetr` package: pip install \"rfdetr[onnx]\" with a "
            "CPU or CUDA torch build into Blender's Python, or use the ONNX detector (an RF-DETR .onnx file) "
            f"instead ({exc})"
        ) from exc
    return rfdetr
