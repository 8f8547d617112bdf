"""The command-line run behind capture.py: check every input, get the take (capture, take file, SAM 3D Body
results or live), then solve, build the scene, retarget, export and save the .blend, announcing each file.

Returns an exit status instead of raising: 0 success, 1 a capture or processing failure, 2 bad input or missing
model files, 130 Ctrl-C. Whatever fails after the take exists, the take is kept and named with how to rebuild.
"""

import os
import signal
import sys
from pathlib import Path

import bpy

from ..instanthmr_blender.capture.settings import CaptureError
from ..instanthmr_blender.mesh import MeshError
from ..instanthmr_blender.models.files import ModelDownloadError
from ..instanthmr_blender.models.registry import RegistryError
from ..instanthmr_blender.models.runtime import ModelError
from ..instanthmr_blender.pose.sam3d import Sam3DError, Sam3DWorkerError
from ..instanthmr_blender.solve import SolveError, solve_take
from ..instanthmr_blender.take import TakeError, load_take, locate_source, save_take
from ..instanthmr_blender.video.frames import FrameSourceError
from ..instanthmr_blender.video.lens import LensError
from ..retarget.bake import RetargetError
from ..scene import naming, workflow
from ..scene.build import take_name_from_path
from ..scene.export import ExportError, export_format
from ..settings.capture import CaptureInputError, default_take_path, solve_options
from ..settings.preferences import get_preferences
from . import camera, inputs, live
from .blender_io import (
    INTERRUPTED,
    Interrupted,
    OutputError,
    blender_message,
    export,
    save_blend,
    say,
    unwatch_sigint,
    was_interrupted,
    watch_sigint,
)
from .options import UsageError, blend_output, blend_part, build_parser, check_option_ranges, check_output, lens_fields

# Errors whose message tells the user what to fix in the input: exit status 2.
INPUT_ERRORS = (FrameSourceError, ModelError, TakeError, ModelDownloadError, ExportError, MeshError, RetargetError,
                LensError, RegistryError, Sam3DError, CaptureInputError, *live.INPUT_ERRORS, *camera.INPUT_ERRORS)



