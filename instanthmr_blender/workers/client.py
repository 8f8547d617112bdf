"""The add-on's side of a worker process: start a script under another Python, exchange `worker_protocol`
messages with it, and turn every way it can fail (cannot start, dies, answers garbage, hangs) into one clear
error naming the worker, the Python and what it printed last.

Replies are read by a background thread into a queue, so a wait can time out on every platform (pipes cannot
be polled on Windows): a worker that does not answer in time is killed and reported.
"""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .protocol import read_message, write_message

#: Environment variables of Blender's Python that would break another Python (and `-E` ignores anyway).
_FOREIGN_PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")


class WorkerProcess:
    """One worker process. `describe` names it in messages ("the SAM 3D Body worker"); `error` builds the
    exception raised for process failures; `problems` maps a worker's `{"op": "error", "kind"}` to the exception
    class raised with its message (unknown kinds raise `error`)."""

    def __init__(
        self,
        python: str | os.PathLike,
        script: str | os.PathLike,
        arguments: list[str],
        *,
        describe: str,
        error: Callable[[str], Exception],
        problems: dict[str, Callable[[str], Exception]] | None = None,
    ) -> None:
        self.python = Path(python)
        self.describe = describe
        self._error = error
        self._problems = dict(problems or {})
        self._replies: queue.Queue = queue.Queue()
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_PYTHON_VARIABLES}
        self._log = tempfile.TemporaryFile()  # the worker's stderr: a file cannot fill up and block it
        try:
            self._process = subprocess.Popen(
                [str(self.python), "-E", str(script), *arguments],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
            )  # fmt: skip
        except OSError as exc:
            self._log.close()
            raise error(
                f"could not start {describe} with the Python `{self.python}` ({exc.strerror or exc}): check the path"
            ) from None
        self._reader = threading.Thread(target=self._read_replies, name="instanthmr-worker-reader", daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        stream = self._process.stdout
        while True:
            try:
                self._replies.put(read_message(stream))
            except (EOFError, OSError, ValueError) as exc:
                self._replies.put(exc)  # the end of the stream, or garbage: the waiting side reports it
                return

    def request(self, header: dict, arrays: list[np.ndarray], reply: str, timeout: float | None) -> tuple[dict, list]:
        """Send one message and wait for the reply whose op is `reply` (at most `timeout` seconds, None: forever)."""
        try:
            write_message(self._process.stdin, header, arrays)
        except (BrokenPipeError, OSError, ValueError):
            raise self._died() from None
        return self.receive(reply, timeout)

    def receive(self, expected: str, timeout: float | None) -> tuple[dict, list[np.ndarray]]:
        """The next reply, which must be `expected` (or an error message, raised as its exception)."""
        try:
            item = self._replies.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise self._error(
                f"{self.describe} under `{self.python}` did not answer within {timeout:g} s and was stopped "
                f"(its last output: {self.last_line()})"
            ) from None
        if isinstance(item, ValueError):
            raise self._error(
                f"{self.describe} under `{self.python}` answered garbage ({item}; its last output: {self.last_line()})"
            )
        if isinstance(item, BaseException):
            raise self._died()
        header, arrays = item
        if header.get("op") == "error":
            cls = self._problems.get(header.get("kind"), self._error)
            raise cls(str(header.get("message", f"{self.describe} failed without a message")))
        if header.get("op") != expected:
            raise self._error(f"{self.describe} answered {header.get('op')!r} instead of {expected!r}")
        return header, arrays

    def _died(self) -> Exception:
        try:
            status = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self._process.returncode
        return self._error(
            f"{self.describe} under `{self.python}` stopped (exit status {status}; its last output: "
            f"{self.last_line()})"
        )

    def log_tail(self, limit: int = 2000) -> str:
        """The end of what the worker wrote to stderr (and stdout, which it redirects there)."""
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return text[-limit:].strip()

    def last_line(self, limit: int = 300) -> str:
        """The worker's last non-empty line of output, quoted, for one-line messages (its whole log: log_tail)."""
        lines = [line.strip() for line in self.log_tail(8000).splitlines() if line.strip()]
        return repr(lines[-1][-limit:]) if lines else "nothing"

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit (`{"op": "close"}`), kill it if it does not within `timeout`, free the pipes."""
        process = self._process
        if process.poll() is None:
            try:
                write_message(process.stdin, {"op": "close"})
                process.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(timeout=1.0)  # the process is gone: the reader has its end of stream
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        self._log.close()
