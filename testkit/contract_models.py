"""Tiny ONNX stand-ins for RF-DETR and InstantHMR with exactly the contract's names, dtypes and shapes.

The real weights cannot be downloaded here (`../shared/docs/model-contract.md`), so tests of every tier build
these (a few KB, milliseconds) and run the real loading, checking and pre/post-processing code on them.

- `build_rfdetr_model`: input `input` [B,3,R,R] -> `dets` [B,300,4] (normalised cx,cy,w,h), `labels`
  [B,300,91] (raw logits). Its detections are FIXED boxes given at build time, the same for every image: the
  image decides only the batch size. That keeps pipeline tests on real video exact and predictable.
- `build_instanthmr_model`: inputs `image` [N,3,224,224], `cliff_cond` [N,3] -> `mhr_params`, `shape_params`,
  `cam_trans`, `joints_2d`, `joints_3d` (in that order), plus `crop_mean` (what the graph saw). Options build the
  other published layouts (8-bit crops normalised in the graph, other crop sizes, focal-aware `cliff_cond` from
  metadata, extra inputs, no `joints_3d`). `joints_3d`, `mhr_params`, `shape_params` are a REAL
  SAM 3D Body pose (default `sam3d/img_subj00.npz`), baked in as constants; like InstantHMR's, `joints_3d` is
  relative to the MHR rig origin (floor level under the body), not to the pelvis. `cam_trans` is computed from
  `cliff_cond` so that, with the implicit camera f = sqrt(W^2+H^2) of a frame of `image_size`, the centre of
  the keypoints' extent projects onto the box centre and their larger extent spans `fill` of max(bw, bh);
  `joints_2d` is that projection in crop coordinates ([-1, 1] over the 1.2 * max(bw, bh) square).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
#: onnxruntime 1.23 reads IR versions up to 11; onnx 1.19 would write 12 by default.
IR_VERSION = 10
NUM_QUERIES = 300
NUM_CLASSES = 91
PERSON_CLASS = 1
CROP_SIZE = 224
CROP_SCALE = 1.2
#: Fraction of max(bw, bh) that the keypoints' larger extent spans in the stand-in InstantHMR.
KEYPOINT_FILL = 0.95

_REPO_ROOT = Path(__file__).resolve().parents[1]


def default_pose_source() -> Path:
    """The SAM 3D Body sample the InstantHMR stand-in returns (same fixtures lookup as the test conftest)."""
    fixtures = Path(os.environ.get("INSTANTHMR_FIXTURES", _REPO_ROOT.parent / "shared" / "fixtures"))
    return fixtures / "sam3d" / "img_subj00.npz"


@dataclass(frozen=True)
class DetectorBox:
    """One fixed detection of the RF-DETR stand-in: normalised centre and size, the logit of `class_id`."""

    cx: float
    cy: float
    w: float
    h: float
    logit: float = 4.0
    class_id: int = PERSON_CLASS


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name=name + "_value"))


def _save(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _batch_dim(batch: int | None, symbol: str) -> int | str:
    return symbol if batch is None else int(batch)


def build_rfdetr_model(
    path: str | os.PathLike,
    *,
    resolution: int = 64,
    boxes: Sequence[DetectorBox] = (DetectorBox(0.5, 0.5, 0.3, 0.8),),
    background_logit: float = -9.0,
    batch: int | None = None,
) -> Path:
    """Write an RF-DETR-like detector whose first len(boxes) queries are `boxes`, the rest background.

    resolution: R of the input [B,3,R,R]. batch: None for a dynamic batch axis, or a fixed batch size (as
    `rfdetr` exports by default). Every class logit not set by a box is `background_logit`.
    """
    if len(boxes) > NUM_QUERIES:
        raise ValueError(f"at most {NUM_QUERIES} boxes")
    dets = np.tile(np.array([0.5, 0.5, 0.05, 0.05], np.float32), (1, NUM_QUERIES, 1))
    labels = np.full((1, NUM_QUERIES, NUM_CLASSES), background_logit, np.float32)
    for query, box in enumerate(boxes):
        dets[0, query] = (box.cx, box.cy, box.w, box.h)
        labels[0, query, box.class_id] = box.logit

    batch_axis = _batch_dim(batch, "batch")
    nodes = [
        helper.make_node("Shape", ["input"], ["batch_only"], start=0, end=1),
        _const("dets_tail", np.array([NUM_QUERIES, 4], np.int64)),
        _const("labels_tail", np.array([NUM_QUERIES, NUM_CLASSES], np.int64)),
        helper.make_node("Concat", ["batch_only", "dets_tail"], ["dets_shape"], axis=0),
        helper.make_node("Concat", ["batch_only", "labels_tail"], ["labels_shape"], axis=0),
        _const("dets_one", dets),
        _const("labels_one", labels),
        helper.make_node("Expand", ["dets_one", "dets_shape"], ["dets"]),
        helper.make_node("Expand", ["labels_one", "labels_shape"], ["labels"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rfdetr_contract_stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_axis, 3, resolution, resolution])],
        [
            helper.make_tensor_value_info("dets", TensorProto.FLOAT, [batch_axis, NUM_QUERIES, 4]),
            helper.make_tensor_value_info("labels", TensorProto.FLOAT, [batch_axis, NUM_QUERIES, NUM_CLASSES]),
        ],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


@dataclass(frozen=True)
class SamplePose:
    """The real SAM 3D Body outputs baked into the InstantHMR stand-in (metres, OpenCV camera axes)."""

    joints_3d: np.ndarray  # (70, 3) float32, relative to the MHR rig origin
    mhr_params: np.ndarray  # (204,) float32
    shape_params: np.ndarray  # (45,) float32


def load_sample_pose(pose_source: str | os.PathLike | None = None) -> SamplePose:
    data = np.load(pose_source or default_pose_source())
    return SamplePose(
        joints_3d=data["pred_keypoints_3d"].astype(np.float32),
        mhr_params=data["mhr_model_params"].astype(np.float32),
        shape_params=data["shape_params"].astype(np.float32),
    )


def stand_in_cam_trans(
    cliff_cond: np.ndarray, image_size: tuple[int, int], pose_source: str | os.PathLike | None = None
) -> np.ndarray:
    """What `build_instanthmr_model` returns as `cam_trans` for (N,3) `cliff_cond` (a numpy twin for tests)."""
    pose = load_sample_pose(pose_source)
    scale, offset, centre = _cam_trans_terms(pose.joints_3d, image_size)
    cliff = np.asarray(cliff_cond, np.float64).reshape(-1, 3)
    return ((cliff * scale + offset) / cliff[:, 2:3] - centre).astype(np.float32)


def stand_in_cam_trans_angular(cliff_cond: np.ndarray, pose_source: str | os.PathLike | None = None) -> np.ndarray:
    """What an angular-form `build_instanthmr_model` returns as `cam_trans` for (N,3) angular `cliff_cond`."""
    extent, centre = _extent_and_centre(load_sample_pose(pose_source).joints_3d)
    cliff = np.asarray(cliff_cond, np.float64).reshape(-1, 3)
    depth = extent / KEYPOINT_FILL / cliff[:, 2:3]
    return (np.concatenate([np.tan(cliff[:, :2]) * depth, depth], axis=1) - centre).astype(np.float32)


def _extent_and_centre(joints_3d: np.ndarray) -> tuple[float, np.ndarray]:
    """The keypoints' larger x/y extent (m) and the point placed on the box's ray: extent centre, mean depth."""
    lo, hi = joints_3d.min(axis=0), joints_3d.max(axis=0)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, joints_3d[:, 2].mean()], np.float64)
    return extent, centre


def _cam_trans_terms(joints_3d: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    # cam_trans = (cliff * scale + offset) / cliff[2] - centre puts the keypoints' extent centre at the depth
    # z = f * extent / (fill * b) on the ray through the box centre, with b = cliff[2] * max(W, H).
    height, width = image_size
    focal = float(np.hypot(width, height))
    extent, centre = _extent_and_centre(joints_3d)
    k = extent / (KEYPOINT_FILL * max(width, height))
    scale = np.array([k * width / 2, k * height / 2, 0.0])
    offset = np.array([0.0, 0.0, k * focal])
    return scale, offset, centre


_ONNX_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def build_instanthmr_model(
    path: str | os.PathLike,
    *,
    pose_source: str | os.PathLike | None = None,
    image_size: tuple[int, int] = (994, 1768),
    crop_size: int | None = CROP_SIZE,
    batch: int | None = None,
    image_dtype: str = "float32",
    channels_last: bool = False,
    cliff_form: str = "pixel",
    cliff_dtype: str = "float32",
    output_dtype: str = "float32",
    metadata: dict[str, str] | None = None,
    with_joints_3d: bool = True,
    extra_inputs: Sequence[tuple[str, str, Sequence[int | str]]] = (),
    image_input_shape: Sequence[int | str] | None = None,
) -> Path:
    """Write an InstantHMR-like model returning the real pose of `pose_source` for every person.

    image_size: (H, W) of the frames whose camera the returned `cam_trans`/`joints_2d` match, for the pixel form
    (default: `video/two_people_walking.mp4`); the angular form needs none (it places people in the camera of the f
    it is given). crop_size: the static crop side (None: symbolic H and W, the size must then come from metadata).
    batch: None (dynamic, as the real file) or fixed. The layouts of the published graphs (contract section 5):
    - image_dtype "float32" | "float16" (normalised by the caller) | "uint8" (normalised inside the graph);
      channels_last: [N,S,S,3] instead of [N,3,S,S]; image_input_shape: any other shape (a two-crop layout).
    - cliff_form "pixel": `cam_trans = (cliff * scale + offset) / cliff[2] - centre` (the first release's form);
      "angular": cliff = [atan((cx-W/2)/f), atan((cy-H/2)/f), b/f] puts the keypoints' centre on the ray
      (tan c0, tan c1, 1) at depth extent / (fill * c2). Either way the keypoints' larger extent spans `fill` of
      max(bw, bh) and their centre projects onto the box centre; `joints_2d` is their projection in crop
      coordinates ([-1, 1] over the 1.2 * max(bw, bh) square).
    - metadata: ONNX metadata_props (image_size, cliff_focal, ...); with_joints_3d False: the four-output graph;
      extra_inputs: (name, dtype, shape) inputs the graph declares and ignores (a fit layout's extra input).
    Every graph also returns `crop_mean` (N,3): the per-channel mean of the ImageNet-normalised crop it received
    (normalised inside the graph for uint8), so tests can check the crop the caller fed.
    """
    pose = load_sample_pose(pose_source)
    n = _batch_dim(batch, "N")
    f32 = np.float32
    side = crop_size if crop_size is not None else "S"
    if image_input_shape is None:
        image_input_shape = [n, side, side, 3] if channels_last else [n, 3, side, side]

    nodes = [
        helper.make_node("Cast", ["cliff_cond"], ["cliff"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["cliff"], ["batch_only"], start=0, end=1),
        _const("mhr_tail", np.array([204], np.int64)),
        _const("shape_tail", np.array([45], np.int64)),
        helper.make_node("Concat", ["batch_only", "mhr_tail"], ["mhr_shape"], axis=0),
        helper.make_node("Concat", ["batch_only", "shape_tail"], ["shape_shape"], axis=0),
        _const("mhr_one", pose.mhr_params[None]),
        _const("shape_one", pose.shape_params[None]),
        helper.make_node("Expand", ["mhr_one", "mhr_shape"], ["mhr_params_f"]),
        helper.make_node("Expand", ["shape_one", "shape_shape"], ["shape_params_f"]),
        _const("col2_start", np.array([2], np.int64)),
        _const("col2_end", np.array([3], np.int64)),
        _const("col01_start", np.array([0], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        _const("xy_start", np.array([0], np.int64)),
        _const("xy_end", np.array([2], np.int64)),
        _const("z_end", np.array([3], np.int64)),
        _const("axis2", np.array([2], np.int64)),
        helper.make_node("Slice", ["cliff", "col2_start", "col2_end", "axis1"], ["box_scale"]),
        helper.make_node("Slice", ["cliff", "col01_start", "xy_end", "axis1"], ["cliff_xy"]),
        # joints_3d (N,70,3): the constant pose for every person
        _const("joints_one", pose.joints_3d[None]),
        _const("joints_tail", np.array([70, 3], np.int64)),
        helper.make_node("Concat", ["batch_only", "joints_tail"], ["joints_shape"], axis=0),
        helper.make_node("Expand", ["joints_one", "joints_shape"], ["joints_3d_f"]),
    ]
    if cliff_form == "pixel":
        height, width = image_size
        focal = float(np.hypot(width, height))
        scale, offset, centre = _cam_trans_terms(pose.joints_3d, image_size)
        nodes += [
            # cam_trans (N,3) = (cliff * scale + offset) / cliff[:, 2] - centre
            _const("cam_scale", scale.astype(f32)[None]),
            _const("cam_offset", offset.astype(f32)[None]),
            _const("cam_centre", centre.astype(f32)[None]),
            helper.make_node("Mul", ["cliff", "cam_scale"], ["cam_scaled"]),
            helper.make_node("Add", ["cam_scaled", "cam_offset"], ["cam_numerator"]),
            helper.make_node("Div", ["cam_numerator", "box_scale"], ["reference_point"]),
            helper.make_node("Sub", ["reference_point", "cam_centre"], ["cam_trans_f"]),
            # the crop-coordinate numerator and denominator in pixels:
            # joints_2d = (f * XY/Z - cliff[:2] * (W/2, H/2)) / (0.6 * max(W,H) * cliff[2])
            _const("focal", np.array(focal, f32)),
            _const("half_size", np.array([[width / 2, height / 2]], f32)),
            helper.make_node("Mul", ["cliff_xy", "half_size"], ["box_centre_from_centre"]),
            _const("half_crop", np.array(CROP_SCALE / 2 * max(width, height), f32)),
        ]
    elif cliff_form == "angular":
        extent, centre = _extent_and_centre(pose.joints_3d)
        nodes += [
            # depth z = extent / (fill * c2); reference point = (tan c0 * z, tan c1 * z, z); cam_trans = it - centre
            _const("depth_numerator", np.array(extent / KEYPOINT_FILL, f32)),
            helper.make_node("Div", ["depth_numerator", "box_scale"], ["depth"]),
            helper.make_node("Tan", ["cliff_xy"], ["ray_xy"]),
            helper.make_node("Mul", ["ray_xy", "depth"], ["reference_xy"]),
            helper.make_node("Concat", ["reference_xy", "depth"], ["reference_point"], axis=1),
            _const("cam_centre", centre.astype(f32)[None]),
            helper.make_node("Sub", ["reference_point", "cam_centre"], ["cam_trans_f"]),
            # joints_2d = (XY/Z - tan(c01)) / (0.6 * c2): f cancels out
            _const("focal", np.array(1.0, f32)),
            helper.make_node("Identity", ["ray_xy"], ["box_centre_from_centre"]),
            _const("half_crop", np.array(CROP_SCALE / 2, f32)),
        ]
    else:
        raise ValueError(f"cliff_form {cliff_form!r}")
    nodes += [
        helper.make_node("Unsqueeze", ["cam_trans_f", "axis1"], ["cam_trans_row"]),
        helper.make_node("Add", ["joints_3d_f", "cam_trans_row"], ["joints_cam"]),
        helper.make_node("Slice", ["joints_cam", "xy_start", "xy_end", "axis2"], ["joints_xy"]),
        helper.make_node("Slice", ["joints_cam", "xy_end", "z_end", "axis2"], ["joints_z"]),
        helper.make_node("Div", ["joints_xy", "joints_z"], ["joints_ray"]),
        helper.make_node("Mul", ["joints_ray", "focal"], ["joints_from_centre"]),
        helper.make_node("Unsqueeze", ["box_centre_from_centre", "axis1"], ["box_centre_row"]),
        helper.make_node("Sub", ["joints_from_centre", "box_centre_row"], ["joints_from_box"]),
        helper.make_node("Mul", ["box_scale", "half_crop"], ["half_side"]),
        helper.make_node("Unsqueeze", ["half_side", "axis1"], ["half_side_row"]),
        helper.make_node("Div", ["joints_from_box", "half_side_row"], ["joints_2d_f"]),
    ]
    # crop_mean (N,3): what the graph saw, normalised as the network would see it
    colour_shape = (1, 1, 1, 3) if channels_last else (1, 3, 1, 1)
    nodes.append(helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT))
    if image_dtype == "uint8":
        nodes += [
            _const("pixel_mean", (255 * IMAGENET_MEAN).reshape(colour_shape)),
            _const("pixel_std", (255 * IMAGENET_STD).reshape(colour_shape)),
            helper.make_node("Sub", ["image_f", "pixel_mean"], ["image_centred"]),
            helper.make_node("Div", ["image_centred", "pixel_std"], ["image_normalised"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["image_f"], ["image_normalised"]))
    if len(image_input_shape) == 4:
        nodes.append(helper.make_node("ReduceMean", ["image_normalised"], ["crop_mean_f"],
                                      axes=[1, 2] if channels_last else [2, 3], keepdims=0))
    else:  # another layout: a dummy mean of the right shape
        nodes += [_const("no_mean", np.zeros((1, 3), f32)),
                  helper.make_node("Mul", ["cam_trans_f", "no_mean"], ["crop_mean_f"])]

    outputs = [("mhr_params", [n, 204]), ("shape_params", [n, 45]), ("cam_trans", [n, 3]),
               ("joints_2d", [n, 70, 2]), ("joints_3d", [n, 70, 3]), ("crop_mean", [n, 3])]
    if not with_joints_3d:
        outputs = [o for o in outputs if o[0] != "joints_3d"]
    for name, _ in outputs:
        nodes.append(helper.make_node("Cast", [name + "_f"], [name], to=_ONNX_TYPES[output_dtype]))
    inputs = [
        helper.make_tensor_value_info("image", _ONNX_TYPES[image_dtype], list(image_input_shape)),
        helper.make_tensor_value_info("cliff_cond", _ONNX_TYPES[cliff_dtype], [n, 3]),
    ]
    inputs += [helper.make_tensor_value_info(name, _ONNX_TYPES[dtype], list(shape))
               for name, dtype, shape in extra_inputs]
    graph = helper.make_graph(
        nodes,
        "instanthmr_contract_stand_in",
        inputs,
        [helper.make_tensor_value_info(name, _ONNX_TYPES[output_dtype], shape) for name, shape in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return _save(model, path)


def build_wrong_size_model(path: str | os.PathLike) -> Path:
    """An InstantHMR look-alike whose `image` input is [N,3,256,256]: the signature check must refuse it."""
    return build_instanthmr_model(path, crop_size=256)


def write_corrupt_model(path: str | os.PathLike) -> Path:
    """A truncated .onnx file (like an interrupted download): loading must fail with a clear ModelError."""
    path = Path(path)
    whole = build_rfdetr_model(path)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path
