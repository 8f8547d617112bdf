"""Where the command line's take comes from before anything is built: a capture of the clip (text progress), SAM
3D Body results imported, and what the run needs first (model downloads, the body mesh's module)."""

import time
from pathlib import Path

import bpy

from ..instanthmr_blender.capture.offline import capture
from ..instanthmr_blender.capture.settings import CaptureSummary, Progress
from ..instanthmr_blender.models.files import KNOWN_MODELS
from ..instanthmr_blender.video.lens import Lens
from ..settings.capture import capture_settings, mesh_options, model_files
from ..settings.preferences import model_folder
from .blender_io import Interrupted, say
from .options import UsageError, capture_request, lens_fields

#: How to get missing model files, in the command line's words.
MODEL_ADVICE = ("Pass --download-models to fetch them, or put them there (or pass --model-dir, --model, "
                "--detector-model); see docs/models.md")


def clip_settings(args, clip: str, prefs):
    """The engine's capture settings for the options (model files checked: CaptureInputError), for a clip or a
    live source."""
    return capture_settings(prefs, capture_request(args, clip), advice=MODEL_ADVICE,
                            log=lambda line: say(f"capture: {line}"))


def people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


class _ProgressPrinter:
    """Text progress at most once a second (and at the end)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self.last < 1.0 and progress.frames_done < progress.frames_total:
            return
        self.last = now
        say(f"capture: {progress.text()}")


def capture_clip(args, clip: str, prefs):
    settings = clip_settings(args, clip, prefs)
    started = time.monotonic()
    summaries: list[CaptureSummary] = []
    try:
        take = capture(settings, progress=_ProgressPrinter(), log=lambda line: say(f"capture: {line}"),
                       summary=summaries.append)
    except KeyboardInterrupt:
        raise Interrupted("stopped during the capture: nothing was written") from None
    say(f"capture: {people(take.num_tracks)} tracked over {take.num_frames} frames "
        f"in {time.monotonic() - started:.1f} s")
    summary = summaries[0]
    if summary.truncated:
        say(f"capture: warning: {summary.truncation_message()}")
    if summary.short_tracks_dropped:
        say(f"capture: warning: {summary.short_tracks_message('--min-track-length')}")
        if take.num_tracks == 0:
            raise UsageError(f"nobody to build: {summary.short_tracks_message('--min-track-length')}")
    return take


def import_sam3d(args, clip: str | None):
    """The take from SAM 3D Body results; the clip, when given, gives the frame size and rate."""
    from ..instanthmr_blender.capture.sam3d_import import import_sam3d_results
    from ..instanthmr_blender.video.frames import open_source

    size, fps = None, args.fps
    if clip:
        with open_source(clip, fps=args.fps) as source:
            size, fps = (source.info.height, source.info.width), source.info.fps
    focal_px = args.focal_px
    if args.lens_mm is not None:
        if size is None:
            raise UsageError("--lens-mm with --import-sam3d needs the clip (its frame width turns mm into pixels): "
                             "give the clip too, or --focal-px")
        focal_px = Lens(**lens_fields(args)).focal_pixels(size)
    take = import_sam3d_results(args.import_sam3d, image_size=size, fps=fps, focal_px=focal_px,
                                source=str(Path(clip).resolve()) if clip else "",
                                min_track_length=args.min_track_length)
    say(f"capture: imported SAM 3D Body results from {args.import_sam3d} ({people(take.num_tracks)}, "
        f"{take.num_frames} frames)")
    return take


def download_models(args, prefs) -> None:
    """--download-models: fetch the model files this capture will load that are missing and downloadable (the
    chosen InstantHMR model, the detector), verified; offline, one line says what to fetch from where to where."""
    from ..instanthmr_blender.models.files import download_missing

    if getattr(bpy.app, "online_access_override", False) and not bpy.app.online_access:
        raise UsageError("--download-models: Blender was started with --offline-mode; drop one of the two")
    hmr, detector = model_files(prefs, capture_request(args, ""))
    wanted = []
    for path in (hmr, detector):
        spec = next((s for s in KNOWN_MODELS.values() if path is not None and s.filename == path.name), None)
        if path is not None and spec is not None:
            wanted.append((spec, Path(path).absolute()))
    printer = _DownloadPrinter()
    for path in download_missing(wanted, progress=printer):
        say(f"capture: downloaded and verified {path}")


class _DownloadPrinter:
    """Download progress at most once a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, spec, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 1.0 and done != total:
            return
        self.last = now
        size = f"{done / 1e6:.1f}" + (f" / {total / 1e6:.1f}" if total else "")
        say(f"capture: downloading {spec.filename} from {spec.url}: {size} MB")


def mesh_choice(args, prefs) -> dict:
    """The body-mesh module and Python, checked before any capture work (a 1-row call of the module)."""
    from ..instanthmr_blender.mesh import open_runner

    folder = Path(args.model_dir) if args.model_dir else model_folder(prefs, create=True)
    options = mesh_options(prefs, folder, module_path=args.mhr_model, python=args.mesh_python,
                                    allow_download=bool(bpy.app.online_access) or args.download_models)
    with open_runner(options["module_path"], options["python"]):
        pass
    return options