def run(args) -> int:
    clip = args.image or args.clip
    live_source = live.check_arguments(args, UsageError)
    if args.image and args.clip:
        raise UsageError("give either a clip or --image, not both")
    if not clip and not args.take and not args.import_sam3d and not live_source:
        raise UsageError("nothing to capture: give a clip, --image PATH, --take IN.npz, --import-sam3d DIR, "
                         "--camera N or --stream URL")
    if args.take and args.import_sam3d:
        raise UsageError("give either --take or --import-sam3d, not both")
    if live_source and (args.backend or get_preferences().pose_backend) == "sam3d":
        raise UsageError("live capture runs InstantHMR only (SAM 3D Body is far too slow for it): "
                         "pass --backend instanthmr")
    check_option_ranges(args)
    lens_fields(args)
    # Every output location is checked before any model runs: a bad one must not cost a whole capture.
    if args.take and not clip:
        take_source = load_take(args.take).source
        name = take_name_from_path(take_source or args.take)
    elif live_source:
        name = live.take_name(args)
    else:
        name = take_name_from_path(clip or args.take or os.path.abspath(args.import_sam3d))
    out = blend_output(args, name)
    save_take_path = check_output("--save-take", Path(args.save_take)) if args.save_take else None
    exports = []
    for path in args.export:
        export_format(path)
        exports.append(check_output("--export", Path(path)))
    if args.retarget_to:
        target_file = blend_part(args.retarget_to)
        if not Path(target_file).is_file():
            raise UsageError(f"--retarget-to {args.retarget_to}: {target_file} is not a file")
    if not live_source:
        camera.check_arguments(args)
    elif args.camera_path or args.camera_motion != "auto":
        raise UsageError("--camera-motion and --camera-path are for recorded clips, not live capture")
    prefs = get_preferences()
    if args.download_models and not args.take:
        inputs.download_models(args, prefs)
    mesh = inputs.mesh_choice(args, prefs) if args.mesh else None
    if args.take:
        take = load_take(args.take)
        say(f"capture: loaded take {args.take} ({inputs.people(take.num_tracks)}, {take.num_frames} frames)")
    elif args.import_sam3d:
        if clip and not Path(clip).exists() and "%" not in Path(clip).name:
            raise UsageError(f"{clip}: no such file or folder")
        take = inputs.import_sam3d(args, clip)
    elif live_source:
        take = live.record(args, inputs.clip_settings(args, "", prefs), say)
    else:
        if not Path(clip).exists() and "%" not in Path(clip).name:
            raise UsageError(f"{clip}: no such file or folder")
        take = inputs.capture_clip(args, clip, prefs)
    saved = Path(os.path.abspath(args.take)) if args.take else None
    try:
        if save_take_path is not None:
            saved = save_take(take, save_take_path)
            say(f"wrote {save_take_path}")
        if not live_source and not args.image and camera.add_camera_path(args, take, camera_clip(args, clip, take)):
            if save_take_path is not None:
                save_take(take, save_take_path)  # this run's own take, now with its camera path
                say(f"wrote {save_take_path} (with the camera path)")
            elif args.take:
                say("camera: the path is not saved in the take you gave: add --save-take OUT.npz to keep it, so a "
                    "rebuild does not solve the camera again")
        _build_and_write(args, take, name, clip, out, exports, mesh)
    except (Exception, KeyboardInterrupt) as error:
        # The take is the work: whatever failed after it exists, it is kept and named with how to rebuild.
        interrupted = was_interrupted(error)
        kept = kept_message(keep_take(take, name, saved), out, interrupted=interrupted)
        if interrupted:
            raise Interrupted(f"{kept}") from None
        if isinstance(error, (UsageError, *INPUT_ERRORS)):
            raise UsageError(f"{error}; {kept}") from None
        if isinstance(error, OSError):
            raise OutputError(f"could not write the results ({error.strerror or error}); {kept}") from None
        if isinstance(error, RuntimeError) and not isinstance(error, CaptureError):
            raise OutputError(f"{blender_message(error, out)}; {kept}") from None
        raise OutputError(f"{error}; {kept}") from None
    return 0


def _build_and_write(args, take, name: str, clip: str | None, out: Path, exports: list[Path],
                     mesh: dict | None) -> None:
    """Everything after the take is saved: solve, build the scene, retarget, export, save the .blend. Each file
    is announced as it is written, so a later failure leaves the earlier files named."""
    solution = solve_take(take, solve_options(args))
    for track_id, why in solution.skipped:
        say(f"capture: warning: {naming.armature_name(name, track_id)} left out: {why}")
    _clear_default_scene()
    # Imported results without a clip, and live recordings, have no video to show: no warning for that.
    background = (None if (args.import_sam3d and not clip) or live.is_live(args)
                  else background_clip(args, clip, take))
    if mesh is not None:
        # The .blend is saved last: put the point caches where a saved file's caches go, beside it.
        mesh["cache_dir"] = str(out.parent / f"{out.stem}_instanthmr_cache")
    take_file = os.path.abspath(args.take or args.save_take) if (args.take or args.save_take) else None
    built = workflow.build_solution(bpy.context, take, solution, name, background=background, mesh=mesh,
                                    take_file=take_file)
    if built.mesh_error:
        raise MeshError(built.mesh_error)
    _print_quality(built)
    if args.retarget_to:
        retarget(args, built.rigs)
    for path in exports:
        say(f"capture: exporting {path}")
        for written in export(args, built.rigs, path):
            say(f"wrote {written}")
    save_blend(out)
    say(f"capture: built a capture rig for {inputs.people(len(built.rigs))}"
           + (f" and {len(built.meshes)} body meshes" if built.meshes else ""))
    say(f"wrote {out}")


