"""What the command line does with Blender itself: its C-level output held back unless a step succeeds, its
errors as one line, Ctrl-C noticed wherever Blender turns it into another error, and files (the .blend, the
exports) written to a temporary name and renamed into place, so nothing is left half-written."""

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import bpy

from ..scene.export import export_capture

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class Interrupted(Exception):
    """Ctrl-C: the message says what was kept; exit status 130."""


class OutputError(Exception):
    """The work was done but writing a result failed; the message says what was kept: exit status 1."""


def say(message: str) -> None:
    print(message, flush=True)


def blender_message(error: Exception, path: Path) -> str:
    """Blender's error text as one line, without its `Error:` prefix, the temporary `file.blend@` it writes, or
    the traceback a failing Python operator (an exporter) carries: only its last line, the error itself."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if any("Traceback" in line for line in lines) else " ".join(lines)
    return re.sub(r"\S*\.blend@", str(path), text.removeprefix("Error: "))


@contextmanager
def output_held(rename: tuple[str, str] | None = None):
    """Hold what Blender prints on stdout/stderr (C-level, e.g. a failed save's `Error: ... file.blend@` or an
    exporter's traceback) and show it only when the block succeeds: a failure is reported as one line.
    rename: (temporary folder, final folder), so the lines shown name the files where they end up."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not failed:
                held.seek(0)
                text = held.read().decode(errors="replace")
                sys.stdout.write(text.replace(*rename) if rename else text)
                sys.stdout.flush()


def was_interrupted(error: BaseException) -> bool:
    # Ctrl-C inside a Python operator (an exporter) reaches us as the operator's RuntimeError; inside Blender's
    # own argument parsing (seen on 5.2) as an unrelated-looking error: the SIGINT flag decides then.
    if isinstance(error, KeyboardInterrupt) or _sigint_received.is_set():
        return True
    return isinstance(error, RuntimeError) and "KeyboardInterrupt" in str(error)


_sigint_received = threading.Event()


def _on_sigint(signum, frame):
    _sigint_received.set()
    raise KeyboardInterrupt


def watch_sigint():
    """Note every Ctrl-C (and raise KeyboardInterrupt as Python does) while the command runs; returns the handler
    to restore. A SIGINT that is ignored (a background job) stays ignored."""
    _sigint_received.clear()
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
    return previous


def unwatch_sigint(previous) -> None:
    if signal.getsignal(signal.SIGINT) is _on_sigint:
        signal.signal(signal.SIGINT, previous)


def save_blend(out: Path) -> None:
    try:
        with output_held():
            bpy.ops.wm.save_as_mainfile(filepath=str(out), check_existing=False)
    except RuntimeError as error:
        if was_interrupted(error):
            raise KeyboardInterrupt from None
        raise OutputError(f"could not write {out} ({blender_message(error, out)})") from None


def export(args, rigs, path: Path) -> list[Path]:
    """One --export, written into a temporary folder beside it and renamed into place once complete, so an
    interrupted or failed export leaves no half-written file (glTF's .bin keeps the final name)."""
    # Named before it exists, so a Ctrl-C at any point (even inside the mkdir) still has it removed below.
    staging = path.parent / f".{path.name}.instanthmr-export-{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed outright
        staging.mkdir()
        with output_held(rename=(str(staging), str(path.parent))):
            made = export_capture(bpy.context, rigs, str(staging / path.name), per_person=args.export_per_person)
        written = []
        for item in sorted(staging.iterdir()):
            final = path.parent / item.name
            os.replace(item, final)
            if item.name in {m.name for m in made}:
                written.append(final)
        return written
    except RuntimeError as error:
        if was_interrupted(error):
            raise KeyboardInterrupt from None
        reason = blender_message(error, path).replace(str(staging), str(path.parent))
        raise OutputError(f"could not export {path} ({reason})") from None
    except OSError as error:
        raise OutputError(f"could not export {path} ({error.strerror or 'error'})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
