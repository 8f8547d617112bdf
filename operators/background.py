"""A job run in a daemon worker thread (captures, downloads): start, ask whether it still runs, cancel.

Subclasses implement `_run()`, writing only their own result fields; the main-thread pump reads them."""

import threading
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class BackgroundJob:
    error: str = ""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    thread_name = "InstantHMR worker"

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def cancel(self, wait: float = 0.0) -> None:
        """Ask the worker to stop; with `wait`, join it for up to that many seconds."""
        self.cancel_event.set()
        if wait and self.thread is not None:
            self.thread.join(wait)
