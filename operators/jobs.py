"""The one registry of the add-on's background jobs: the offline capture (`CAPTURE`: a capture.CaptureJob while it
runs or waits to be pumped) and live capture (`LIVE`: a live.LiveSession from Start until it has stopped). At most
one of them runs at a time; each operator module asks here, never the other module."""

CAPTURE = "capture"
LIVE = "live"

_jobs: dict[str, object] = {}


def get(kind: str):
    return _jobs.get(kind)


def put(kind: str, job) -> None:
    """Register `job` as the current one of its kind (None: there is none any more)."""
    if job is None:
        _jobs.pop(kind, None)
    else:
        _jobs[kind] = job


def capture_running() -> bool:
    job = _jobs.get(CAPTURE)
    return job is not None and job.running


def live_active() -> bool:
    """True from Start until live capture has stopped (starting, running or finishing a recording)."""
    return LIVE in _jobs
