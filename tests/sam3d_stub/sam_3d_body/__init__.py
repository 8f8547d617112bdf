"""A stand-in for Meta's `sam_3d_body` package with upstream's call signatures, answering with REAL SAM 3D Body
outputs (`../shared/fixtures/sam3d/img_subj*.npz`) for crops of the matching boxes.

Upstream API mirrored (facebookresearch/sam-3d-body, `sam_3d_body/build_models.py` and
`sam_3d_body/sam_3d_body_estimator.py`):
    model, model_cfg = load_sam_3d_body(checkpoint_path, device="cuda", mhr_path="")   # reads model_config.yaml
    estimator = SAM3DBodyEstimator(sam_3d_body_model=model, model_cfg=model_cfg, human_detector=None, ...)
    people = estimator.process_one_image(img, bboxes=None, masks=None, cam_int=None, det_cat_id=0,
                                         bbox_thr=0.5, nms_thr=0.3, use_mask=False, inference_type="full")
`img` is an RGB uint8 array, `cam_int` a (1, 3, 3) torch tensor; each person is a dict with upstream's keys.

The checkpoint folder's `model_config.yaml` (JSON, which is YAML) tells the stub where the fixtures are and how
to behave: `{"fixtures": DIR, "mode": "ok" | "crash" | "hang", "markers": [[r, g, b], ...]}`. To prove the data
path, it refuses what the real model would silently get wrong: an image that is not the test image (each
person's marker colour at its box centre, so BGR or a flip is caught), boxes that match no fixture person, and
intrinsics other than the fixtures' camera (f = 2535.27 px, principal point (960, 445)). It also runs
`model.backbone` on every crop, so a replaced backbone is exercised.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

__version__ = "stub-1.0"

FIXTURE_FOCAL = 2535.27
FIXTURE_PRINCIPAL = (960.0, 445.0)
FIXTURE_SIZE = (890, 1920)


class _Backbone(torch.nn.Module):
    """(B, 3, 512, 512) -> (B, 1280, 32, 32), like the DINOv3 backbone (cheap: pooling and a 1x1 conv)."""

    embed_dims = embed_dim = 1280
    patch_size = 16

    def __init__(self) -> None:
        super().__init__()
        self.project = torch.nn.Conv2d(3, 1280, 1)

    def forward(self, x, extra_embed=None):
        return self.project(torch.nn.functional.avg_pool2d(x, 16))


class _Faces(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("faces", torch.zeros((1, 3), dtype=torch.int64))


class _Model(torch.nn.Module):
    def __init__(self, config: dict, device: str) -> None:
        super().__init__()
        self.cfg = config
        self.backbone = _Backbone()
        self.head_pose = _Faces()
        self.to(device)

    @property
    def device(self):
        return self.head_pose.faces.device


def load_sam_3d_body(checkpoint_path: str = "", device: str = "cuda", mhr_path: str = ""):
    config_path = Path(checkpoint_path).parent / "model_config.yaml"
    config = json.loads(config_path.read_text())
    if not Path(mhr_path).is_file():
        raise FileNotFoundError(mhr_path)
    people = []
    for path in sorted(Path(config["fixtures"]).glob("img_subj*.npz")):
        with np.load(path) as data:
            people.append({key: data[key] for key in data.files})
    config["people"] = people
    return _Model(config, device), config


class SAM3DBodyEstimator:
    def __init__(self, sam_3d_body_model, model_cfg, human_detector=None, human_segmentor=None, fov_estimator=None):
        self.model, self.cfg = sam_3d_body_model, model_cfg
        self.device = sam_3d_body_model.device
        self.faces = self.model.head_pose.faces.cpu().numpy()

    @torch.no_grad()
    def process_one_image(self, img, bboxes=None, masks=None, cam_int=None, det_cat_id=0, bbox_thr=0.5,
                          nms_thr=0.3, use_mask=False, inference_type="full"):
        mode = self.cfg.get("mode", "ok")
        if mode == "crash":
            print("stub: simulated crash inside SAM 3D Body", file=sys.stderr, flush=True)
            os._exit(134)
        if mode == "hang":
            time.sleep(3600)
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == (*FIXTURE_SIZE, 3)):
            raise ValueError(f"stub: expected the (890, 1920, 3) uint8 RGB image, got {getattr(img, 'shape', img)}")
        if not (isinstance(cam_int, torch.Tensor) and tuple(cam_int.shape) == (1, 3, 3)):
            raise ValueError(f"stub: cam_int must be a (1, 3, 3) tensor as upstream's, got {cam_int!r}")
        k = cam_int[0].double().numpy()
        (cx, cy), f = FIXTURE_PRINCIPAL, FIXTURE_FOCAL
        wanted = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
        if not np.allclose(k, wanted, atol=1e-2):
            raise ValueError(f"stub: intrinsics {k.tolist()} are not the fixtures' camera {wanted.tolist()}")
        boxes = np.asarray(bboxes, np.float32).reshape(-1, 4)
        answers = []
        for box in boxes:
            index = self._match(box)
            person = self.cfg["people"][index]
            marker = self.cfg["markers"][index]
            cx, cy = int((person["bbox"][0] + person["bbox"][2]) / 2), int((person["bbox"][1] + person["bbox"][3]) / 2)
            if img[cy, cx].tolist() != list(marker):
                raise ValueError(f"stub: pixel at box centre ({cx}, {cy}) is {img[cy, cx].tolist()}, not the RGB "
                                 f"marker {list(marker)} of the test image")
            features = self.model.backbone(self._crop(img, box))
            if tuple(features.shape) != (1, 1280, 32, 32):
                raise ValueError(f"stub: backbone features {tuple(features.shape)}")
            answers.append({
                "bbox": box.copy(), "focal_length": np.float32(k[0, 0]),
                "pred_keypoints_3d": person["pred_keypoints_3d"], "pred_keypoints_2d": person["pred_keypoints_2d"],
                "pred_vertices": person["pred_vertices"], "pred_cam_t": person["pred_cam_t"],
                "shape_params": person["shape_params"], "mhr_model_params": person["mhr_model_params"],
                "pred_joint_coords": person["pred_joint_coords"], "pred_global_rots": person["pred_global_rots"],
                "mask": None,
            })  # fmt: skip
        return answers

    def _match(self, box: np.ndarray) -> int:
        distances = [np.abs(np.asarray(p["bbox"], np.float64) - box).max() for p in self.cfg["people"]]
        best = int(np.argmin(distances))
        if distances[best] > 2.0:
            raise ValueError(f"stub: box {box.tolist()} matches no fixture person ({distances[best]:.1f} px off)")
        return best

    def _crop(self, img: np.ndarray, box: np.ndarray):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        crop = torch.from_numpy(np.ascontiguousarray(img[max(y1, 0):y2, max(x1, 0):x2])).permute(2, 0, 1)[None]
        crop = torch.nn.functional.interpolate(crop.float() / 255.0, size=(512, 512), mode="bilinear")
        return crop.to(self.device)
