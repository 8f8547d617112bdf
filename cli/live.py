"""The command line's live capture: `capture.py --camera 0 --duration 10 --out take.blend` (or `--stream URL`)
records from a camera or a network stream for that long; `run.py` then solves and builds the take like any
other capture. Blender-free: only options and the engine's `record_live`."""

import argparse
import time

from ..instanthmr_blender.capture.live import LiveError, LiveSettings, record_live
from ..instanthmr_blender.video.live_source import LiveSource, LiveSourceError, parse_source

# Errors whose message tells the user what to fix (the camera, the URL, the duration): exit status 2.
INPUT_ERRORS = (LiveSourceError, LiveError)


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 1280x720)")
    return int(width), int(height)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    live = parser.add_argument_group("live capture (instead of a clip)")
    live.add_argument("--camera", metavar="N", help="record from camera N (0 = the first camera)")
    live.add_argument("--stream", metavar="URL", help="record from a network stream (HTTP MJPEG, RTSP: a phone app)")
    live.add_argument("--duration", type=float, default=10.0, metavar="SECONDS",
                      help="how long to record from --camera/--stream (default 10)")
    live.add_argument("--camera-size", type=_size, default=(0, 0), metavar="WxH",
                      help="requested camera resolution (default: the camera's)")
    live.add_argument("--camera-fps", type=float, default=0.0, help="requested camera frame rate (default: its own)")
    live.add_argument("--source-timeout", type=float, default=5.0, metavar="SECONDS",
                      help="wait this long for the camera/stream to open and for each frame (default 5)")
    live.add_argument("--take-fps", type=float, default=30.0,
                      help="frame rate of the recorded take (frames are placed by their camera time; default 30)")


def is_live(args) -> bool:
    """A capture from --camera or --stream (no clip to show behind the camera)."""
    return args.camera is not None or args.stream is not None


def check_arguments(args, usage_error: type[Exception]) -> bool:
    """True for a live capture; raises usage_error for conflicting or out-of-range live options."""
    if not is_live(args):
        return False
    if args.camera is not None and args.stream is not None:
        raise usage_error("give either --camera or --stream, not both")
    if args.clip or args.image or args.take:
        raise usage_error("give either a clip (or --image, --take) or --camera/--stream, not both")
    for name, value in (("--duration", args.duration), ("--source-timeout", args.source_timeout),
                        ("--take-fps", args.take_fps)):
        if not value > 0:
            raise usage_error(f"{name} {value:g}: must be more than 0")
    try:
        parse_source(args.camera if args.camera is not None else args.stream)
    except LiveSourceError as exc:
        raise usage_error(str(exc)) from None
    return True


def take_name(args) -> str:
    """`camera0_<time>` or `stream_<time>`: the name of the built capture."""
    kind = f"camera{args.camera}" if args.camera is not None else "stream"
    return f"{kind}_{time.strftime('%Y%m%d_%H%M%S')}"


def record(args, capture_settings, say):
    """Record for args.duration seconds and return the take. A source that dies mid-way keeps what was recorded
    (a warning names the error); one that cannot be opened raises LiveSourceError before anything is done."""
    source = args.camera if args.camera is not None else args.stream
    settings = LiveSettings(str(source), capture_settings, width=args.camera_size[0], height=args.camera_size[1],
                            fps=args.camera_fps, timeout=args.source_timeout, take_fps=args.take_fps,
                            solve_live=False)
    from ..instanthmr_blender.capture.loading import build_models

    # the source first: an absent camera or a wrong URL fails before the models are loaded
    opened = LiveSource(settings.source, width=settings.width, height=settings.height, fps=settings.fps,
                        timeout=settings.timeout)
    try:
        detector, hmr = build_models(capture_settings, log=lambda line: say(f"capture: {line}"))
    except BaseException:
        opened.close()
        raise
    say(f"capture: recording from {'camera ' + str(source) if args.camera is not None else source} "
        f"for {args.duration:g} s")
    recording = record_live(settings, args.duration, detector=detector, hmr=hmr, source=opened,
                            progress=lambda stats: say(f"capture: {stats.text()}"))
    take = recording.take
    if recording.error:
        say(f"capture: warning: {recording.error}; keeping the {take.num_frames} frames recorded before it")
    stats = recording.stats
    say(f"capture: recorded {take.num_frames} frames ({take.frames[-1] / take.fps:.1f} s at {take.fps:g} fps), "
        f"{stats.processed} processed, {stats.dropped} dropped; {take.num_tracks} people tracked")
    return take
