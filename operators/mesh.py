"""Operator: build the optional body mesh (MHR, through torch) for the capture rigs of the active take."""

from pathlib import Path

import bpy
import numpy as np

from ..instanthmr_blender.mesh import MeshError, ensure_mhr_module
from ..instanthmr_blender.models.files import ModelDownloadError
from ..instanthmr_blender.solve import CaptureSolution
from ..instanthmr_blender.take import TakeError, load_take
from ..scene import build, naming
from ..scene import mesh as scene_mesh
from ..settings.preferences import get_preferences, model_folder

# The body mesh's preferences, by name (read with getattr: a preference missing in an older file reads as unset).
PREF_MODULE_PATH = "mhr_model_path"
PREF_MESH_PYTHON = "mesh_python"


def active_capture_collection(context) -> bpy.types.Collection | None:
    """The capture collection of the active object, else the active collection if it is one."""
    obj = context.active_object
    if obj is not None:
        for collection in obj.users_collection:
            if collection.get(naming.PROP_TAKE):
                return collection
    layer = context.view_layer.active_layer_collection if context.view_layer else None
    if layer is not None and layer.collection.get(naming.PROP_TAKE):
        return layer.collection
    return None


def _objects_with_role(collection, role: str) -> list[bpy.types.Object]:
    return [obj for obj in collection.all_objects if obj.get(naming.PROP_ROLE) == role]


class INSTANTHMR_OT_build_mesh(bpy.types.Operator):
    """Build an animated MHR body mesh for every person of the active capture (needs PyTorch, in Blender's
    Python or in a separate Python set in the preferences)"""

    bl_idname = "instanthmr.build_mesh"
    bl_label = "Build Body Mesh"
    bl_options = {"REGISTER", "UNDO"}

    take_path: bpy.props.StringProperty(
        name="Take file",
        description="The capture's take (.npz). Empty: the take file recorded on the capture collection",
        subtype="FILE_PATH",
        default="",
    )
    module_path: bpy.props.StringProperty(
        name="MHR module",
        description="MHR's mhr_model.pt. Empty: the preference, else the model folder (extracted from the MHR "
        "release archive, downloaded when online access is allowed)",
        subtype="FILE_PATH",
        default="",
    )
    python: bpy.props.StringProperty(
        name="Python for the body mesh",
        description="A Python executable with torch installed. Empty: the preference, else Blender's own Python",
        subtype="FILE_PATH",
        default="",
    )

    @classmethod
    def poll(cls, context):
        collection = active_capture_collection(context)
        return collection is not None and bool(_objects_with_role(collection, "capture_rig"))

    def execute(self, context):
        collection = active_capture_collection(context)
        if collection is None:
            self.report({"ERROR"}, "Select a capture (an InstantHMR collection or one of its rigs) first")
            return {"CANCELLED"}
        cameras = _objects_with_role(collection, "capture_camera")
        rigs = _objects_with_role(collection, "capture_rig")
        if not cameras or not rigs:
            self.report({"ERROR"}, f"`{collection.name}` has no capture camera or rig: rebuild the capture")
            return {"CANCELLED"}
        take_path = self.take_path or collection.get(scene_mesh.PROP_TAKE_FILE, "")
        if not take_path:
            self.report({"ERROR"}, f"`{collection.name}` records no take file: choose the take (.npz) to use")
            return {"CANCELLED"}
        prefs = get_preferences(context)
        window_manager = context.window_manager
        started = []

        def progress(done, total):
            if not started:
                window_manager.progress_begin(0, max(total, 1))
                started.append(True)
            window_manager.progress_update(done)

        try:
            take = load_take(bpy.path.abspath(take_path))
            module_path = self.module_path or getattr(prefs, PREF_MODULE_PATH, "")
            if module_path:
                module_path = Path(bpy.path.abspath(module_path))
            else:
                # No download on the main thread: the preferences' Download MHR Module fetches the archive.
                module_path = ensure_mhr_module(model_folder(prefs, create=True), allow_network=False)
            python = self.python or getattr(prefs, PREF_MESH_PYTHON, "")
            solution = CaptureSolution(camera_matrix_world=np.array(cameras[0].matrix_world), persons=[])
            objects = scene_mesh.build_body_meshes(
                context, take, solution, build.CaptureObjects(collection, cameras[0], rigs),
                module_path=module_path, python=bpy.path.abspath(python) if python else None, progress=progress,
            )  # fmt: skip
        except (MeshError, TakeError, ModelDownloadError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        finally:
            if started:
                window_manager.progress_end()
        self.report({"INFO"}, f"Built {len(objects)} body mesh(es) in `{collection.name}`")
        return {"FINISHED"}


classes = (INSTANTHMR_OT_build_mesh,)
register, unregister = bpy.utils.register_classes_factory(classes)
