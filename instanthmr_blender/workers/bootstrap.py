"""The first thing a worker script does when it runs under another Python (the user's PyTorch or SAM 3D Body
environment): take this folder off `sys.path`, where the script put it to import this file, so no module of the
add-on can shadow a package that torch imports; then load the array protocol beside it by its path. Standard
library only."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def protocol_module():
    """`protocol.py` beside this file, as a module."""
    sys.path[:] = [entry for entry in sys.path if not (entry and Path(entry).resolve() == HERE)]
    spec = importlib.util.spec_from_file_location("instanthmr_worker_protocol", HERE / "protocol.py")
    protocol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocol)
    return protocol
