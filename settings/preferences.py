"""The add-on preferences read: which InstantHMR model, where the model files are, SAM 3D Body's environment,
the body mesh's Python. The preferences' UI (the AddonPreferences class and its drawing) lives in `ui/`."""

import functools
from pathlib import Path

import bpy

# The extension's own package (`bl_ext.<repo>.instanthmr`): preferences are keyed by it, never by a literal.
ADDON_PACKAGE = __package__.rpartition(".")[0]

# The detector the capture downloads (the ONNX backend's default variant).
DETECTOR_MODEL = "rfdetr-nano"


def get_preferences(context=None):
    context = context or bpy.context
    return context.preferences.addons[ADDON_PACKAGE].preferences


def registry():
    from ..instanthmr_blender.models.registry import registry

    return registry()


def chosen_hmr_model(prefs, size: str | None = None, fit: int | None = None):
    """The registry entry of a size and fit level, each defaulting to the preferences' choice (the first release
    has fit 0 only)."""
    size = size or prefs.hmr_size
    if fit is None:
        fit = 0 if size == "first_release" else int(prefs.hmr_fit)
    return registry().choose(size, fit)


def capture_model_names(prefs) -> list[str]:
    """The downloadable models a capture with these preferences needs (InstantHMR as chosen, the detector)."""
    return [chosen_hmr_model(prefs).name, DETECTOR_MODEL]


def model_folder(prefs, *, create: bool = False) -> Path:
    """The folder models are looked for in and downloaded to."""
    if prefs.model_folder:
        folder = Path(bpy.path.abspath(prefs.model_folder))
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="models", create=create))


def hmr_model_path(prefs) -> Path:
    """The InstantHMR file a capture loads: its own preference when set, else the chosen model in the folder."""
    if prefs.instanthmr_path:
        return Path(bpy.path.abspath(prefs.instanthmr_path))
    return model_folder(prefs) / chosen_hmr_model(prefs).file


def model_path(prefs, name: str) -> Path:
    """Where model `name` of the engine's registry is expected: "instanthmr" means the chosen InstantHMR model
    (`hmr_model_path`); any other name, its file name in the model folder."""
    from ..instanthmr_blender.models.files import KNOWN_MODELS

    if name == "instanthmr":
        return hmr_model_path(prefs)
    return model_folder(prefs) / KNOWN_MODELS[name].filename


def detector_model_path(prefs, variant: str) -> Path:
    """The RF-DETR ONNX file: the preference when set, else `rfdetr-<variant>.onnx` in the model folder."""
    from ..instanthmr_blender.models.files import detector_spec

    if prefs.detector_path:
        return Path(bpy.path.abspath(prefs.detector_path))
    return model_folder(prefs) / detector_spec(variant).filename


def sam3d_settings(prefs):
    """The engine's SAM 3D Body settings from the preferences (not checked)."""
    from ..instanthmr_blender.pose.sam3d import Sam3DSettings

    def path(value: str) -> str:
        return str(Path(bpy.path.abspath(value))) if value else ""

    return Sam3DSettings(python=path(prefs.sam3d_python), checkpoint=path(prefs.sam3d_checkpoint),
                         code=path(prefs.sam3d_code), backbone=path(prefs.sam3d_backbone))


def sam3d_problem(prefs) -> str:
    """What SAM 3D Body still needs before it can run ("" when its files are in place); file checks only."""
    from ..instanthmr_blender.pose.sam3d import Sam3DError

    try:
        sam3d_settings(prefs).check()
    except Sam3DError as exc:
        return str(exc)
    return ""


def mesh_available(prefs) -> bool:
    """Whether the body mesh can run: PyTorch in Blender's Python, or a separate Python set in the preferences."""
    return bool(prefs.mesh_python) or _torch_installed()


@functools.cache
def _torch_installed() -> bool:
    # Looked up once (panels redraw often) and without importing torch: the default path never loads it.
    import importlib.util

    return importlib.util.find_spec("torch") is not None
