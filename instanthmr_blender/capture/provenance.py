"""Which weights made a capture: the InstantHMR file, its SHA-256, its registry entry and licence, the graph
layout and camera. Written into the take (`Take.model_info`) and, from there, onto every capture rig, so a studio
can prove which weights made an animation.

The registry entry is trusted only as far as the hash allows: a file whose SHA-256 is the registry's pinned one is
that file; a file known only by its name is reported as such, with what its hash was checked against.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.files import ModelDownloadError, read_recorded_hashes, sha256_of
from ..models.registry import HMRModel, registry
from ..pose.hmr_graph import CaptureCamera, HMRGraph

UNKNOWN_LICENCE = "unknown: not a published InstantHMR file this add-on knows; check its licence yourself"


def _hash_check(path: Path, sha256: str) -> tuple[HMRModel | None, str]:
    """(the registry entry this file is, or None; how that was decided)."""
    known = registry()
    pinned = known.by_sha256(sha256)
    if pinned is not None:
        return pinned, "SHA-256 matches the registry's pinned hash"
    entry = known.by_file(path.name)
    if entry is None:
        return None, "not a registry file: no registry name or hash matches"
    if entry.sha256:
        return None, f"named like {entry.name}, but its SHA-256 is not that file's pinned hash"
    try:
        record = read_recorded_hashes(path.parent).get(entry.name)
    except ModelDownloadError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("sha256"), str):
        if record["sha256"].lower() == sha256:
            return entry, "identified by name; SHA-256 matches the one recorded on its first download"
        return None, f"named like {entry.name}, but its SHA-256 differs from the one recorded on its first download"
    return entry, "identified by name only: no published hash, none recorded yet"


def model_provenance(model_path: str | os.PathLike, graph: HMRGraph, camera: CaptureCamera) -> dict:
    """Everything a take records about the InstantHMR file that made it (text and numbers only, JSON-ready)."""
    path = Path(model_path)
    sha256 = sha256_of(path)
    entry, check = _hash_check(path, sha256)
    info = {
        "file": path.name,
        "sha256": sha256,
        "hash_check": check,
        "model": entry.name if entry else "",
        "label": entry.label if entry else "",
        "release": entry.release if entry else "",
        "backbone": entry.backbone if entry else "",
        "fit": entry.fit if entry else -1,
        "source": entry.source if entry else "",
        "licence": entry.licence.text if entry else UNKNOWN_LICENCE,
        "licence_url": entry.licence.url if entry else "",
        "graph": graph.summary(),
        "metadata": dict(graph.metadata),
        "focal_source": camera.focal_source,
    }
    return info
