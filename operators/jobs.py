"""The one registry of the add-on's background jobs: the offline capture and the live session. At most one of
them runs at a time; each operator module asks here, never the other module."""

_capture_job = None  # capture.CaptureJob while one exists (running, or finished and not yet pumped)
_live_session = None  # live.LiveSession from Start until live capture has stopped


def capture_job():
    return _capture_job


def set_capture_job(job) -> None:
    global _capture_job
    _capture_job = job


def capture_running() -> bool:
    return _capture_job is not None and _capture_job.running


def live_session():
    return _live_session


def set_live_session(session) -> None:
    global _live_session
    _live_session = session


def live_active() -> bool:
    """True from Start until live capture has stopped (starting, running or finishing a recording)."""
    return _live_session is not None
