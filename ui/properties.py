"""Property groups: the capture and live settings stored on the scene, the tracked people of the last take, and
the progress of a running capture or live session (on the window manager: runtime state, never saved)."""

import bpy

SMOOTHING_ITEMS = [
    ("off", "Off", "Keep the raw per-frame solve (every jitter stays)"),
    ("light", "Light", "Remove high-frequency jitter, keep fast motion crisp"),
    ("medium", "Medium", "A balance for most clips"),
    ("strong", "Strong", "Smooth heavily: slow motion, noisy or small people"),
]
SMOOTHING_METHOD_ITEMS = [
    ("zero_lag", "Zero lag", "Offline filter over past and future frames: no lag (best for recorded clips)"),
    ("one_euro", "One-Euro", "Causal One-Euro filter, as a live capture would see it (about one frame of lag)"),
]
DETECTOR_BACKEND_ITEMS = [
    ("onnx", "RF-DETR ONNX", "RF-DETR exported to ONNX, run by the bundled ONNX Runtime (no PyTorch needed)"),
    ("torch", "RF-DETR PyTorch", "The rfdetr Python package (needs PyTorch in Blender's Python)"),
]
DETECTOR_VARIANT_ITEMS = [
    ("nano", "Nano", "Fastest (384 px)"),
    ("small", "Small", "512 px"),
    ("medium", "Medium", "576 px"),
    ("large", "Large", "Most accurate, slowest (704 px)"),
]

LENS_ITEMS = [
    ("model", "From the model", "The camera the model assumes: sqrt(W^2 + H^2) px for the first release, 1.05 times "
     "that for focal-aware models"),
    ("mm", "Lens in mm", "The lens's focal length in mm and the sensor width along the image's longer side (a phone's "
     "'26 mm equivalent' is 26 with 36)"),
    ("px", "Pixels", "The focal length in pixels of the video's frames (from a calibration)"),
]
CAMERA_MOTION_ITEMS = [
    ("auto", "Automatic", "Measure the background's motion (people masked out) and solve the camera's path from the "
     "video when it moves; a still camera stays as it is"),
    ("static", "Still", "The camera stands still (a tripod): no camera solve"),
    ("solve", "Moving", "Always solve the camera's path from the video's background (handheld, panning, walking)"),
]


def _is_camera(_settings, obj) -> bool:
    return obj.type == "CAMERA"


DEVICE_LABELS = {"cpu": "CPU", "cuda": "CUDA (NVIDIA)", "coreml": "Core ML (Apple)",
                 "directml": "DirectML (Windows GPU)"}


def device_items(auto_label: str):
    """An enum items callback listing the devices ONNX Runtime has here (only those are offered); `auto_label`
    names the automatic choice where the enum is shown."""

    def items(self, context):
        from ..instanthmr_blender.models.runtime import available_devices

        labels = {**DEVICE_LABELS, "auto": auto_label}
        found = [(name, labels.get(name, name), f"Run the models with {labels.get(name, name)}")
                 for name in available_devices()]
        items.cache = found  # Blender needs the strings kept alive while the enum is shown
        return found

    return items


class INSTANTHMR_PG_person(bpy.types.PropertyGroup):
    """One tracked person of the last take."""

    track_id: bpy.props.IntProperty(name="Track")
    first_frame: bpy.props.IntProperty(name="First frame")
    last_frame: bpy.props.IntProperty(name="Last frame")
    frame_count: bpy.props.IntProperty(name="Frames")
    keep: bpy.props.BoolProperty(name="Keep", default=True,
                                 description="Build a rig for this person (applied by Rebuild from Take)")
    quality: bpy.props.StringProperty(name="Quality", description="The solve's quality report for this person")


