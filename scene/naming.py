"""Names and custom-property keys the capture writers use (one place, so tools and retargeting agree)."""

COLLECTION_PREFIX = "InstantHMR"
CAMERA_SUFFIX = "camera"
ACTION_SUFFIX = "action"

# Custom properties on each capture-rig bone: the MHR70 keypoint at its head / tail (-1 where none).
PROP_MHR70_HEAD = "mhr70_head"
PROP_MHR70_TAIL = "mhr70_tail"
# Custom properties on the objects of a capture, so later tools find them without relying on names.
PROP_TAKE = "instanthmr_take"
PROP_TRACK_ID = "instanthmr_track_id"
PROP_ROLE = "instanthmr_role"  # "capture_rig" | "capture_camera" | "body_mesh"
# On a moving capture camera: the scene frames whose pose the camera solve interpolated.
PROP_INTERPOLATED = "instanthmr_interpolated_frames"
# On the capture collection: the take file it was built from (Rebuild from Take, the body mesh).
PROP_TAKE_FILE = "instanthmr_take_file"
# On each capture rig: the InstantHMR file that made the take (scene/provenance.py).
PROP_MODEL_FILE = "instanthmr_model_file"
PROP_MODEL = "instanthmr_model"  # the registry name, "" for a file the registry does not know
PROP_MODEL_SHA256 = "instanthmr_model_sha256"
PROP_MODEL_HASH_CHECK = "instanthmr_model_hash_check"
PROP_MODEL_LICENCE = "instanthmr_model_licence"
PROP_MODEL_LICENCE_URL = "instanthmr_model_licence_url"
PROP_MODEL_SOURCE = "instanthmr_model_source"


def collection_name(take_name: str) -> str:
    return f"{COLLECTION_PREFIX} {take_name}"


def armature_name(take_name: str, track_id: int) -> str:
    return f"{take_name}.person{track_id:02d}"


def camera_name(take_name: str) -> str:
    return f"{take_name}.{CAMERA_SUFFIX}"


def action_name(take_name: str, track_id: int) -> str:
    return f"{armature_name(take_name, track_id)}.{ACTION_SUFFIX}"
