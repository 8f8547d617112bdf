"""Runs Meta's SAM 3D Body on person crops for the add-on, as a worker process under a Python the user points to.

Standalone on purpose: `python sam3d_worker.py --checkpoint DIR [--code DIR] [--backbone FILE] [--device D]`
runs under a Python that has torch and the upstream `sam-3d-body` code (installed, or its checkout given as
`--code`), imports nothing from the add-on but `protocol.py` beside it (loaded by `bootstrap.py`), and
speaks that protocol on stdin/stdout (length-prefixed JSON headers and `.npy` arrays, no pickle).

The model is built and called as upstream's demo does: `load_sam_3d_body(checkpoint_path=DIR/model.ckpt,
device, mhr_path=DIR/assets/mhr_model.pt)` (it reads `DIR/model_config.yaml`), `SAM3DBodyEstimator(
sam_3d_body_model=model, model_cfg=cfg)` with no detector, segmentor or FOV estimator (detection, tracking and
the camera are the add-on's), then per frame `process_one_image(rgb, bboxes=boxes, cam_int=K)` with `K` the
take's intrinsics as a (1, 3, 3) tensor, so the camera, the take and the world contract agree.

Optionally the Embedl INT8 build of the DINOv3 backbone replaces the FP32 one (`--backbone`): a `.pt2` file
(`torch.export.load`), a serialized TensorRT engine (`.engine`/`.plan`), or the `.onnx` file, from which a
TensorRT engine (FP16 + INT8) is built once and cached beside it (or in `--engine-cache DIR`). Its contract:
(1, 3, 512, 512) ImageNet-normalised crop -> (1, 1280, 32, 32) features, the FP32 backbone's own.

Messages. First `{"op": "ready", "torch", "device", "sam_3d_body", "checkpoint", "backbone", "precision"}` or an
error. `{"op": "predict", "focal_length": f, "principal_point": [cx, cy]}` with image `(H, W, 3) uint8 RGB`
and boxes `(N, 4) float32 xyxy px` -> `{"op": "poses", "ms": {stage: milliseconds}}` with keypoints_3d
`(N, 70, 3)` (metres, camera axes, relative to the MHR rig origin), keypoints_2d `(N, 70, 2)` px, cam_t
`(N, 3)` m, mhr_params `(N, 204)`, shape_params `(N, 45)`, focal_length `(N,)` px (what the model used). `{"op":
"close"}` or end of input: exit 0. Failures: `{"op": "error", "kind", "message"}`, kind "checkpoint" (the
folder is not a SAM 3D Body checkpoint), "torch", "environment" (no upstream code), "backbone", "request".
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

if __package__:
    from . import protocol
else:  # run as a script under another Python: bootstrap.py beside this file comes first
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bootstrap import protocol_module

    protocol = protocol_module()
run_worker, write_message, WorkerProblem = protocol.run_worker, protocol.write_message, protocol.WorkerProblem

#: What a SAM 3D Body checkpoint folder holds (Hugging Face `facebook/sam-3d-body-dinov3`).
CHECKPOINT_FILES = ("model.ckpt", "model_config.yaml", "assets/mhr_model.pt")
NUM_KEYPOINTS = 70
BACKBONE_INPUT = (1, 3, 512, 512)
BACKBONE_OUTPUT = (1, 1280, 32, 32)
INFERENCE_TYPES = ("full", "body")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def missing_checkpoint_files(folder: str | Path) -> list[str]:
    """The CHECKPOINT_FILES missing from `folder` (all of them when it is not a folder)."""
    folder = Path(folder)
    return [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]


def check_checkpoint(folder: str | Path) -> Path:
    folder = Path(folder)
    missing = missing_checkpoint_files(folder)
    if missing:
        raise WorkerProblem(
            "checkpoint",
            f"`{folder}` is not a SAM 3D Body checkpoint folder: missing {', '.join(missing)} (download "
            "facebook/sam-3d-body-dinov3 from Hugging Face and point at its folder)",
        )
    return folder


def import_torch():
    try:
        import torch
    except Exception as error:  # ImportError, or a broken install raising anything at import
        raise WorkerProblem(
            "torch",
            f"the Python at `{sys.executable}` cannot import torch ({_first_line(error)}): point the add-on at the "
            "Python of your SAM 3D Body environment",
        ) from None
    return torch


def import_upstream(code_dir: str | None):
    """(load_sam_3d_body, SAM3DBodyEstimator, version) from the upstream package, installed or in `code_dir`."""
    if code_dir:
        if not Path(code_dir).is_dir():
            raise WorkerProblem("environment", f"the SAM 3D Body code folder `{code_dir}` does not exist")
        sys.path.insert(0, str(Path(code_dir).resolve()))
    try:
        import sam_3d_body
        from sam_3d_body import SAM3DBodyEstimator, load_sam_3d_body
    except Exception as error:
        where = f"in `{code_dir}` or " if code_dir else ""
        raise WorkerProblem(
            "environment",
            f"the Python at `{sys.executable}` cannot import sam_3d_body {where}its packages ({_first_line(error)}): "
            "install facebookresearch/sam-3d-body there (its INSTALL.md), or give the folder of its checkout",
        ) from None
    return load_sam_3d_body, SAM3DBodyEstimator, str(getattr(sam_3d_body, "__version__", "unknown"))


def pick_device(torch, device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise WorkerProblem("environment", f"torch {torch.__version__} at `{sys.executable}` sees no CUDA device")
    return device


# ---------------------------------------------------------------------------------------------------------
# The optional Embedl INT8 backbone.


def load_backbone(torch, path: str, device: str, engine_cache: str | None):
    """A callable (1, 3, 512, 512) float32 tensor -> (1, 1280, 32, 32) features, and its description."""
    path = Path(path)
    if not path.is_file():
        raise WorkerProblem("backbone", f"backbone file `{path}` does not exist")
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
            module = program.module().to(device)
        except Exception as error:
            raise WorkerProblem(
                "backbone", f"`{path.name}` is not a torch.export program ({_first_line(error)}): use "
                "embedl_sam3dbody_int8.pt2",
            ) from None
        return module, {"backbone": f"{path.name} (torch.export)", "precision": "int8"}
    if suffix in (".onnx", ".engine", ".plan"):
        if device != "cuda":
            raise WorkerProblem("backbone", f"a TensorRT backbone (`{path.name}`) needs a CUDA device")
        engine_path = path if suffix != ".onnx" else build_engine(path, engine_cache)
        return TensorRTBackbone(torch, engine_path), {
            "backbone": f"{engine_path.name} (TensorRT)", "precision": "int8+fp16",
        }
    raise WorkerProblem("backbone", f"`{path.name}`: the backbone must be a .pt2, .onnx or TensorRT .engine file")


def _tensorrt():
    try:
        import tensorrt
    except Exception as error:
        raise WorkerProblem(
            "backbone", f"the Python at `{sys.executable}` cannot import tensorrt ({_first_line(error)}): install "
            "NVIDIA TensorRT there, or use the .pt2 backbone",
        ) from None
    return tensorrt


def build_engine(onnx_path: Path, cache_dir: str | None) -> Path:
    """Build a TensorRT engine (FP16 + INT8, the Q/DQ scales are in the graph) from the ONNX file, once: it is
    cached under a name keyed by the ONNX file, the GPU and TensorRT's version, and reused from then on."""
    trt = _tensorrt()
    import torch

    digest = hashlib.sha256()
    for part in (onnx_path.with_name(onnx_path.name + ".data"), onnx_path):
        if part.is_file():
            digest.update(f"{part.name}:{part.stat().st_size}:{part.stat().st_mtime_ns}".encode())
    digest.update(f"{torch.cuda.get_device_name(0)}:{trt.__version__}".encode())
    folder = Path(cache_dir) if cache_dir else onnx_path.parent
    engine_path = folder / f"{onnx_path.stem}.{digest.hexdigest()[:16]}.engine"
    if engine_path.is_file():
        return engine_path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise WorkerProblem("backbone", f"TensorRT could not parse `{onnx_path.name}`: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.INT8)
    print(f"sam3d-worker: building a TensorRT engine from {onnx_path.name} (once; minutes)", file=sys.stderr)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise WorkerProblem("backbone", f"TensorRT could not build an engine from `{onnx_path.name}`")
    folder.mkdir(parents=True, exist_ok=True)
    partial = engine_path.with_suffix(".part")
    partial.write_bytes(bytes(serialized))
    partial.replace(engine_path)  # a half-written engine is never taken for a finished one
    return engine_path


class TensorRTBackbone:
    """A serialized TensorRT engine run on torch CUDA tensors (one input, one output, batch 1)."""

    def __init__(self, torch, engine_path: Path) -> None:
        trt = _tensorrt()
        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise WorkerProblem("backbone", f"`{engine_path.name}` is not a TensorRT engine for this GPU and version")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {name: self.engine.get_tensor_mode(name) for name in names}
        self.input = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)

    def __call__(self, x):
        torch = self.torch
        x = x.contiguous().float()
        out = torch.empty(BACKBONE_OUTPUT, dtype=torch.float32, device=x.device)
        self.context.set_input_shape(self.input, tuple(x.shape))
        self.context.set_tensor_address(self.input, x.data_ptr())
        self.context.set_tensor_address(self.output, out.data_ptr())
        stream = torch.cuda.current_stream()
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out