class INSTANTHMR_PG_settings(bpy.types.PropertyGroup):
    """Capture settings of a scene (saved with the .blend)."""

    clip: bpy.props.StringProperty(
        name="Clip", subtype="FILE_PATH",
        description="Video file, image sequence (a folder or a printf pattern like frame_%04d.png) or one image")
    frame_start: bpy.props.IntProperty(name="Start", default=0, min=0,
                                       description="First source frame to capture (0 = the first frame)")
    frame_end: bpy.props.IntProperty(name="End", default=0, min=0,
                                     description="Source frame to stop before (0 = the end of the clip)")
    frame_step: bpy.props.IntProperty(name="Step", default=1, min=1, max=100,
                                      description="Capture every Nth frame (keys land on the matching frames)")
    max_persons: bpy.props.IntProperty(name="Max people", default=2, min=1, max=16,
                                       description="Most people tracked in one frame (the most confident win)")
    min_track_length: bpy.props.IntProperty(
        name="Min track length", default=5, min=1, max=1000,
        description="Drop people seen in fewer frames than this (passers-by, false detections)")
    detector_backend: bpy.props.EnumProperty(name="Detector", items=DETECTOR_BACKEND_ITEMS, default="onnx")
    detector_variant: bpy.props.EnumProperty(name="Variant", items=DETECTOR_VARIANT_ITEMS, default="nano",
                                             description="RF-DETR size (PyTorch detector)")
    det_confidence: bpy.props.FloatProperty(name="Confidence", default=0.5, min=0.05, max=0.95,
                                            description="Minimum detector score for a person")
    detector_stride: bpy.props.IntProperty(
        name="Detector stride", default=1, min=1, max=30,
        description="Run the detector every Nth frame; in between, boxes follow each person's keypoints "
        "(faster; a person losing confidence forces a new detection)")
    device: bpy.props.EnumProperty(name="Device", items=device_items("Preferences default"),
                                   description="Where the models run (only devices available here are listed)")
    lens_mode: bpy.props.EnumProperty(
        name="Camera lens", items=LENS_ITEMS, default="model",
        description="A known focal length: focal-aware models take it as input, the first release's people are moved "
        "in depth to match it, and the take and the Blender camera use it")
    lens_mm: bpy.props.FloatProperty(name="Lens (mm)", default=26.0, min=1.0, max=5000.0, precision=1,
                                     description="Focal length of the lens, millimetres")
    sensor_width_mm: bpy.props.FloatProperty(
        name="Sensor width (mm)", default=36.0, min=1.0, max=200.0, precision=2,
        description="Sensor size along the image's longer side, millimetres (36 for 35 mm-equivalent lenses)")
    focal_px: bpy.props.FloatProperty(name="Focal length (px)", default=1500.0, min=10.0, max=100000.0,
                                      precision=1, description="Focal length in pixels of the video's frames")
    smoothing: bpy.props.EnumProperty(name="Smoothing", items=SMOOTHING_ITEMS, default="medium")
    smoothing_method: bpy.props.EnumProperty(name="Method", items=SMOOTHING_METHOD_ITEMS, default="zero_lag")
    clean: bpy.props.BoolProperty(
        name="Repair glitches", default=True,
        description="Before smoothing, repair what the network got wrong: left/right swaps, front/back flips, "
                    "jumps, keypoints off their 2D position (repaired frames get timeline markers)")
    foot_lock: bpy.props.BoolProperty(name="Lock planted feet", default=True,
                                      description="Hold feet in place while they touch the floor (no sliding)")
    symmetric_lengths: bpy.props.BoolProperty(name="Symmetric limbs", default=True,
                                              description="Give left and right limbs the same length")
    camera_motion: bpy.props.EnumProperty(name="Camera", items=CAMERA_MOTION_ITEMS, default="auto",
                                          description="Whether the camera moved while filming")
    camera_object: bpy.props.PointerProperty(
        name="Scene camera", type=bpy.types.Object, poll=_is_camera,
        description="An animated camera you already have (a Blender camera solve, another tracker's import): its "
        "path is the camera's, one scene frame per source frame (empty: solve it from the video)")
    camera_background: bpy.props.BoolProperty(name="Camera with video", default=True,
                                              description="Match a camera to the video and show it as background")
    build_mesh: bpy.props.BoolProperty(
        name="Body mesh", default=False,
        description="Also build an animated MHR body mesh per person (needs PyTorch: in Blender's Python or a "
        "separate Python set in the add-on preferences)")
    take_path: bpy.props.StringProperty(
        name="Take", subtype="FILE_PATH",
        description="Where the take (all per-person results of a capture) is saved; empty: beside the .blend "
        "(or the extension's user folder for an unsaved file). Rebuild from Take reads it")
    export_path: bpy.props.StringProperty(name="Export to", subtype="FILE_PATH",
                                          description="File the capture is exported to after it is built")
    export_per_person: bpy.props.BoolProperty(name="One file per person", default=False)
    people: bpy.props.CollectionProperty(type=INSTANTHMR_PG_person)
    people_index: bpy.props.IntProperty()


