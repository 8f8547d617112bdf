#!/usr/bin/env python3
"""Build architecture-faithful RANDOM-WEIGHT models with the real networks' cost, for benchmarks only.

Writes into --out (default `bench-models/`, git-ignored):
  rfdetr-nano-random.onnx         RF-DETR nano exported by `rfdetr` itself (tools/export_rfdetr_onnx.py, random
                                  weights, its real input resolution 384), the detector the add-on runs.
  instanthmr-<size>-random.onnx   an InstantHMR-sized network with the exact model contract (image [N,3,224,224]
                                  + cliff_cond [N,3] in; mhr_params, shape_params, cam_trans, joints_2d, joints_3d
                                  out, dynamic batch): a timm HGNetV2 backbone (the v1.0.1 releases: nano B0 ...
                                  medium B4; `--size repvit` is the first release's RepViT-M1.5) and a 9-token
                                  cross-attention decoder, fp32.
  instanthmr-<size>-random-fp16.onnx  the same converted the way upstream ships it:
                                  `convert_float_to_float16(keep_io_types=True)` (fp16 weights, fp32 boundary).

The weights are random, so the outputs mean nothing; the output heads are biased towards a real SAM 3D Body pose
(`fixtures/sam3d`) so the tracker sees a plausible person in every crop and behaves as with a real model. Never
use these files for a capture. Needs the dev venv (torch, timm, rfdetr, onnx):
    .venv/bin/python tools/build_bench_models.py [--size nano|tiny|small|medium|repvit] [--out DIR]

Also the models `tools/bench_pipeline.py` runs with (imported from there, no torch needed): the real files it is
given, or contract-shaped stand-ins (testkit/contract_models.py) built on demand, and a detector wrapper that
reports the clip's people at fixed places (for random-weight detectors, which find nobody).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from instanthmr_blender.pose.detector import RFDETR_RESOLUTIONS, Detections, OnnxRFDETR  # noqa: E402
from instanthmr_blender.pose.hmr import InstantHMR  # noqa: E402
from testkit.contract_models import (  # noqa: E402
    DetectorBox,
    build_instanthmr_model,
    build_rfdetr_model,
    load_sample_pose,
)
from testkit.torch_compat import work_around_mismatched_torchvision  # noqa: E402

#: The InstantHMR sizes: timm backbone, decoder width, decoder layers. Widths and depths are chosen so the
#: parameter counts come near upstream's model cards (nano 20.0 M, tiny 20.3 M, small 24.4 M, medium 32.2 M; the
#: first release's RepViT-M1.5 file ~38 M, from its 77 MB of fp16 weights).
SIZES = {
    "nano": ("hgnetv2_b0", 512, 3),
    "tiny": ("hgnetv2_b1", 512, 3),
    "small": ("hgnetv2_b2", 512, 3),
    "medium": ("hgnetv2_b4", 512, 3),
    "repvit": ("repvit_m1_5", 640, 3),
}
NUM_TOKENS = 9  # pose, shape, camera and six keypoint tokens
CROP_SIZE = 224
OUTPUT_NAMES = ("mhr_params", "shape_params", "cam_trans", "joints_2d", "joints_3d")
#: Output weights are scaled by this, biases set to the sample pose: random but plausible outputs.
HEAD_WEIGHT_SCALE = 1e-3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), nargs="+", default=["nano"],
                        help="InstantHMR size(s) to build (default: nano)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-models", help="output folder")
    parser.add_argument("--no-detector", action="store_true", help="skip the RF-DETR nano export")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights (default: 0)")
    return parser.parse_args(argv)


def sample_pose_targets() -> dict[str, np.ndarray]:
    """Per-output bias values: the SAM 3D Body sample pose, its 2D keypoints in crop coordinates [-1, 1]."""
    pose = load_sample_pose()
    joints = pose.joints_3d
    # a standing person fills the crop: spread the x/y of the 3D pose over [-0.8, 0.8]
    lo, hi = joints[:, :2].min(axis=0), joints[:, :2].max(axis=0)
    crop_xy = (joints[:, :2] - (lo + hi) / 2) / (hi - lo).max() * 1.6
    return {
        "mhr_params": pose.mhr_params,
        "shape_params": pose.shape_params,
        "cam_trans": np.array([0.0, 0.9, 5.0], np.float32),
        "joints_2d": crop_xy.astype(np.float32).reshape(-1),
        "joints_3d": joints.reshape(-1),
    }


def build_torch_model(size: str):
    """The InstantHMR-sized torch module for `size` (random weights, eval mode)."""
    import timm
    import torch
    from torch import nn

    backbone_name, width, layers = SIZES[size]
    targets = sample_pose_targets()

    class TokenDecoderHMR(nn.Module):
        """Backbone feature map -> tokens; 9 learned query tokens (plus the cliff_cond embedding) attend to them
        through a transformer decoder (self-attention, cross-attention, MLP per layer); heads read the tokens."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = timm.create_model(backbone_name, pretrained=False, num_classes=0, global_pool="")
            channels = self.backbone.num_features
            self.project = nn.Conv2d(channels, width, 1)
            self.position = nn.Parameter(torch.randn(1, (CROP_SIZE // 32) ** 2, width) * 0.02)
            self.queries = nn.Parameter(torch.randn(1, NUM_TOKENS, width) * 0.02)
            self.cliff = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, width))
            layer = nn.TransformerDecoderLayer(width, 8, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
            self.decoder = nn.TransformerDecoder(layer, layers)
            # the layers start as copies of one: give each its own weights (identical ones would also be
            # stored once in the ONNX file, which would then be smaller than the real one)
            for module in self.decoder.modules():
                if isinstance(module, (nn.Linear, nn.MultiheadAttention)) and module is not self.decoder:
                    reset = getattr(module, "_reset_parameters", None) or module.reset_parameters
                    reset()
            self.norm = nn.LayerNorm(width)
            self.heads = nn.ModuleDict({
                "mhr_params": nn.Linear(width, 204),
                "shape_params": nn.Linear(width, 45),
                "cam_trans": nn.Linear(width, 3),
                "joints_2d": nn.Linear(6 * width, 140),
                "joints_3d": nn.Linear(6 * width, 210),
            })
            with torch.no_grad():
                for name, head in self.heads.items():
                    head.weight.mul_(HEAD_WEIGHT_SCALE)
                    head.bias.copy_(torch.from_numpy(targets[name]))

        def forward(self, image, cliff_cond):
            features = self.project(self.backbone.forward_features(image))  # (N, width, 7, 7)
            memory = features.flatten(2).transpose(1, 2) + self.position
            queries = self.queries.expand(image.shape[0], -1, -1) + self.cliff(cliff_cond).unsqueeze(1)
            tokens = self.norm(self.decoder(queries, memory))
            keypoint_tokens = tokens[:, 3:].flatten(1)
            return (
                self.heads["mhr_params"](tokens[:, 0]),
                self.heads["shape_params"](tokens[:, 1]),
                self.heads["cam_trans"](tokens[:, 2]),
                self.heads["joints_2d"](keypoint_tokens).reshape(-1, 70, 2),
                self.heads["joints_3d"](keypoint_tokens).reshape(-1, 70, 3),
            )

    return TokenDecoderHMR().eval()


def export_hmr(size: str, out: Path) -> tuple[Path, Path, int]:
    """Export the fp32 model and its fp16 conversion; returns (fp32 path, fp16 path, parameter count)."""
    import onnx
    import torch
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = build_torch_model(size)
    parameters = sum(p.numel() for p in model.parameters())
    fp32 = out / f"instanthmr-{size}-random.onnx"
    image = torch.randn(2, 3, CROP_SIZE, CROP_SIZE)
    cliff = torch.tensor([[0.1, -0.1, 0.3], [-0.2, 0.0, 0.4]])
    batch = {0: "N"}
    # the fused inference kernel of nn.MultiheadAttention has no ONNX export: trace the plain operations
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        torch.onnx.export(
            model, (image, cliff), str(fp32), input_names=["image", "cliff_cond"], output_names=list(OUTPUT_NAMES),
            dynamic_axes={"image": batch, "cliff_cond": batch, **{name: batch for name in OUTPUT_NAMES}},
            opset_version=17, dynamo=False,
        )
    fp16 = out / f"instanthmr-{size}-random-fp16.onnx"
    # upstream's conversion: fp16 weights and arithmetic inside, float32 inputs and outputs
    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(fp16))
    return fp32, fp16, parameters


# ---------------------------------------------------------------------------------------------------------
# The models of tools/bench_pipeline.py: real files, or stand-ins built into a temporary folder.

#: Where the stand-in detector "sees" people in every frame, whatever the image (normalised cx, cy, w, h):
#: standing figures of plausible size, so crops, the tracker and the keypoint confidence do real work.
STAND_IN_PEOPLE = (
    DetectorBox(0.30, 0.55, 0.10, 0.50, logit=3.0),
    DetectorBox(0.70, 0.55, 0.12, 0.55, logit=2.0),
    DetectorBox(0.50, 0.50, 0.08, 0.40, logit=1.5),
    DetectorBox(0.15, 0.45, 0.07, 0.35, logit=1.0),
)


def stand_in_boxes(image_size: tuple[int, int], count: int) -> np.ndarray:
    """(count, 4) xyxy pixels: the stand-in detector's people on a frame of (H, W)."""
    height, width = image_size
    rows = [
        [
            (b.cx - b.w / 2) * width,
            (b.cy - b.h / 2) * height,
            (b.cx + b.w / 2) * width,
            (b.cy + b.h / 2) * height,
        ]
        for b in STAND_IN_PEOPLE[:count]
    ]
    return np.array(rows, np.float32)


@dataclass
class ModelChoice:
    """Which model files a clip runs with."""

    detector_path: Path
    hmr_path: Path
    detector_resolution: int | None  # given to OnnxRFDETR: None = read from the model


class ModelFiles:
    """Builds stand-in models on demand into `folder`; the InstantHMR stand-in is per frame size because its
    `cam_trans` matches the implicit camera of one (H, W). `args`: bench_pipeline.py's command line (real
    files given with --model / --detector-model are used as they are)."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self._stand_in_detector: Path | None = None
        self._stand_in_hmr: dict[tuple[int, int], Path] = {}

    def for_clip(self, image_size: tuple[int, int]) -> ModelChoice:
        args = self.args
        if args.detector_model is not None:
            detector_path, detector_resolution = args.detector_model, args.detector_resolution
        else:
            if self._stand_in_detector is None:
                self._stand_in_detector = build_rfdetr_model(
                    self.folder / "rfdetr_stand_in.onnx",
                    resolution=args.detector_resolution or RFDETR_RESOLUTIONS["nano"],
                    boxes=STAND_IN_PEOPLE[: args.stand_in_people],
                )
            detector_path, detector_resolution = self._stand_in_detector, None
        if args.model is not None:
            hmr_path = args.model
        else:
            if image_size not in self._stand_in_hmr:
                height, width = image_size
                self._stand_in_hmr[image_size] = build_instanthmr_model(
                    self.folder / f"instanthmr_stand_in_{width}x{height}.onnx", image_size=image_size
                )
            hmr_path = self._stand_in_hmr[image_size]
        return ModelChoice(detector_path, hmr_path, detector_resolution)


@dataclass
class LoadedModels:
    """The models one clip runs with, loaded and warmed up; load_seconds: how long the loading took."""

    detector: OnnxRFDETR
    hmr: InstantHMR
    load_seconds: float


class ScriptedPeopleDetector:
    """Runs the real detector network on every call (its full cost), then reports `people` fixed boxes per
    frame instead of what it found: a random-weight detector finds nobody, so nothing downstream would run."""

    def __init__(self, inner: OnnxRFDETR, people: int) -> None:
        self.inner = inner
        self.people = people

    def __getattr__(self, name: str):
        return getattr(self.inner, name)  # provider, batch_size, resolution, confidence ...

    def detect(self, frames_rgb):
        self.inner.detect(frames_rgb)
        found = []
        for frame in frames_rgb:
            boxes = stand_in_boxes(frame.shape[:2], self.people)
            scores = np.linspace(0.9, 0.8, self.people).astype(np.float32)
            found.append(Detections(boxes, scores))
        return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work_around_mismatched_torchvision()
    try:
        import timm  # noqa: F401
        import torch
    except ImportError as error:
        print(f"build_bench_models: needs torch and timm (the dev venv): {error}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    if not args.no_detector:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import export_rfdetr_onnx

        status = export_rfdetr_onnx.main(
            ["--variant", "nano", "--weights", "none", "--out", str(args.out / "rfdetr-nano-random.onnx")]
        )
        if status:
            return status
    for size in args.size:
        fp32, fp16, parameters = export_hmr(size, args.out)
        print(f"wrote {fp32} and {fp16}: InstantHMR-sized {size} ({SIZES[size][0]} + {NUM_TOKENS}-token decoder, "
              f"{parameters / 1e6:.1f} M parameters, random weights: benchmarks only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
