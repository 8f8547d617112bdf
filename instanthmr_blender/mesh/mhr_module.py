"""The MHR module file (`mhr_model.pt`): given, or extracted from the MHR release archive (downloaded when
allowed), and the level of detail it gives."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ..models.files import KNOWN_MODELS, download
from .errors import MeshError

MODULE_FILENAME = "mhr_model.pt"
ARCHIVE_MEMBER = "assets/mhr_model.pt"  # inside the MHR release archive assets.zip
MESH_FOLDER = "mhr"  # beside the other model files: <model folder>/mhr/mhr_model.pt
RELEASE_LOD = 1  # the release module is MHR's LOD1: 18439 vertices, 36874 triangles
RELEASE_NUM_VERTICES = 18439


def check_lod(lod: int | None, num_vertices: int) -> None:
    """The level of detail is the module's own: MHR's release module is LOD1 (18439 vertices) and takes no
    LOD argument. `lod` None accepts whatever the module gives; 1 is checked against the vertex count."""
    if lod is None:
        return
    if int(lod) != RELEASE_LOD:
        raise MeshError(
            f"body mesh level of detail {lod} is not available: MHR's `{MODULE_FILENAME}` gives LOD{RELEASE_LOD} "
            f"only; for another level, export a module at that level with MHR's "
            f"tools/torchscript/make_torchscript_model.py (-l {lod}) and point the add-on at it, leaving LOD unset"
        )
    if num_vertices != RELEASE_NUM_VERTICES:
        raise MeshError(
            f"LOD{RELEASE_LOD} asked for, but the module gives {num_vertices} vertices (LOD1 has "
            f"{RELEASE_NUM_VERTICES}): leave LOD unset to use the module's own level"
        )


def extract_mhr_module(zip_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Extract `assets/mhr_model.pt` from the MHR release archive into `dest_dir/mhr_model.pt`; returns it.

    Atomic: written to a temporary file in `dest_dir`, renamed into place once complete.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise MeshError(f"MHR archive `{zip_path}` does not exist: download it again") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise MeshError(
            f"`{zip_path.name}` is not a readable zip archive ({error}): delete it and download it again"
        ) from None
    with archive:
        names = archive.namelist()
        member = ARCHIVE_MEMBER if ARCHIVE_MEMBER in names else next(
            (n for n in names if n.endswith("/" + MODULE_FILENAME) or n == MODULE_FILENAME), None
        )
        if member is None:
            raise MeshError(
                f"`{zip_path.name}` has no `{ARCHIVE_MEMBER}`: is it the MHR release archive (assets.zip of "
                "github.com/facebookresearch/MHR, v1.0.0 or later)?"
            )
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MeshError(
                f"cannot create `{dest_dir}` ({error.strerror or error}): choose a writable folder"
            ) from None
        handle, temporary = tempfile.mkstemp(prefix=f".{MODULE_FILENAME}.", suffix=".tmp", dir=dest_dir)
        try:
            with os.fdopen(handle, "wb") as out, archive.open(member) as source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            destination = dest_dir / MODULE_FILENAME
            os.replace(temporary, destination)
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(error, OSError | zipfile.BadZipFile):
                raise MeshError(
                    f"extracting `{member}` from `{zip_path.name}` failed ({error}): check the disk space, or "
                    "delete the archive and download it again"
                ) from None
            raise
    return destination


def ensure_mhr_module(
    model_dir: str | os.PathLike,
    *,
    allow_network: bool,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """`<model_dir>/mhr/mhr_model.pt`, extracted from `<model_dir>/mhr-assets.zip` when missing, the archive
    downloaded first (models.files.download, only when `allow_network`) when that is missing too."""
    model_dir = Path(model_dir)
    module = model_dir / MESH_FOLDER / MODULE_FILENAME
    if module.is_file() and module.stat().st_size > 0:
        return module
    spec = KNOWN_MODELS["mhr-assets"]
    archive = model_dir / spec.filename
    if not (archive.is_file() and archive.stat().st_size > 0):
        archive = download(spec, model_dir, allow_network=allow_network, progress=progress, cancel=cancel)
    return extract_mhr_module(archive, module.parent)
