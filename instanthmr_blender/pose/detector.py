"""Person detection: one interface, an ONNX Runtime RF-DETR backend and an optional PyTorch `rfdetr` one.

Both return, per frame, the person boxes above a confidence threshold, best first, in full-frame pixels.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..models.runtime import ModelError, TensorSpec, check_signature, create_session, fixed_batch_size

_LOG = logging.getLogger("instanthmr")

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

    Plain bilinear (INTER_LINEAR), also when shrinking: rfdetr's own predict resizes with torchvision's
    bilinear and antialias=False (rfdetr 1.11.2, detr.py), which is what the detector saw in training.
    """
    resized = cv2.resize(frame_rgb, (resolution, resolution), interpolation=cv2.INTER_LINEAR)
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
        spin: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.confidence = float(confidence)
        self.session, self.provider = create_session(model_path, device=device, threads=threads, spin=spin, log=log)
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
    """The PyTorch detector was asked for but `rfdetr` (or a working torch + torchvision) is not installed."""


#: `TorchRFDETR(weights=NO_WEIGHTS)` builds the network with random weights and downloads nothing. Its boxes are
#: meaningless: it is for testing the data path and the ONNX export offline, never for a capture.
NO_WEIGHTS = "none"
#: The add-on's device names -> the torch device each asks for ("coreml" means Apple silicon: MPS in torch).
TORCH_DEVICES = {"cpu": "cpu", "cuda": "cuda", "coreml": "mps"}
#: The class name RF-DETR's `predict` attaches to person boxes, for COCO and fine-tuned checkpoints alike.
PERSON_NAME = "person"


