"""Bone maps as data: which capture-rig bone drives which target bone, the presets shipped as JSON, auto-detection
and user maps saved to / loaded from a path."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
# How a target bone follows its source bone:
# - "direction": the bone is turned so its head -> tail direction matches the source bone's, with the source's
#   twist (anatomical bones: limbs, neck, head, fingers, spine segments);
# - "rotation": the bone copies the source bone's change of orientation from rest (control bones whose
#   direction means nothing anatomically, such as Rigify's horizontal torso / chest widgets).
MODES = ("direction", "rotation")
# Mixamo exports prefix every bone (`mixamorig:Hips`, `mixamorig1:Hips`); a map names the part after this.
NAMESPACE_SEPARATOR = ":"


class BoneMapError(ValueError):
    """A bone map file that cannot be used; the message names the file and what to fix."""


@dataclass
class BonePair:
    """source: a capture-rig bone name; target: a bone of the target armature (exact, or after a `prefix:`)."""

    source: str
    target: str
    mode: str = "direction"


@dataclass
class BoneMap:
    """An ordered list of source -> target pairs; root: the target bone that carries the root motion."""

    name: str
    pairs: list[BonePair] = field(default_factory=list)
    root: str = ""
    label: str = ""
    description: str = ""

    def to_json(self) -> dict:
        return {
            "name": self.name, "label": self.label, "description": self.description, "root": self.root,
            "bones": [asdict(pair) for pair in self.pairs],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict, origin: str = "bone map") -> BoneMap:
        if not isinstance(data, dict) or not isinstance(data.get("bones"), list):
            raise BoneMapError(f"{origin} is not a bone map: expected a JSON object with a 'bones' list")
        pairs = []
        for index, entry in enumerate(data["bones"]):
            try:
                pair = BonePair(str(entry["source"]), str(entry["target"]), str(entry.get("mode", "direction")))
            except (KeyError, TypeError) as error:
                raise BoneMapError(f"{origin}: entry {index} needs 'source' and 'target' bone names") from error
            if pair.mode not in MODES:
                raise BoneMapError(f"{origin}: entry {index} ({pair.source} -> {pair.target}) has mode "
                                   f"{pair.mode!r}; use one of {', '.join(MODES)}")
            pairs.append(pair)
        return cls(name=str(data.get("name", "custom")), pairs=pairs, root=str(data.get("root", "")),
                   label=str(data.get("label", "")), description=str(data.get("description", "")))


def resolve_name(wanted: str, names: Iterable[str]) -> str | None:
    """The armature bone `wanted` refers to: the exact name, else the one named `<prefix>:wanted`."""
    names = list(names)
    if wanted in names:
        return wanted
    for name in names:
        if name.rpartition(NAMESPACE_SEPARATOR)[2] == wanted and NAMESPACE_SEPARATOR in name:
            return name
    return None


def load_presets() -> dict[str, BoneMap]:
    """The shipped presets by name, in file-name order."""
    presets = {}
    for path in sorted(PRESETS_DIR.glob("*.json")):
        bone_map = load_map(path)
        presets[bone_map.name] = bone_map
    return presets


def load_map(path: str | Path) -> BoneMap:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise BoneMapError(f"bone map `{path}` does not exist: check the path") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BoneMapError(f"bone map `{path}` is not readable JSON ({error}): pick a file saved by "
                           "Save Map") from error
    return BoneMap.from_json(data, origin=f"bone map `{path}`")


def save_map(bone_map: BoneMap, path: str | Path) -> Path:
    """Write the map as JSON (the preset format); creates the folder. Returns the path written."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bone_map.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def matched_targets(bone_map: BoneMap, target_names: Iterable[str]) -> int:
    """How many distinct target bones of the map exist in an armature with these bone names."""
    names = list(target_names)
    return len({pair.target for pair in bone_map.pairs if resolve_name(pair.target, names) is not None})


def auto_detect(target_names: Iterable[str], presets: dict[str, BoneMap] | None = None) -> BoneMap | None:
    """The preset matching most bones of the armature (ties: the one whose bones are matched in the largest
    share), or None when no preset matches even a quarter of its bones."""
    names = list(target_names)
    presets = load_presets() if presets is None else presets
    best, best_key = None, (0, 0.0)
    for bone_map in presets.values():
        wanted = len({pair.target for pair in bone_map.pairs})
        count = matched_targets(bone_map, names)
        key = (count, count / max(wanted, 1))
        if count >= 0.25 * wanted and key > best_key:
            best, best_key = bone_map, key
    return best
