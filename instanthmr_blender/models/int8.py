"""A user's INT8 InstantHMR and its measured fidelity: the numbers, the report file beside the model, its summary.

`tools/quantize_hmr.py` statically quantises the user's InstantHMR on person crops of their own clip and measures
it against the fp32 model on held-out crops of that clip. The result lives beside the model:
`<model stem>.int8.onnx` and `<model stem>.int8.json` (this module's `FidelityReport`). The add-on offers the
INT8 model only when both are there, showing the report's summary, and the user chooses.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .fidelity import rigid_align

INT8_SUFFIX = ".int8.onnx"
REPORT_SUFFIX = ".int8.json"
REPORT_VERSION = 2  # 2: model_bytes, so a replaced model is noticed without hashing it


def int8_model_path(model_path: str | os.PathLike) -> Path:
    """Where the INT8 version of an InstantHMR file is kept: `instanthmr.onnx` -> `instanthmr.int8.onnx`."""
    path = Path(model_path)
    return path.with_name(path.stem + INT8_SUFFIX)


def report_path(model_path: str | os.PathLike) -> Path:
    """The fidelity report of the INT8 version: `instanthmr.onnx` -> `instanthmr.int8.json`."""
    path = Path(model_path)
    return path.with_name(path.stem + REPORT_SUFFIX)


# ------------------------------------------------------------------------------------------------------------
# Fidelity measures. Keypoints: (..., K, 3) metres or (..., K, 2) pixels; absent people are NaN rows.


def point_deviation(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-keypoint Euclidean distance, shape (...); NaN where either is absent."""
    return np.linalg.norm(np.asarray(test, np.float64) - np.asarray(reference, np.float64), axis=-1)


def aligned_deviation(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N, K, 3) poses: per-keypoint distance after each test pose is rigidly aligned to its reference, (N, K)."""
    test, reference = np.asarray(test, np.float64), np.asarray(reference, np.float64)
    return np.stack([point_deviation(rigid_align(t, r), r) for t, r in zip(test, reference)])


def jitter(track: np.ndarray) -> float:
    """Mean magnitude of the second difference of (F, K, 3) keypoints over consecutive frames (units per frame^2);
    frames with a NaN around them are left out. NaN when there are fewer than 3 usable frames."""
    second = track[2:] - 2 * track[1:-1] + track[:-2]
    magnitudes = np.linalg.norm(second, axis=-1)
    magnitudes = magnitudes[np.isfinite(magnitudes)]
    return float(magnitudes.mean()) if magnitudes.size else float("nan")


def summary_stats(values: np.ndarray) -> tuple[float, float]:
    """(mean, 95th percentile) of the finite values; NaN, NaN when there are none."""
    finite = np.asarray(values, np.float64)[np.isfinite(values)]
    if not finite.size:
        return float("nan"), float("nan")
    return float(finite.mean()), float(np.percentile(finite, 95))


# ------------------------------------------------------------------------------------------------------------
# The report.


@dataclass
class FidelityReport:
    """How the INT8 model compares with the fp32 one on held-out crops of the user's clip.

    Deviations: 3D in millimetres (camera-space keypoints raw; body keypoints after rigid alignment), 2D in
    full-frame pixels; mean and 95th percentile over every keypoint of every held-out crop. Jitter: mean second
    difference of the camera-space keypoints over consecutive held-out frames, mm per frame^2, per model.
    Speed: median ms per crop (batch 1) on `provider`, both models measured in the same run.
    """

    model: str  # the fp32 (or fp16) InstantHMR it was made from, file name
    model_sha256: str
    model_bytes: int  # its size: a cheap first check that the model beside the report is still that one
    int8_model: str
    clip: str
    calibration_crops: int
    held_out_crops: int
    fp32_ms: float
    int8_ms: float
    provider: str
    mm_3d_mean: float
    mm_3d_p95: float
    mm_3d_aligned_mean: float
    mm_3d_aligned_p95: float
    px_2d_mean: float
    px_2d_p95: float
    jitter_fp32_mm: float
    jitter_int8_mm: float
    version: int = REPORT_VERSION

    @property
    def speed_up(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    @property
    def jitter_change(self) -> float:
        """Relative change of jitter, INT8 against fp32 (+0.05 = 5% more jitter)."""
        return self.jitter_int8_mm / self.jitter_fp32_mm - 1.0 if self.jitter_fp32_mm > 0 else float("nan")

    def summary(self) -> str:
        """One line for the panel: speed-up and fidelity."""
        return (
            f"INT8: {self.speed_up:.2f}x faster ({self.int8_ms:.0f} vs {self.fp32_ms:.0f} ms/crop); 3D off by "
            f"{self.mm_3d_mean:.1f} mm mean ({self.mm_3d_p95:.1f} p95), {self.mm_3d_aligned_mean:.1f} mm aligned; "
            f"2D {self.px_2d_mean:.1f} px; jitter {self.jitter_fp32_mm:.1f} -> {self.jitter_int8_mm:.1f} mm/frame^2; "
            f"measured on {self.held_out_crops} crops of {self.clip}"
        )

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> FidelityReport:
        """Raises ValueError naming the file when it is unreadable or not a report of this version."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            names = {f.name for f in fields(cls)}
            if not isinstance(data, dict) or data.get("version") != REPORT_VERSION or set(data) != names:
                raise ValueError("not an INT8 fidelity report of this version")
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"`{path.name}` is not a usable INT8 fidelity report ({error}): make it again with "
                             "tools/quantize_hmr.py") from error


