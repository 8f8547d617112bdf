"""The detector and the pose model a capture's settings name, loaded (ModelError when a file is missing or
wrong), and where they compute."""

from __future__ import annotations

from collections.abc import Callable

from ..models.runtime import DEVICE_PROVIDERS, ModelError
from ..pose.detector import OnnxRFDETR, PersonDetector, TorchRFDETR
from ..pose.hmr import InstantHMR
from ..pose.sam3d import Sam3DBody
from .settings import CaptureSettings

CPU_PROVIDER = DEVICE_PROVIDERS["cpu"]


def runs_on_cpu(model) -> bool:
    """Whether a loaded model (OnnxRFDETR, InstantHMR: `provider`; TorchRFDETR: `device`) computes on the CPU."""
    provider = getattr(model, "provider", None)
    if provider is not None:
        return provider == CPU_PROVIDER
    return str(getattr(model, "device", "cpu")).startswith("cpu")


def build_models(
    settings: CaptureSettings, log: Callable[[str], None] | None = None
) -> tuple[PersonDetector, InstantHMR | Sam3DBody]:
    """Load the detector and the pose model named by `settings` (ModelError if a file is missing or wrong).
    SAM 3D Body is checked before the detector loads, and its worker is started last: the caller closes it."""
    if settings.backend == "sam3d":
        settings.sam3d.check()
    if settings.detector_backend == "torch":
        detector: PersonDetector = TorchRFDETR(
            settings.detector_variant,
            confidence=settings.det_confidence,
            device=settings.device,
            resolution=settings.detector_resolution,
        )
    else:
        if not settings.detector_model:
            raise ModelError("no person detector model chosen: set the RF-DETR .onnx file in the preferences")
        detector = OnnxRFDETR(
            settings.detector_model,
            resolution=settings.detector_resolution,
            confidence=settings.det_confidence,
            device=settings.device,
            threads=settings.threads,
            max_batch=settings.detector_batch or 1,
            spin=False,
            log=log,
        )
    if settings.backend == "sam3d":
        return detector, Sam3DBody(settings.sam3d, lens=settings.lens, log=log)
    if not settings.hmr_model:
        raise ModelError("no InstantHMR model chosen: set instanthmr.onnx in the preferences")
    hmr = InstantHMR(
        settings.hmr_model,
        device=settings.device,
        # detector frames crop up to max_persons + 1 candidates: one run per frame, always the same shape
        max_batch=settings.max_persons + 1,
        one_at_a_time=not settings.batch_persons,
        threads=settings.threads,
        spin=False,  # the two sessions take turns on the CPU: idle threads must not spin on the other's cores
        lens=settings.lens,
        log=log,
    )
    if not settings.detector_batch and not getattr(detector, "fixed_batch", None):
        # two frames per call pay on a GPU; on the CPU they cost twice one frame (measured)
        detector.batch_size = 1 if runs_on_cpu(detector) else 2
    return detector, hmr