def replacement_backbone(torch, original, runner):
    """A module standing in for upstream's `model.backbone`: same attributes the model reads, the Embedl build
    run one crop at a time (its batch is 1), features returned in the caller's dtype."""

    class EmbedlBackbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name in ("embed_dims", "embed_dim", "patch_size"):
                if hasattr(original, name):
                    setattr(self, name, getattr(original, name))
            self.runner = runner

        def forward(self, x, *args, **kwargs):
            rows = [self.runner(x[i : i + 1].float()) for i in range(x.shape[0])]
            return torch.cat(rows).to(x.dtype)

    return EmbedlBackbone()


def check_backbone(torch, backbone, device: str, name: str) -> None:
    try:
        with torch.no_grad():
            features = backbone(torch.zeros(BACKBONE_INPUT, device=device))
    except Exception as error:
        raise WorkerProblem(
            "backbone", f"the backbone `{name}` failed on a {BACKBONE_INPUT} crop ({_first_line(error)})"
        ) from None
    if tuple(features.shape) != BACKBONE_OUTPUT:
        raise WorkerProblem(
            "backbone", f"the backbone `{name}` returned {tuple(features.shape)}; SAM 3D Body's is {BACKBONE_OUTPUT}"
        )


class StageClock:
    """Milliseconds spent inside a module's forward (hooks; CUDA synchronised so the figure is the GPU's)."""

    def __init__(self, torch, module, device: str) -> None:
        self.torch, self.device, self.ms, self._began = torch, device, 0.0, 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _start(self, *_):
        self._sync()
        self._began = time.perf_counter()

    def _stop(self, *_):
        self._sync()
        self.ms += 1000.0 * (time.perf_counter() - self._began)


