"""Helpers shared by the benchmark scripts: describing the machine the figures were measured on, and the error
a benchmark reports for an unusable input."""

import os
import platform
from pathlib import Path


class BenchError(RuntimeError):
    """A benchmark input is unusable; the message says which and what to do."""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_load() -> str:
    """The 1- and 5-minute load averages: on a shared machine they say how much else was running."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"
