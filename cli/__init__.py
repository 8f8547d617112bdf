"""The command line behind capture.py: options (`options.py`), the run (`run.py`), where its take comes from
(`inputs.py`, and `live.py` for cameras and streams), and Blender's own output and Ctrl-C (`blender_io.py`).
It builds its settings through `settings/`, as the panel does, and never imports `ui/`."""

from .run import main

__all__ = ["main"]
