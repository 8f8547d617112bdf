"""Which weights made a capture, on the objects that carry it: a studio can prove which InstantHMR file (and so
which licence) an animation came from, from the .blend alone."""

from . import naming

# take.model_info key -> custom property on each capture rig
MODEL_PROPERTIES = {
    "file": naming.PROP_MODEL_FILE,
    "model": naming.PROP_MODEL,
    "sha256": naming.PROP_MODEL_SHA256,
    "hash_check": naming.PROP_MODEL_HASH_CHECK,
    "licence": naming.PROP_MODEL_LICENCE,
    "licence_url": naming.PROP_MODEL_LICENCE_URL,
    "source": naming.PROP_MODEL_SOURCE,
}


def write_model_provenance(obj, model_info: dict) -> None:
    """Copy the take's model provenance onto obj as text custom properties (none for a take without it)."""
    for key, prop in MODEL_PROPERTIES.items():
        if key in model_info:
            obj[prop] = str(model_info[key])