class TorchRFDETR(PersonDetector):
    """RF-DETR through the `rfdetr` PyTorch package (1.11), only when the user installed it (imported lazily).

    variant: "nano" | "small" | "medium" | "large".
    weights: None for rfdetr's COCO checkpoint (downloaded into `$RF_HOME`, default `~/.roboflow/models`, on
    first use), a checkpoint path (.pth; it must have a "person" class), or NO_WEIGHTS ("none") for random
    weights (offline tests only).
    resolution: square input size R, a multiple of 32; None keeps the variant's own (384 nano ... 704 large).
    device: "auto" lets rfdetr choose (CUDA, then MPS, then CPU); "cpu" | "cuda" | "coreml" (MPS). A device this
    torch build cannot use, or "directml", falls back to the CPU with one log line.
    max_batch: frames per `predict` call (memory grows with it).

    Differences from OnnxRFDETR that callers may see: rfdetr resizes with plain bilinear (no antialiasing),
    clamps boxes to the frame (so edge boxes can fall under MIN_BOX_SIZE and go), and keeps the 300 best
    (query, class) pairs over all classes before the person filter, where the ONNX decode reads the person
    column of all 300 queries: in a scene full of other objects a weak person can be missing here.
    """

    def __init__(
        self,
        variant: str = "nano",
        confidence: float = 0.5,
        device: str = "auto",
        *,
        weights: str | os.PathLike | None = None,
        resolution: int | None = None,
        max_batch: int = 4,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if variant not in RFDETR_RESOLUTIONS:
            raise ModelError(f"unknown RF-DETR variant {variant!r}: use one of {', '.join(RFDETR_RESOLUTIONS)}")
        if resolution is not None and (int(resolution) <= 0 or int(resolution) % 32):
            raise ModelError(
                f"RF-DETR input resolution {resolution} is not a positive multiple of 32 "
                f"(the {variant} default is {RFDETR_RESOLUTIONS[variant]})"
            )
        log = log or _LOG.info
        rfdetr = import_rfdetr()
        model_class = getattr(rfdetr, "RFDETR" + variant.capitalize())
        kwargs: dict[str, object] = {}
        if weights is not None:
            kwargs["pretrain_weights"] = _pretrain_weights(weights)
        if resolution is not None:
            kwargs["resolution"] = int(resolution)
        torch_device = _torch_device(device, log)
        if torch_device is not None:
            kwargs["device"] = torch_device
        try:
            self.model = model_class(**kwargs)
        except Exception as exc:  # pydantic, torch.load and download errors alike: say which model failed
            hint = (
                "the COCO weights are downloaded on first use: connect to the internet once, or give a checkpoint"
                if weights is None
                else "is it an RF-DETR checkpoint of this variant?"
            )
            raise ModelError(
                f"RF-DETR {variant} could not be created ({type(exc).__name__}: {exc}): {hint}"
            ) from exc
        class_names = list(self.model.class_names)
        if PERSON_NAME not in class_names:
            shown = ", ".join(class_names[:10]) + (" ..." if len(class_names) > 10 else "")
            source = "RF-DETR's COCO checkpoint" if weights is None else f"`{Path(weights).name}`"
            raise ModelError(
                f"{source} has no \"person\" class (its classes: {shown}): use a checkpoint "
                "trained to detect people, or the COCO weights"
            )
        self.variant = variant
        self.confidence = float(confidence)
        self.resolution = int(self.model.model.resolution)
        self.device = str(self.model.model.device)
        self.batch_size = max(1, int(max_batch))

    def detect(self, frames_rgb: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = []
        for start in range(0, len(frames_rgb), self.batch_size):
            chunk = list(frames_rgb[start : start + self.batch_size])
            # rfdetr takes RGB (H, W, 3) uint8 arrays; a list in gives one supervision.Detections per image out.
            predictions = self.model.predict(chunk, threshold=self.confidence, include_source_image=False)
            if not isinstance(predictions, list):
                predictions = [predictions]
            for prediction in predictions:
                person = _person_rows(prediction)
                boxes = np.asarray(prediction.xyxy, np.float32).reshape(-1, 4)[person]
                scores = np.asarray(prediction.confidence, np.float32).reshape(-1)[person]
                results.append(_sorted_above(boxes, scores, self.confidence))
        return results


def _pretrain_weights(weights: str | os.PathLike) -> str | None:
    """The `pretrain_weights` value rfdetr wants for our `weights` argument (None = random weights)."""
    if isinstance(weights, str) and weights == NO_WEIGHTS:
        return None
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"RF-DETR checkpoint `{path}` does not exist: check the path, or leave it empty for COCO")
    # rfdetr treats a bare file name as a name in its download cache: pass a path it will read as it is
    return str(path.resolve())


def _torch_device(device: str, log: Callable[[str], None]) -> str | None:
    """The torch device for the add-on's device name; None lets rfdetr pick the best one itself."""
    if device == "auto":
        return None
    if device == "directml":
        log("device 'directml' is for the ONNX detector only; the PyTorch detector uses the CPU")
        return "cpu"
    if device not in TORCH_DEVICES:
        raise ModelError(f"unknown device {device!r}: use one of auto, {', '.join(TORCH_DEVICES)}")
    wanted = TORCH_DEVICES[device]
    if wanted == "cpu":
        return wanted
    import torch  # present: import_rfdetr() succeeded first

    usable = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if usable[wanted]:
        return wanted
    log(f"device {device!r} asked for, but this torch build ({torch.__version__}) cannot use {wanted}; using the CPU")
    return "cpu"


def _person_rows(prediction) -> np.ndarray:
    """(K,) bool: the rows of one supervision.Detections that are people.

    rfdetr names each row's class: COCO checkpoints use sparse category ids (person = 1), fine-tuned ones
    0-based indices into their own class list, so the name is the one test that holds for both.
    """
    names = getattr(prediction, "data", {}).get("class_name")
    if names is not None:
        return np.asarray(names) == PERSON_NAME
    return np.asarray(prediction.class_id).reshape(-1) == PERSON_CLASS


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
    except RuntimeError as exc:
        # e.g. "operator torchvision::nms does not exist": torchvision built for another torch (CUDA vs CPU)
        raise DetectorUnavailable(
            f"`rfdetr` is installed but torch and torchvision do not match ({exc}): install both from the same "
            "index (e.g. pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu), or use "
            "the ONNX detector (an RF-DETR .onnx file) instead"
        ) from exc
    return rfdetr
