"""Whether a result file can be written where the user asked, checked before the long work that makes it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def output_problem(path: str | os.PathLike, *, create_folder: bool = False) -> str | None:
    """Why a new file cannot be written at `path`, as the end of a sentence naming it; None when it can.

    Checked: `path` is not a folder; its folder exists (or, with create_folder, can be created) and really
    accepts a new file (one is created and removed there: permission bits alone say nothing for root or on a
    read-only mount). The message never names the probe file.
    """
    target = Path(os.path.abspath(path))
    if target.is_dir():
        return "is a folder: give a file name in it"
    folder = target.parent
    if not folder.is_dir():
        if folder.exists() or not create_folder:
            what = "is not a folder" if folder.exists() else "does not exist"
            return f"the folder {folder} {what}: create it first, or choose another place"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"the folder {folder} cannot be created ({error.strerror or error}): choose another place"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"cannot write in {folder} ({error.strerror or error}): choose a writable folder"
    return None
