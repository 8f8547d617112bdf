"""What an InstantHMR ONNX graph wants and gives, read from the graph itself, and the camera its outputs live in.

InstantHMR files differ (`../shared/docs/model-contract.md` section 5): the first release takes float32
ImageNet-normalised 224 px crops and the pixel `cliff_cond`; later exports carry `metadata_props` (`image_size`,
`cliff_focal`, `arch`, `bound_scales`, stamped as text, e.g. "288", "true"), 8-bit crops normalised inside the
graph, and some have no `joints_3d`. `read_graph` decides everything from the input and output names, dtypes and
shapes and the metadata, and refuses a graph it cannot decide with its signature and metadata printed: a wrong
`cliff_cond` convention raises nothing in the network, it only puts the person at the wrong depth.

Rules (each one is tested with a contract-shaped graph in testkit/contract_models.py):
- inputs: exactly one 4-D crop input and one 2-D `cliff_cond` input [N,3]; any other input is refused.
- the crop input: float32 / float16 (the add-on normalises: x/255, ImageNet mean/std) or uint8 (raw RGB, the graph
  normalises); channels first [N,3,S,S] or last [N,S,S,3]; the crop size S from the metadata `image_size` or the
  static shape (both present: they must agree; neither: refused).
- `cliff_cond`: metadata `cliff_focal` "true" -> angular `[atan((cx-W/2)/f), atan((cy-H/2)/f), max(bw,bh)/f]`,
  "false" -> the pixel form `[2cx/W-1, 2cy/H-1, max(bw,bh)/max(W,H)]`. Without `cliff_focal` only the first
  release's layout (float crops, channels first, 224 from the shape, no `image_size`) is taken as the pixel form;
  anything else without it is refused.
- outputs, by name: mhr_params [N,204], shape_params [N,45], cam_trans [N,3], joints_2d [N,70,2], joints_3d
  [N,70,3], float32 or float16; others are ignored.
- metadata the add-on does not know and whose name speaks of the input (crop, focal, mean, norm...) is refused:
  it may change how the input must be made.

The camera: a pixel-form graph was trained with f = sqrt(W^2 + H^2); an angular one places people in the camera
of the f fed into `cliff_cond` (by default 1.05 * sqrt(W^2 + H^2), upstream's fallback). See `capture_camera`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..models.runtime import ModelError, describe_io, dtype_name, model_metadata
from .detector import imagenet_chw

PIXEL = "pixel"
ANGULAR = "angular"
#: The first release's crop size (its static input shape).
FIRST_RELEASE_CROP = 224
#: The focal length of an angular (focal-aware) graph when the user gives none, per pixel of the image diagonal.
ANGULAR_DEFAULT_FOCAL_PER_DIAGONAL = 1.05
NUM_KEYPOINTS = 70
#: The outputs the capture reads, by name, with their shape after the batch axis.
OUTPUTS: dict[str, tuple[int, ...]] = {
    "mhr_params": (204,),
    "shape_params": (45,),
    "cam_trans": (3,),
    "joints_2d": (NUM_KEYPOINTS, 2),
    "joints_3d": (NUM_KEYPOINTS, 3),
}
IMAGE_DTYPES = ("float32", "float16", "uint8")
FLOAT_DTYPES = ("float32", "float16")
#: Metadata the add-on reads (image_size, cliff_focal) or knows to be about the weights only (arch: which training
#: script; bound_scales: a tanh remap inside the graph's forward pass).
KNOWN_METADATA = ("image_size", "cliff_focal", "arch", "bound_scales")
#: Words in an unknown metadata key that suggest it changes how the input must be made.
_INPUT_WORDS = ("cliff", "focal", "crop", "mean", "std", "norm", "bbox", "box", "camera", "input", "resize", "pad",
                "scale", "channel", "rgb", "bgr", "margin", "expand")
SUPPORTED = (
    "supported: one crop input (float32/float16 normalised by the add-on, or uint8 normalised in the graph; "
    "[N,3,S,S] or [N,S,S,3]; S from metadata image_size or the shape) and cliff_cond [N,3] (the first release's "
    "pixel form, or metadata cliff_focal=true/false), and the outputs mhr_params, shape_params, cam_trans, "
    "joints_2d, joints_3d"
)


@dataclass(frozen=True)
class HMRGraph:
    """How to feed one InstantHMR graph and read it.

    image_dtype: "float32" | "float16" (normalised by the add-on) | "uint8" (raw RGB, normalised in the graph).
    channels_last: crops as [N,S,S,3] instead of [N,3,S,S]. crop_size: S, pixels.
    cliff_form: PIXEL or ANGULAR (see the module docstring). fixed_batch: the batch size baked into the graph,
    or None. metadata: the graph's metadata_props, as stamped.
    """

    image_input: str
    image_dtype: str
    channels_last: bool
    crop_size: int
    cliff_input: str
    cliff_dtype: str
    cliff_form: str
    fixed_batch: int | None
    metadata: dict[str, str]

    @property
    def normalised_in_graph(self) -> bool:
        return self.image_dtype == "uint8"

    def summary(self) -> str:
        """One line for the log and the take: `float32 224 px crops [N,3,S,S] normalised by the add-on, ...`."""
        layout = "[N,S,S,3]" if self.channels_last else "[N,3,S,S]"
        normalised = "in the graph" if self.normalised_in_graph else "by the add-on"
        cliff = "angular cliff_cond (focal-aware)" if self.cliff_form == ANGULAR else "pixel cliff_cond"
        return f"{self.image_dtype} {self.crop_size} px crops {layout} normalised {normalised}, {cliff}"

    def default_focal(self, image_size: tuple[int, int]) -> float:
        """The focal length (px) this graph assumes for a frame of (H, W) when the user gives none."""
        diagonal = math.hypot(image_size[1], image_size[0])
        return ANGULAR_DEFAULT_FOCAL_PER_DIAGONAL * diagonal if self.cliff_form == ANGULAR else diagonal


class _Refused(Exception):
    """Why a graph cannot be run; read_graph turns it into the one-line ModelError."""


def _dims(arg) -> list:
    return list(arg.shape or [])


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _parse_bool(key: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _Refused(f"metadata {key}={value!r} is neither true nor false")


def _parse_size(value: str) -> int:
    try:
        size = int(value.strip())
    except ValueError:
        raise _Refused(f"metadata image_size={value!r} is not a whole number of pixels") from None
    if size <= 0:
        raise _Refused(f"metadata image_size={value!r} is not a positive number of pixels")
    return size


def _crop_input(inputs: list) -> tuple[str, str, bool, list]:
    crops = [arg for arg in inputs if len(_dims(arg)) == 4]
    if len(crops) != 1:
        raise _Refused(f"it has {len(crops)} four-dimensional crop inputs, expected one (two crops per person, "
                       "as a fit-2 layout may take, are not supported)")
    arg = crops[0]
    dtype = dtype_name(arg.type)
    if dtype not in IMAGE_DTYPES:
        raise _Refused(f"its crop input '{arg.name}' is {dtype}")
    dims = _dims(arg)
    first, last = _static(dims[1]) == 3, _static(dims[3]) == 3
    if first == last:
        raise _Refused(f"its crop input '{arg.name}' has no single colour axis of 3 (channels first or last)")
    spatial = dims[1:3] if last else dims[2:4]
    return arg.name, dtype, last, spatial


def _crop_size(spatial: list, metadata: dict[str, str], image_name: str) -> int:
    static = {_static(d) for d in spatial} - {None}
    if len(static) > 1:
        raise _Refused(f"its crop input '{image_name}' is not square")
    from_shape = static.pop() if static else None
    from_metadata = _parse_size(metadata["image_size"]) if "image_size" in metadata else None
    if from_shape and from_metadata and from_shape != from_metadata:
        raise _Refused(f"metadata image_size={from_metadata} contradicts the crop input's {from_shape} px")
    size = from_metadata or from_shape
    if size is None:
        raise _Refused("its crop size is unknown (no metadata image_size, no static crop shape)")
    return size


def _cliff_input(inputs: list, image_name: str) -> tuple[str, str]:
    others = [arg for arg in inputs if arg.name != image_name]
    cliffs = [arg for arg in others if len(_dims(arg)) == 2 and _static(_dims(arg)[1]) in (3, None)]
    if len(others) != 1 or len(cliffs) != 1:
        names = ", ".join(arg.name for arg in others) or "none"
        raise _Refused(f"its inputs besides the crop ({names}) are not exactly one cliff_cond [N,3] "
                       "(a two-crop or extra-input fit layout is not supported)")
    dtype = dtype_name(cliffs[0].type)
    if dtype not in FLOAT_DTYPES:
        raise _Refused(f"its cliff input '{cliffs[0].name}' is {dtype}")
    return cliffs[0].name, dtype


def _cliff_form(metadata: dict[str, str], first_release_layout: bool) -> str:
    if "cliff_focal" in metadata:
        return ANGULAR if _parse_bool("cliff_focal", metadata["cliff_focal"]) else PIXEL
    if first_release_layout:
        return PIXEL
    raise _Refused("its cliff_cond convention is unknown (no metadata cliff_focal, and it is not the first "
                   "release's float 224 px layout): a wrong guess would put people at the wrong depth")


def _check_outputs(outputs: list) -> None:
    by_name = {arg.name: arg for arg in outputs}
    if "joints_3d" not in by_name:
        raise _Refused("it has no joints_3d output (an MHR-only export: its 70 keypoints would have to come "
                       "from the MHR body model, which the capture does not run)")
    for name, tail in OUTPUTS.items():
        arg = by_name.get(name)
        if arg is None:
            raise _Refused(f"it has no {name} output")
        dims = _dims(arg)
        if len(dims) != len(tail) + 1 or any(_static(have) not in (want, None) for have, want in zip(dims[1:], tail)):
            raise _Refused(f"its output {name} is {_shape_text(dims)}, expected [N,{','.join(map(str, tail))}]")
        if dtype_name(arg.type) not in FLOAT_DTYPES:
            raise _Refused(f"its output {name} is {dtype_name(arg.type)}")


def _shape_text(dims: list) -> str:
    return "[" + ",".join(str(d) if _static(d) else "N" for d in dims) + "]"


def _check_metadata(metadata: dict[str, str]) -> None:
    for key in metadata:
        lowered = key.lower()
        if key not in KNOWN_METADATA and any(word in lowered for word in _INPUT_WORDS):
            raise _Refused(f"it carries metadata {key}={metadata[key]!r}, which the add-on does not understand "
                           "and which may change how the input must be made")


def read_graph(session, model_name: str) -> HMRGraph:
    """Read the layout of an InstantHMR session (see the module docstring); ModelError in one line when refused,
    naming the file, the reason, its signature, its metadata and what the add-on supports."""
    metadata = model_metadata(session)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    try:
        image_name, image_dtype, channels_last, spatial = _crop_input(inputs)
        crop_size = _crop_size(spatial, metadata, image_name)
        cliff_name, cliff_dtype = _cliff_input(inputs, image_name)
        first_release_layout = (image_dtype in FLOAT_DTYPES and not channels_last and "image_size" not in metadata
                                and crop_size == FIRST_RELEASE_CROP)
        cliff_form = _cliff_form(metadata, first_release_layout)
        _check_metadata(metadata)
        _check_outputs(outputs)
    except _Refused as why:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "none"
        raise ModelError(
            f"{model_name}: this InstantHMR graph is not supported: {why}. Its signature: {describe_io(session)}; "
            f"metadata: {shown}. {SUPPORTED[0].upper()}{SUPPORTED[1:]}"
        ) from None
    batch = _static(_dims(next(arg for arg in inputs if arg.name == image_name))[0])
    return HMRGraph(
        image_input=image_name, image_dtype=image_dtype, channels_last=channels_last, crop_size=crop_size,
        cliff_input=cliff_name, cliff_dtype=cliff_dtype, cliff_form=cliff_form, fixed_batch=batch,
        metadata=metadata,
    )


def prepare_crops(crops: np.ndarray, graph: HMRGraph) -> np.ndarray:
    """(N, S, S, 3) RGB uint8 crops -> the graph's crop input: raw uint8 or ImageNet-normalised float32/float16,
    channels first or last as the graph wants."""
    if graph.normalised_in_graph:
        return np.ascontiguousarray(crops if graph.channels_last else crops.transpose(0, 3, 1, 2))
    images = imagenet_chw(crops)
    if graph.channels_last:
        images = images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.dtype(graph.image_dtype))


def cliff_pixel(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) RAW xyxy boxes -> (N, 3) float32 `[2cx/W - 1, 2cy/H - 1, max(bw, bh) / max(W, H)]`."""
    height, width = image_size
    cx, cy, size = _box_terms(boxes)
    return np.stack([2 * cx / width - 1, 2 * cy / height - 1, size / max(width, height)], axis=1).astype(np.float32)


