"""A tiny TorchScript stand-in for MHR's `mhr_model.pt`, with the same call signature, outputs and faces buffer.

`module(identity[B,45], model_params[B,204], expr[B,72]) -> (verts[B,V,3], skel_state[B,127,8])`, verts in cm,
MHR-native axes (Y up, facing +Z). Deterministic, and every vertex is a known function of the inputs:
    verts = templates[k] + 10 * model_params[:, 0:3] + pose_gain * model_params[:, 6:9]
where k is the stored identity nearest to `identity` (so each person's shape picks its own template; a
wrong or flickering identity picks a wrong one), `10 * params[0:3]` is the root translation (decimetres to
cm, as in MHR) and `params[6:9]` moves the body with the pose, so the per-frame data path shows. The faces
live where the release module keeps them: buffer `character_torch.mesh.faces`, (Fc, 3) int32.

Needs torch (imported lazily). Command line, for the Blender tier whose Python has no torch:
    python testkit/mhr_stub.py OUT.pt --sam3d FIXTURES_DIR   # templates = the SAM 3D Body keypoints
    python testkit/mhr_stub.py OUT.pt --wrong verts-shape     # a module that breaks the contract
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Camera axes (metres) -> MHR-native axes (cm): (x, -y, -z) * 100.
CAMERA_TO_MHR_CM = np.array([100.0, -100.0, -100.0])
WRONG_KINDS = ("verts-shape", "skeleton-shape", "two-inputs", "no-faces", "single-output")


def sam3d_templates(fixtures_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(K, 70, 3) cm MHR-native templates = each SAM 3D sample's `pred_keypoints_3d` (body-centred), and their
    (K, 45) `shape_params`, in file order (img_subj00..03)."""
    files = sorted(Path(fixtures_dir, "sam3d").glob("img_subj*.npz"))
    data = [np.load(path) for path in files]
    templates = np.stack([d["pred_keypoints_3d"].astype(np.float64) * CAMERA_TO_MHR_CM for d in data])
    identities = np.stack([d["shape_params"] for d in data]).astype(np.float32)
    return templates.astype(np.float32), identities


def strip_faces(num_vertices: int) -> np.ndarray:
    """(V - 2, 3) int32 triangles (i, i+1, i+2): every vertex used, all indices valid."""
    first = np.arange(num_vertices - 2, dtype=np.int32)
    return np.stack([first, first + 1, first + 2], axis=1)


def build_stub(path, templates, identities, faces=None, *, pose_gain: float = 0.0) -> Path:
    """Save the stub as TorchScript at `path`. templates: (K, V, 3) cm MHR-native; identities: (K, 45)."""
    import torch

    templates = torch.as_tensor(np.asarray(templates, np.float32))
    identities = torch.as_tensor(np.asarray(identities, np.float32))
    faces = strip_faces(templates.shape[1]) if faces is None else np.asarray(faces, np.int32)

    class Mesh(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("faces", torch.as_tensor(faces))

    class Character(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mesh = Mesh()

    class StubMHR(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.character_torch = Character()
            self.register_buffer("templates", templates)
            self.register_buffer("identities", identities)
            self.pose_gain = float(pose_gain)

        def forward(self, identity: torch.Tensor, model_params: torch.Tensor, expr: torch.Tensor):
            assert identity.shape[1] == 45 and model_params.shape[1] == 204 and expr.shape[1] == 72
            distances = ((identity[:, None, :] - self.identities[None, :, :]) ** 2).sum(dim=2)
            nearest = torch.argmin(distances, dim=1)
            offset = 10.0 * model_params[:, 0:3] + self.pose_gain * model_params[:, 6:9]
            verts = self.templates[nearest] + offset[:, None, :]
            skel_state = torch.zeros(identity.shape[0], 127, 8)
            skel_state[:, :, 0:3] = 10.0 * model_params[:, None, 0:3]
            skel_state[:, :, 6] = 1.0  # quaternion w
            skel_state[:, :, 7] = 1.0  # scale
            return verts, skel_state

    return _save(torch.jit.script(StubMHR()), path)


def build_wrong_module(path, kind: str) -> Path:
    """A TorchScript module that breaks MHR's contract in one way (`kind` in WRONG_KINDS)."""
    import torch

    if kind not in WRONG_KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {WRONG_KINDS}")

    class Mesh(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("faces", torch.as_tensor(strip_faces(10)))

    class Character(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mesh = Mesh()

    class ThreeInputs(torch.nn.Module):
        def __init__(self, verts_last: int, joints: int, with_faces: bool):
            super().__init__()
            if with_faces:
                self.character_torch = Character()
            self.verts_last, self.joints = verts_last, joints

        def forward(self, identity: torch.Tensor, model_params: torch.Tensor, expr: torch.Tensor):
            rows = identity.shape[0]
            return torch.zeros(rows, 10, self.verts_last), torch.zeros(rows, self.joints, 8)

    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.character_torch = Character()

        def forward(self, identity: torch.Tensor, model_params: torch.Tensor):
            return torch.zeros(identity.shape[0], 10, 3), torch.zeros(identity.shape[0], 127, 8)

    class SingleOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.character_torch = Character()

        def forward(self, identity: torch.Tensor, model_params: torch.Tensor, expr: torch.Tensor):
            return torch.zeros(identity.shape[0], 10, 3)

    module = {
        "verts-shape": lambda: ThreeInputs(2, 127, True),
        "skeleton-shape": lambda: ThreeInputs(3, 24, True),
        "no-faces": lambda: ThreeInputs(3, 127, False),
        "two-inputs": TwoInputs,
        "single-output": SingleOutput,
    }[kind]()
    return _save(torch.jit.script(module), path)


def _save(scripted, path) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="where to save the TorchScript file")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--sam3d", metavar="FIXTURES_DIR", help="templates from the SAM 3D Body samples")
    group.add_argument("--wrong", choices=WRONG_KINDS, help="a module that breaks the contract")
    parser.add_argument("--pose-gain", type=float, default=0.0, help="cm of body motion per unit of params[6:9]")
    args = parser.parse_args(argv)
    if args.wrong:
        build_wrong_module(args.out, args.wrong)
    else:
        templates, identities = sam3d_templates(Path(args.sam3d))
        build_stub(args.out, templates, identities, pose_gain=args.pose_gain)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