def int8_state(model_path: str | os.PathLike) -> tuple[tuple[Path, FidelityReport] | None, str | None]:
    """The INT8 files beside `model_path`, read once: ((INT8 model, its report), None) when both exist, the report
    reads and it was measured on a file of this model's size (cheap enough for a panel redraw; the capture checks
    the hash too); (None, why) when they exist but are not usable, as one line saying what to do; (None, None)
    when there are none."""
    int8, report = int8_model_path(model_path), report_path(model_path)
    if not (int8.is_file() and report.is_file()):
        return None, None
    try:
        loaded = FidelityReport.load(report)
    except ValueError as error:
        return None, str(error)
    problem = _other_model(Path(model_path), loaded, hashed=False)
    return (None, problem) if problem is not None else ((int8, loaded), None)


def find_int8(model_path: str | os.PathLike) -> tuple[Path, FidelityReport] | None:
    """The usable INT8 model made from `model_path` and its report (int8_state), else None."""
    return int8_state(model_path)[0]


def int8_problem(model_path: str | os.PathLike) -> str | None:
    """Why the INT8 files beside `model_path` are not offered although they exist (int8_state), else None."""
    return int8_state(model_path)[1]


def _other_model(path: Path, report: FidelityReport, *, hashed: bool) -> str | None:
    """A line when `report` was measured on another file than `path` (its size, and with `hashed` its SHA-256)."""
    from .files import sha256_of

    try:
        same = report.model_bytes == path.stat().st_size and (not hashed or report.model_sha256 == sha256_of(path))
    except OSError as error:
        return f"`{path}` cannot be read ({error.strerror or error}): check the InstantHMR model path"
    if same:
        return None
    return (f"`{report_path(path).name}` was measured on another model than `{path.name}` (made from "
            f"`{report.model}`, SHA-256 {report.model_sha256[:12]}...): make the INT8 model again with "
            "tools/quantize_hmr.py, or choose 'As given'")


def choose_hmr_model(model_path: str | os.PathLike, use_int8: bool) -> Path:
    """The InstantHMR file a capture runs: the model itself, or its INT8 version when the user chose it.

    Raises ModelError when INT8 is chosen but the INT8 file or its fidelity report is missing or unreadable, or
    the report was measured on another model than the one at `model_path` (size and SHA-256 compared)."""
    from .runtime import ModelError

    path = Path(model_path)
    if not use_int8:
        return path
    int8, report = int8_model_path(path), report_path(path)
    if not int8.is_file() or not report.is_file():
        raise ModelError(
            f"INT8 InstantHMR chosen, but `{int8.name}` or its report `{report.name}` is missing beside "
            f"`{path.name}`: make them with tools/quantize_hmr.py, or choose 'As given' in the preferences"
        )
    try:
        loaded = FidelityReport.load(report)
    except ValueError as error:
        raise ModelError(str(error)) from error
    problem = _other_model(path, loaded, hashed=True)
    if problem is not None:
        raise ModelError(problem)
    return int8