def _print_quality(built) -> None:
    """The solve's quality report: one line per person (jitter, foot slide, repairs, reprojection, bones)."""
    for line in built.quality_lines:
        say(f"quality: {line}")


def _clear_default_scene() -> None:
    # A headless Blender starts with the default cube, light and camera: the capture file should hold the capture.
    if bpy.data.filepath:
        return
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


def background_clip(args, clip: str | None, take) -> str | None:
    """The clip shown behind the camera: the one given, else the take's own (found where it was recorded,
    relative to the take, or next to it); None, with a warning, when it cannot be found."""
    if args.no_background:
        return None
    if clip and not args.take:
        return os.path.abspath(clip)
    if clip:
        if Path(clip).exists() or "%" in Path(clip).name:
            return os.path.abspath(clip)
        say(f"capture: warning: the clip {clip} does not exist: the camera has no background")
        return None
    found = locate_source(take.source, args.take)
    if found is None:
        where = f"the take's clip {take.source}" if take.source else "the take names no clip and"
        say(f"capture: warning: {where} was not found (nor next to the take): the camera has no "
            "background; give the clip too (capture.py CLIP --take TAKE.npz) to show it")
    return found


def camera_clip(args, clip: str | None, take) -> str | None:
    """The video the camera's motion is measured on: the clip given, else the take's own, where it is found."""
    if clip:
        return clip
    return locate_source(take.source, args.take) if args.take else None


def keep_take(take, name: str, saved: Path | None) -> Path | None:
    """The saved take after a failure: the one already written, else the take saved now in the extension's
    user folder (where the panel keeps takes); None when even that fails."""
    if saved is not None:
        return saved
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose the take
    try:
        return save_take(take, default_take_path(name))
    except Exception:
        return None
    finally:
        signal.signal(signal.SIGINT, previous)


def kept_message(kept: Path | None, out: Path, *, interrupted: bool = False) -> str:
    if kept is None:
        return "the capture could not be kept (no writable place for its take)"
    when = "" if interrupted else "once that is fixed, "
    return (f"the capture is kept in the take {kept}: {when}rebuild it without running the models with "
            f"capture.py --take {kept} --out {out}")


def retarget(args, rigs) -> None:
    from ..retarget import append_target, retarget_capture

    if args.retarget_person is None:
        source = rigs[0]
    else:
        source = next((rig for rig in rigs if rig.get(naming.PROP_TRACK_ID) == args.retarget_person), None)
        if source is None:
            ids = ", ".join(str(rig.get(naming.PROP_TRACK_ID)) for rig in rigs)
            raise UsageError(f"--retarget-person {args.retarget_person}: no such person (tracked: {ids})")
    target = append_target(args.retarget_to, bpy.context)
    result = retarget_capture(bpy.context, source, target, root_motion=args.retarget_root_motion,
                              scale=args.retarget_scale, bake_ik=args.retarget_bake_ik)
    say(f"capture: retargeted {source.name} onto {target.name} ({len(result.frames)} frames, "
        f"action {result.action.name})")


def main(argv: list[str]) -> int:
    parser = build_parser()
    previous_sigint = watch_sigint()
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except Interrupted as exc:
        _interrupted(str(exc))
        return INTERRUPTED
    except KeyboardInterrupt:
        _interrupted("nothing was written")
        return INTERRUPTED
    except (UsageError, *INPUT_ERRORS) as exc:
        _error(str(exc))
        return 2
    except (OutputError, CaptureError, SolveError, ValueError, OSError, Sam3DWorkerError) as exc:
        _error(str(exc))
        return 1
    finally:
        unwatch_sigint(previous_sigint)


def _interrupted(message: str) -> None:
    print(f"capture: interrupted (Ctrl-C): {' '.join(message.split())}", file=sys.stderr, flush=True)


def _error(message: str) -> None:
    print(f"capture: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