# ---------------------------------------------------------------------------------------------------------
# The worker.


class Session:
    """The loaded estimator and what the add-on needs to know about it."""

    def __init__(self, args) -> None:
        checkpoint = check_checkpoint(args.checkpoint)
        torch = import_torch()
        load_sam_3d_body, estimator_class, version = import_upstream(args.code)
        device = pick_device(torch, args.device)
        try:
            model, model_cfg = load_sam_3d_body(
                checkpoint_path=str(checkpoint / "model.ckpt"), device=device,
                mhr_path=str(checkpoint / "assets" / "mhr_model.pt"),
            )[:2]  # fmt: skip
        except Exception as error:
            raise WorkerProblem(
                "checkpoint", f"SAM 3D Body could not load the checkpoint in `{checkpoint}` ({_first_line(error)})"
            ) from None
        info = {"backbone": "DINOv3 (checkpoint)", "precision": "fp32"}
        if args.backbone:
            runner, info = load_backbone(torch, args.backbone, device, args.engine_cache)
            model.backbone = replacement_backbone(torch, model.backbone, runner)
            check_backbone(torch, model.backbone, device, Path(args.backbone).name)
        self.torch = torch
        self.estimator = estimator_class(sam_3d_body_model=model, model_cfg=model_cfg)
        self.backbone_clock = StageClock(torch, model.backbone, device)
        self.inference_type = args.inference_type
        self.info = {
            "torch": torch.__version__, "device": device, "sam_3d_body": version, "checkpoint": str(checkpoint),
            "checkpoint_bytes": (checkpoint / "model.ckpt").stat().st_size, **info,
        }  # fmt: skip

    def predict(self, header: dict, arrays: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
        torch = self.torch
        if len(arrays) != 2:
            raise WorkerProblem("request", f"predict needs 2 arrays (image, boxes), got {len(arrays)}")
        image, boxes = arrays
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise WorkerProblem("request", f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        focal = float(header["focal_length"])
        cx, cy = (float(v) for v in header["principal_point"])
        began = time.perf_counter()
        self.backbone_clock.ms = 0.0
        if len(boxes) == 0:
            people = []
        else:
            cam_int = torch.tensor([[[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]]], dtype=torch.float32)
            people = self.estimator.process_one_image(
                np.ascontiguousarray(image), bboxes=boxes, cam_int=cam_int, inference_type=self.inference_type
            )
        total = 1000.0 * (time.perf_counter() - began)
        if len(people) != len(boxes):
            raise WorkerProblem("request", f"SAM 3D Body returned {len(people)} people for {len(boxes)} boxes")

        def stack(key: str, shape: tuple) -> np.ndarray:
            rows = [np.asarray(person[key], np.float32).reshape(shape) for person in people]
            return np.stack(rows) if rows else np.zeros((0, *shape), np.float32)

        outputs = [
            stack("pred_keypoints_3d", (NUM_KEYPOINTS, 3)), stack("pred_keypoints_2d", (NUM_KEYPOINTS, 2)),
            stack("pred_cam_t", (3,)), stack("mhr_model_params", (204,)), stack("shape_params", (45,)),
            stack("focal_length", ()),
        ]  # fmt: skip
        backbone = self.backbone_clock.ms
        ms = {"backbone": backbone, "decoder_and_heads": max(total - backbone, 0.0), "model": total}
        return {"op": "poses", "ms": ms}, outputs


def serve(args, requests, replies) -> int:
    try:
        session = Session(args)
    except WorkerProblem as problem:
        protocol.report(replies, problem)
        return 1
    except Exception as error:  # upstream failed while building: say what, instead of a bare exit
        protocol.report(replies, WorkerProblem("model", f"SAM 3D Body could not start: {error!r}"))
        return 1
    write_message(replies, {"op": "ready", **session.info})
    # the model failing on one frame is reported, and the worker keeps serving
    return protocol.answer_requests(requests, replies, {"predict": session.predict},
                                    failure=lambda error: WorkerProblem("model", f"SAM 3D Body failed: {error!r}"))


def parse_arguments(argv: list[str]):
    parser = argparse.ArgumentParser(prog="sam3d_worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="folder with model.ckpt, model_config.yaml, assets/")
    parser.add_argument("--code", default=None, help="a checkout of facebookresearch/sam-3d-body (else installed)")
    parser.add_argument("--backbone", default=None, help="Embedl INT8 backbone: .pt2, .onnx or TensorRT .engine")
    parser.add_argument("--engine-cache", default=None, help="where TensorRT engines built from .onnx are kept")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu", "mps"), default="auto")
    parser.add_argument("--inference-type", choices=INFERENCE_TYPES, default="full")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    # What upstream and torch print goes to stderr (the log), never into the protocol's stream.
    return run_worker(lambda requests, replies: serve(args, requests, replies))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