def cliff_angular(boxes: np.ndarray, image_size: tuple[int, int], focal: float) -> np.ndarray:
    """(N, 4) RAW xyxy boxes -> (N, 3) float32 `[atan((cx - W/2)/f), atan((cy - H/2)/f), max(bw, bh)/f]`,
    f in pixels (the principal point is the image centre)."""
    height, width = image_size
    cx, cy, size = _box_terms(boxes)
    return np.stack([np.arctan((cx - width / 2) / focal), np.arctan((cy - height / 2) / focal), size / focal],
                    axis=1).astype(np.float32)


def _box_terms(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return ((boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0,
            np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))


@dataclass(frozen=True)
class CaptureCamera:
    """The pinhole camera a capture's 3D results live in, and how the graph's outputs are brought into it.

    focal_length: pixels; principal_point: (cx, cy) pixels, the image centre. focal_source: "user" or "model".
    cliff_focal: the f fed into an angular cliff_cond (None for a pixel-form graph).
    depth_scale: multiplies cam_trans' z. 1 except for a pixel-form graph given the user's focal f1: that graph
    places people in its own camera f0 = sqrt(W^2 + H^2), and moving the body origin to depth z * f1/f0 keeps its
    image position in the camera f1 (exact for the origin, an approximation for the rest of the body).
    """

    focal_length: float
    principal_point: tuple[float, float]
    focal_source: str
    cliff_focal: float | None
    depth_scale: float


def capture_camera(graph: HMRGraph, image_size: tuple[int, int], focal_px: float | None = None) -> CaptureCamera:
    """The camera for frames of (H, W) pixels: the user's focal length (px) when given, else the graph's own."""
    height, width = image_size
    centre = (width / 2.0, height / 2.0)
    own = graph.default_focal(image_size)
    focal = float(focal_px) if focal_px else own
    source = "user" if focal_px else "model"
    if graph.cliff_form == ANGULAR:
        return CaptureCamera(focal, centre, source, focal, 1.0)
    return CaptureCamera(focal, centre, source, None, focal / own)
