"""Shared by the SAM 3D Body tests of both tiers: the stub's checkpoint folder, the test image, the fixture people
and the upstream demo's output layout written from them.

The fixture photo itself is not in the fixtures: the test image is black, 1920x890 like it, with each person's
marker colour painted at the centre of their box, which the stub (`tests/sam3d_stub`) checks.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

STUB_CODE = Path(__file__).resolve().parent / "sam3d_stub"
FOCAL = 2535.27
PRINCIPAL = (960.0, 445.0)
IMAGE_SIZE = (890, 1920)
#: RGB marker of each fixture person (img_subj00..03), all channels different so BGR shows.
MARKERS = ((220, 40, 10), (30, 200, 90), (250, 180, 20), (60, 20, 230))
MARKER_RADIUS = 4


def fixture_people(fixtures_dir: Path) -> list[dict]:
    people = []
    for path in sorted(Path(fixtures_dir, "sam3d").glob("img_subj*.npz")):
        with np.load(path) as data:
            people.append({key: data[key] for key in data.files})
    return people


def render_test_image(fixtures_dir: Path) -> np.ndarray:
    """(890, 1920, 3) uint8 RGB: black, each person's marker at their box centre."""
    image = np.zeros((*IMAGE_SIZE, 3), np.uint8)
    for person, marker in zip(fixture_people(fixtures_dir), MARKERS):
        x1, y1, x2, y2 = person["bbox"]
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        r = MARKER_RADIUS
        image[cy - r : cy + r + 1, cx - r : cx + r + 1] = marker
    return image


def make_checkpoint(folder: Path, fixtures_dir: Path, mode: str = "ok") -> Path:
    """A checkpoint folder in upstream's layout whose model_config.yaml steers the stub (see its docstring)."""
    (folder / "assets").mkdir(parents=True, exist_ok=True)
    (folder / "model.ckpt").write_bytes(b"stub checkpoint: no weights")
    (folder / "assets" / "mhr_model.pt").write_bytes(b"stub MHR module")
    config = {"fixtures": str(Path(fixtures_dir, "sam3d")), "mode": mode, "markers": [list(m) for m in MARKERS]}
    (folder / "model_config.yaml").write_text(json.dumps(config))
    return folder


DEMO_KEYS = ("bbox", "focal_length", "pred_keypoints_3d", "pred_keypoints_2d", "pred_vertices", "pred_cam_t",
             "shape_params", "mhr_model_params", "pred_joint_coords", "pred_global_rots")


def demo_output(person: dict) -> dict:
    """One person as upstream's `process_one_image` returns it (the keys this layout keeps), focal included."""
    out = {key: person[key] for key in DEMO_KEYS if key in person}
    out["focal_length"] = np.float32(FOCAL)
    out["mask"] = None
    return out


def write_demo_outputs(folder: Path, fixtures_dir: Path, fmt: str, frames=(0,), stem="frame_{frame:06d}") -> Path:
    """The fixture people written as users save upstream's outputs: one file per frame and person,
    `<stem>_<person>.npz` (np.savez of the dict) or `.pkl` (pickle.dump of the dict)."""
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        for index, person in enumerate(fixture_people(fixtures_dir)):
            out = demo_output(person)
            name = f"{stem.format(frame=frame)}_{index}"
            if fmt == "npz":
                np.savez(folder / f"{name}.npz", **{k: v for k, v in out.items() if v is not None})
            else:
                with open(folder / f"{name}.pkl", "wb") as stream:
                    pickle.dump(out, stream)
    return folder


def detector_boxes(fixtures_dir: Path) -> list[tuple[float, float, float, float]]:
    """The fixture boxes as the RF-DETR stand-in's fixed detections: normalised (cx, cy, w, h)."""
    height, width = IMAGE_SIZE
    boxes = []
    for person in fixture_people(fixtures_dir):
        x1, y1, x2, y2 = (float(v) for v in person["bbox"])
        boxes.append(((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height))
    return boxes


def assert_take_holds_the_fixture_people(take, fixtures_dir: Path, column: int = 0) -> None:
    """Each track of the take, at `column`, is one fixture person (matched by box), with their outputs in the
    take's units: joints_cam = pred_keypoints_3d + pred_cam_t (m), joints_2d px, mhr_params, shape_params."""
    people = fixture_people(fixtures_dir)
    matched = []
    for track in range(take.num_tracks):
        index = int(np.argmin([np.abs(p["bbox"] - take.bbox[track, column]).max() for p in people]))
        person = people[index]
        matched.append(index)
        np.testing.assert_allclose(take.joints_cam[track, column], person["pred_keypoints_3d"] + person["pred_cam_t"],
                                   atol=1e-6)
        np.testing.assert_allclose(take.cam_trans[track, column], person["pred_cam_t"], atol=1e-6)
        np.testing.assert_allclose(take.joints_2d[track, column], person["pred_keypoints_2d"], atol=1e-4)
        np.testing.assert_allclose(take.mhr_params[track, column], person["mhr_model_params"], atol=1e-6)
        np.testing.assert_allclose(take.shape_params[track, column], person["shape_params"], atol=1e-6)
    assert sorted(matched) == list(range(len(people))), f"tracks matched fixture people {matched}"
