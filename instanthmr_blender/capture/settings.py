"""What a capture needs and what it reports: its settings (checked), its progress, its summary, and its errors.

Shared by the offline and the live loops, and built by the Blender-side settings layer for the panel and the
command line alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models.runtime import ModelError
from ..pose.sam3d import BACKENDS, Sam3DError, Sam3DSettings
from ..take import TakeError
from ..video.frames import FrameSourceError
from ..video.lens import DEFAULT_SENSOR_WIDTH_MM, Lens, LensError

#: Errors whose message already tells the user what to do: passed through every stage unchanged.
USER_ERRORS = (FrameSourceError, ModelError, TakeError, LensError, Sam3DError)


class CaptureCancelled(Exception):
    """The user cancelled the capture. Nothing was written; every worker thread has been joined."""


class CaptureError(RuntimeError):
    """The capture failed; the message says in which stage and at which source frame."""


@dataclass
class CaptureSettings:
    """Everything a capture needs. Frames are `range(start, end, step)` of the source (end exclusive)."""

    source: str
    start: int = 0
    end: int | None = None
    step: int = 1
    fps: float = 30.0  # frame rate of image sequences and single images
    detector_backend: str = "onnx"  # "onnx" (ONNX Runtime) | "torch" (the optional `rfdetr` package)
    detector_model: str = ""  # RF-DETR .onnx file (onnx backend)
    detector_variant: str = "nano"  # "nano" | "small" | "medium" | "large" (torch backend)
    detector_resolution: int | None = None  # None: the model's own
    det_confidence: float = 0.5
    detector_stride: int = 1  # run the detector on every Nth processed frame; boxes follow keypoints between
    detector_batch: int = 0  # frames per detector run; 0: 1 on the CPU (batching gains nothing there), 2 on a GPU
    hmr_model: str = ""  # InstantHMR .onnx file
    max_persons: int = 2
    min_track_length: int = 5  # shorter tracks (in frames) are dropped from the take
    lost_track_frames: int = 15
    batch_persons: bool = True  # all people of a frame in one padded InstantHMR batch; False: one at a time
    device: str = "auto"
    threads: int = 0  # intra-op threads per model; 0 lets onnxruntime decide (one per physical core)
    serialise_models: bool | None = None  # one model call at a time; None: when both models run on the CPU
    queue_frames: int = 8  # decoded frames buffered ahead of the models
    # A known camera lens (hmr_graph.capture_camera says what it changes per graph kind); None: the model's own.
    focal_px: float | None = None
    lens_mm: float | None = None
    sensor_width_mm: float = DEFAULT_SENSOR_WIDTH_MM
    backend: str = "instanthmr"  # the pose model: "instanthmr" (ONNX) | "sam3d" (SAM 3D Body in its own Python)
    sam3d: Sam3DSettings = field(default_factory=Sam3DSettings)

    @property
    def lens(self) -> Lens:
        return Lens(self.focal_px, self.lens_mm, self.sensor_width_mm)

    def check(self) -> None:
        """Raise CaptureError naming the first setting out of range."""
        rules = [
            ("step", self.step >= 1, "1 or more"),
            ("detector_stride", self.detector_stride >= 1, "1 or more"),
            ("detector_batch", self.detector_batch >= 0, "0 (automatic) or more"),
            ("max_persons", self.max_persons >= 1, "1 or more"),
            ("min_track_length", self.min_track_length >= 1, "1 or more"),
            ("lost_track_frames", self.lost_track_frames >= 0, "0 or more"),
            ("det_confidence", 0.0 <= self.det_confidence < 1.0, "between 0 and 1"),
            ("queue_frames", self.queue_frames >= 1, "1 or more"),
            ("detector_backend", self.detector_backend in ("onnx", "torch"), '"onnx" or "torch"'),
            ("backend", self.backend in BACKENDS, " or ".join(f'"{name}"' for name in BACKENDS)),
            ("focal_px", self.focal_px is None or self.focal_px > 0, "a positive number of pixels"),
        ]
        for name, ok, wanted in rules:
            if not ok:
                raise CaptureError(f"capture setting {name} = {getattr(self, name)!r} must be {wanted}")
        self.lens.check()


@dataclass(frozen=True)
class CaptureSummary:
    """What the caller should tell the user about a finished capture, beyond the take itself.

    frames_expected: frames the requested range holds by the source's own count (a video's header);
    frames_read: frames actually processed; header_frames / readable_frames: the source's frame count as its
    header gives it / as reading found it (fewer when a video was cut off or damaged); short_tracks_dropped:
    people tracked in fewer than `min_track_length` frames, left out of the take; min_track_length: the length
    applied, which is the setting clamped to the frames processed (a clip shorter than the setting keeps the
    people seen in all of its frames: a single image captures with the defaults).
    """

    source: str
    frames_expected: int
    frames_read: int
    header_frames: int
    readable_frames: int
    short_tracks_dropped: int
    min_track_length: int

    @property
    def truncated(self) -> bool:
        """The source ran out of readable frames before the end of the requested range."""
        return self.frames_read < self.frames_expected

    def truncation_message(self) -> str:
        """One sentence for the user, naming the source and both counts ("" when nothing is missing)."""
        if not self.truncated:
            return ""
        return (
            f"`{self.source}` stopped after {self.readable_frames} readable frames although its header lists "
            f"{self.header_frames}: captured {self.frames_read} of the {self.frames_expected} frames asked for "
            "(the file is cut off or damaged; the scene covers only the captured frames)"
        )

    def short_tracks_message(self, setting: str) -> str:
        """One sentence saying how many people were dropped as too short and how to keep them; `setting`
        names the minimum-track-length control where the user sees it (an option, a panel field)."""
        if not self.short_tracks_dropped:
            return ""
        people = "1 person" if self.short_tracks_dropped == 1 else f"{self.short_tracks_dropped} people"
        return (
            f"{people} seen in fewer than {self.min_track_length} of the {self.frames_read} frames left out as "
            f"too short to track: lower {setting} to keep them (1 keeps everyone)"
        )


@dataclass(frozen=True)
class Progress:
    """Where a capture stands. Stage times are mean milliseconds per frame that went through the stage."""

    frames_done: int
    frames_total: int
    fps: float  # processed frames per second so far
    eta_seconds: float  # at the speed so far
    decode_ms: float
    detector_ms: float
    hmr_ms: float  # InstantHMR plus tracking

    def text(self) -> str:
        """`120/230 frames · 24.8 fps · ETA 4 s · decode 14 ms · detector 38 ms · HMR 22 ms` (the upstream demo's
        latency readout), as the panel and the command line show it."""
        eta = f"{self.eta_seconds:.0f} s" if self.eta_seconds == self.eta_seconds else "?"
        return (f"{self.frames_done}/{self.frames_total} frames · {self.fps:.1f} fps · ETA {eta} · "
                f"decode {self.decode_ms:.0f} ms · detector {self.detector_ms:.0f} ms · HMR {self.hmr_ms:.0f} ms")