class INSTANTHMR_PG_progress(bpy.types.PropertyGroup):
    """A running capture's progress, updated by the main-thread pump (runtime state, not saved)."""

    running: bpy.props.BoolProperty()
    factor: bpy.props.FloatProperty(min=0.0, max=1.0)
    status: bpy.props.StringProperty()


class INSTANTHMR_PG_live(bpy.types.PropertyGroup):
    """Live capture settings of a scene (saved with the .blend)."""

    source: bpy.props.StringProperty(
        name="Source", default="0",
        description="A camera number (0 = the first camera) or a stream URL: a phone camera app's address, e.g. "
        "http://192.168.1.20:8080/video (MJPEG) or rtsp://192.168.1.20:8554/live")
    width: bpy.props.IntProperty(name="Width", default=0, min=0, max=7680,
                                 description="Requested camera width in pixels (0 = the camera's default)")
    height: bpy.props.IntProperty(name="Height", default=0, min=0, max=4320,
                                  description="Requested camera height in pixels (0 = the camera's default)")
    fps: bpy.props.FloatProperty(name="FPS", default=0.0, min=0.0, max=240.0,
                                 description="Requested camera frame rate (0 = the camera's default)")
    timeout: bpy.props.FloatProperty(name="Timeout", default=5.0, min=0.5, max=60.0, subtype="TIME_ABSOLUTE",
                                     description="Seconds to wait for the source to open and for each frame")
    follow: bpy.props.IntProperty(name="Follow person", default=-1, min=-1, max=999,
                                  description="Track number of the person the live rig follows (-1 = the most "
                                  "prominent: the largest in the picture)")
    mirror: bpy.props.BoolProperty(name="Mirror preview", default=False,
                                   description="Show the live rig mirrored, like a webcam preview (the recording is "
                                   "never mirrored)")


class INSTANTHMR_PG_live_status(bpy.types.PropertyGroup):
    """Runtime state of live capture (on the window manager: never saved)."""

    running: bpy.props.BoolProperty()
    recording: bpy.props.BoolProperty()
    status: bpy.props.StringProperty()
    last_take: bpy.props.StringProperty()


classes = (INSTANTHMR_PG_person, INSTANTHMR_PG_settings, INSTANTHMR_PG_progress, INSTANTHMR_PG_live,
           INSTANTHMR_PG_live_status)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.instanthmr = bpy.props.PointerProperty(type=INSTANTHMR_PG_settings)
    bpy.types.WindowManager.instanthmr_progress = bpy.props.PointerProperty(type=INSTANTHMR_PG_progress)
    bpy.types.WindowManager.instanthmr_download = bpy.props.PointerProperty(type=INSTANTHMR_PG_progress)
    bpy.types.Scene.instanthmr_live = bpy.props.PointerProperty(type=INSTANTHMR_PG_live)
    bpy.types.WindowManager.instanthmr_live_status = bpy.props.PointerProperty(type=INSTANTHMR_PG_live_status)


def unregister() -> None:
    del bpy.types.WindowManager.instanthmr_live_status
    del bpy.types.Scene.instanthmr_live
    del bpy.types.WindowManager.instanthmr_download
    del bpy.types.WindowManager.instanthmr_progress
    del bpy.types.Scene.instanthmr
    _unregister_classes()
