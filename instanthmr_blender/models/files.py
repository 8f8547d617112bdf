"""The user's model folder and verified, resumable downloads of the model files into it.

The InstantHMR files come from the registry (`model_registry.json`); the detectors and the MHR assets are listed
here. Integrity: a file whose SHA-256 is known (published, or pinned in the registry) is checked against it. Where
none is known (most InstantHMR files, the MHR assets), the SHA-256 of the first completed download is recorded in
`hashes.json` beside the models ("trust on first use"), and later downloads and `ModelFolder.verify` must match it.
Network access happens only in `download`, only when the caller says it is allowed, with urllib only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .registry import HMRModel, registry

HASHES_FILE = "hashes.json"
PART_SUFFIX = ".part"
_CHUNK_BYTES = 64 * 1024  # small enough that cancel is noticed within a fraction of a second
_USER_AGENT = "InstantHMR-for-Blender"


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model file. `sha256` is the publisher's hash (None: trust on first use);
    `size_hint` is an approximate size in bytes, for display only (never used to verify)."""

    name: str
    filename: str
    url: str
    sha256: str | None
    size_hint: int | None
    licence: str
    description: str
    licence_url: str | None = None


def _hmr_spec(model: HMRModel) -> ModelSpec:
    fit = "" if model.fit == 0 else f", kinematic fit on {model.fit} crop{'s' if model.fit > 1 else ''} per person"
    return ModelSpec(
        name=model.name,
        filename=model.file,
        url=model.url,
        sha256=model.sha256,  # pinned where the registry knows it; else trust on first use
        size_hint=model.bytes,
        licence=model.licence.text,
        description=f"InstantHMR {model.release} {model.label} ({model.backbone}{fit})",
        licence_url=model.licence.url,
    )


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        *(_hmr_spec(model) for model in registry().models),
        ModelSpec(
            name="rfdetr-nano",
            filename="rfdetr-nano.onnx",
            url="https://huggingface.co/AnnotateIt/rfdetr-nano-coco-onnx/resolve/main/model.onnx",
            # Published on the model card of AnnotateIt/rfdetr-nano-coco-onnx (114,731,473 bytes).
            sha256="d5082b3a93eba673cf71763842be73fb852ab79962dfb303bbf0012ab8805059",
            size_hint=114_731_473,
            licence="Apache-2.0 (unofficial ONNX export of Roboflow RF-DETR)",
            description="RF-DETR nano person detector, 384x384 input, batch 1",
        ),
        ModelSpec(
            name="rfdetr-small",
            filename="rfdetr-small.onnx",
            url="https://huggingface.co/AnnotateIt/rfdetr-small-coco-onnx/resolve/main/model.onnx",
            # Published on the model card of AnnotateIt/rfdetr-small-coco-onnx (114,439,180 bytes).
            sha256="850b7a24b573064f98f41605e4e400421420edf9b377e1704fa2079589cc3479",
            size_hint=114_439_180,
            licence="Apache-2.0 (unofficial ONNX export of Roboflow RF-DETR)",
            description="RF-DETR small person detector, 512x512 input, batch 1",
        ),
        ModelSpec(
            name="mhr-assets",
            filename="mhr-assets.zip",
            url="https://github.com/facebookresearch/MHR/releases/download/v1.0.0/assets.zip",
            sha256=None,  # the release publishes no hash
            size_hint=189_000_000,  # "~189 MB"
            licence="Apache-2.0 (Meta MHR)",
            description="MHR body model release archive (TorchScript mesh module assets/mhr_model.pt, rig)",
        ),
    )
}


class ModelDownloadError(RuntimeError):
    """A model file could not be fetched or verified; the message names the file, URL and what to do."""


class ModelUnreachable(ModelDownloadError):
    """The server could not be reached at all (no network, DNS, timeout): `reason` says why, in a few words."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DownloadCancelled(ModelDownloadError):
    """The caller cancelled; the partial `.part` file is kept so the next download resumes."""


def file_identity(path: str | os.PathLike) -> tuple:
    """(real path, device, inode, size, modification time in ns): changes whenever the file is replaced or written,
    so results derived from a file's bytes can be remembered under it. Raises OSError like os.stat."""
    info = os.stat(path)
    return (os.path.realpath(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


_HASHES: dict[tuple, str] = {}
_HASHES_LOCK = threading.Lock()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (model files are hundreds of MB). Remembered for this process under
    the file's identity (file_identity), so loading the same unchanged model again does not read it again."""
    identity = file_identity(path)
    with _HASHES_LOCK:
        known = _HASHES.get(identity)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    with _HASHES_LOCK:
        _HASHES[identity] = digest.hexdigest()
    return digest.hexdigest()


def read_recorded_hashes(folder: str | os.PathLike) -> dict[str, dict]:
    """The trust-on-first-use records of `folder/hashes.json`: {model name: {"sha256", "filename", "url"}}."""
    path = Path(folder) / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelDownloadError(
            f"`{path}` is unreadable ({error}): delete it to record the model hashes afresh"
        ) from None
    if not isinstance(records, dict):
        raise ModelDownloadError(f"`{path}` is not a hash record: delete it to record the hashes afresh")
    return records


def _record_hash(folder: Path, spec: ModelSpec, sha256: str) -> None:
    records = read_recorded_hashes(folder)
    records[spec.name] = {"sha256": sha256, "filename": spec.filename, "url": spec.url}
    # Written atomically: a crash must not leave a truncated record that would block every later check.
    handle, temporary = tempfile.mkstemp(prefix=f".{HASHES_FILE}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(records, stream, indent=2, sort_keys=True)
        os.replace(temporary, folder / HASHES_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def expected_sha256(spec: ModelSpec, folder: str | os.PathLike) -> tuple[str | None, str]:
    """The hash a file must have and where it comes from: ("...", "publisher"), ("...", "first download")
    or (None, "none") when nothing is known yet."""
    if spec.sha256:
        return spec.sha256.lower(), "publisher"
    record = read_recorded_hashes(folder).get(spec.name)
    if isinstance(record, dict) and isinstance(record.get("sha256"), str):
        return record["sha256"].lower(), "first download"
    return None, "none"


class ModelFolder:
    """The folder holding the user's model files (and `hashes.json`)."""

    def __init__(self, path: str | os.PathLike, registry: Mapping[str, ModelSpec] = KNOWN_MODELS) -> None:
        self.path = Path(path)
        self.registry = registry

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.registry[name]
        except KeyError:
            known = ", ".join(sorted(self.registry))
            raise ModelDownloadError(f"unknown model `{name}` (known: {known})") from None

    def path_for(self, name: str) -> Path:
        """Where model `name` lives (whether or not it is there yet)."""
        return self.path / self.spec(name).filename

    def find(self, name: str) -> Path | None:
        """The model's file if present and non-empty, else None. Does not hash it (see verify)."""
        path = self.path_for(name)
        return path if path.is_file() and path.stat().st_size > 0 else None

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names among `names` whose files are not present, in the order given."""
        return [name for name in names if self.find(name) is None]

    def verify(self, name: str) -> Path:
        """Check the model's file against the publisher's or the recorded hash; returns its path.

        A file placed by hand with no hash known yet is trusted now and its hash recorded (trust on first
        use). Raises ModelDownloadError when the file is missing or its hash differs.
        """
        spec = self.spec(name)
        path = self.find(name)
        if path is None:
            raise ModelDownloadError(
                f"model `{name}` is missing: download it, or save {spec.url} by hand "
                f"as `{self.path_for(name)}`"
            )
        got = sha256_of(path)
        expected, origin = expected_sha256(spec, self.path)
        if expected is None:
            _record_hash(self.path, spec, got)
            return path
        if got != expected:
            raise ModelDownloadError(_mismatch_message(spec, path, expected, got, origin))
        return path


def _mismatch_message(spec: ModelSpec, path: Path, expected: str, got: str, origin: str) -> str:
    advice = (
        f"if {spec.url} was updated on purpose, remove the `{spec.name}` entry from `{HASHES_FILE}` "
        "and download again"
        if origin == "first download"
        else "the file is damaged or not the published one: delete it and download again"
    )
    return (
        f"`{path.name}` ({spec.name}) does not match the expected SHA-256 ({origin}): "
        f"expected {expected}, got {got}; {advice}"
    )


def download(
    spec: ModelSpec,
    dest_dir: str | os.PathLike,
    *,
    allow_network: bool,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    timeout: float = 30,
) -> Path:
    """Download `spec` into `dest_dir` and return the verified file's path.

    Streams to `<file>.part`, calling `progress(bytes_done, bytes_total or None)`. A `.part` left by an
    interrupted or cancelled download is resumed with an HTTP Range request when the server honours it
    (206) and restarted cleanly when it does not (200). The SHA-256 is checked (publisher's hash, or the
    one recorded on the first download; see the module docstring); on a mismatch the temporary file is
    deleted. The destination only ever appears complete (atomic rename). `cancel()` returning True stops
    within one chunk, keeps the `.part` and raises DownloadCancelled. Errors raise ModelDownloadError.
    """
    folder = Path(dest_dir)
    destination = folder / spec.filename
    if not allow_network:
        raise ModelDownloadError(
            f"downloading `{spec.filename}` needs online access, which is off: enable \"Allow Online "
            f"Access\" in Blender's Preferences (System > Network), or download {spec.url} by hand and "
            f"save it as `{destination}`"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelDownloadError(
            f"cannot create the model folder `{folder}` ({error.strerror or error}): choose a writable folder"
        ) from None
    part = destination.with_name(destination.name + PART_SUFFIX)
    expected, origin = expected_sha256(spec, folder)

    got = _stream_to_part(spec, part, progress, cancel, timeout)
    if expected is not None and got != expected:
        part.unlink(missing_ok=True)
        raise ModelDownloadError(_mismatch_message(spec, destination, expected, got, origin))
    os.replace(part, destination)
    if expected is None:
        _record_hash(folder, spec, got)
    return destination


def _stream_to_part(spec: ModelSpec, part: Path, progress, cancel, timeout: float) -> str:
    """Fetch the whole file into `part` (resuming it if possible); returns the hex SHA-256 of all of it."""
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(spec, offset, timeout)
    try:
        if offset and response.status == 206:
            start, _ = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                # A range we did not ask for: discard and restart from the first byte.
                response.close()
                part.unlink(missing_ok=True)
                offset = 0
                response = _open(spec, 0, timeout)
        if response.status != 206:
            offset = 0  # the server sent the whole file (no Range support): start the .part afresh
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None

        digest = hashlib.sha256()
        if offset:
            with open(part, "rb") as existing:
                while chunk := existing.read(1024 * 1024):
                    digest.update(chunk)
        done = offset
        with open(part, "ab" if offset else "wb") as stream:
            if progress:
                progress(done, total)
            while True:
                if cancel and cancel():
                    raise DownloadCancelled(
                        f"download of `{spec.filename}` cancelled after {done} bytes; "
                        "the partial file is kept and the next download resumes it"
                    )
                try:
                    chunk = response.read(_CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    raise _interrupted(spec, done, total, error) from None
                if not chunk:
                    break
                stream.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise _interrupted(spec, done, total, "the connection closed early")
        return digest.hexdigest()
    finally:
        response.close()


def _open(spec: ModelSpec, offset: int, timeout: float):
    request = urllib.request.Request(spec.url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # The .part is already as long as (or longer than) the file: it cannot be resumed.
            raise ModelDownloadError(
                f"the partial download of `{spec.filename}` cannot be resumed (HTTP 416 from {spec.url}): "
                f"delete `{spec.filename}{PART_SUFFIX}` and download again"
            ) from None
        raise ModelDownloadError(
            f"downloading {spec.url} failed: HTTP {error.code} {error.reason}; check the address, or "
            f"download the file by hand and save it as `{spec.filename}` in the model folder"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, socket.timeout | TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise ModelUnreachable(
            f"could not reach {spec.url} ({reason}): check the internet connection, or download the file "
            f"by hand and save it as `{spec.filename}` in the model folder",
            str(reason),
        ) from None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))


def _interrupted(spec: ModelSpec, done: int, total: int | None, why) -> ModelDownloadError:
    of_total = f" of {total}" if total is not None else ""
    return ModelDownloadError(
        f"the download of `{spec.filename}` from {spec.url} was interrupted after {done}{of_total} bytes "
        f"({why}); download again to resume it"
    )


def fetch_instructions(wanted: Iterable[tuple[ModelSpec, Path]]) -> str:
    """`URL saved as /abs/path/file (...rename it); ...`: how to fetch the files by hand, one clause each."""
    clauses = []
    for spec, destination in wanted:
        published = spec.url.rsplit("/", 1)[-1]
        rename = f" (it is called {published} there: rename it)" if published != destination.name else ""
        clauses.append(f"{spec.url} saved as {Path(os.path.abspath(destination))}{rename}")
    return "; ".join(clauses)


def download_missing(
    wanted: Iterable[tuple[ModelSpec, Path]],
    *,
    progress: Callable[[ModelSpec, int, int | None], None] | None = None,
    timeout: float = 30,
) -> list[Path]:
    """Download every (spec, destination) whose destination file is missing, into the destination's folder (the
    caller's explicit consent to go online); returns the files downloaded, verified as `download` does.

    When a server cannot be reached, the ModelUnreachable raised says in one line which files are still missing,
    where to fetch each and where to put it (real absolute paths, the published name when it differs)."""
    wanted = [(spec, Path(destination)) for spec, destination in wanted]
    fetched = []
    for index, (spec, destination) in enumerate(wanted):
        if destination.is_file() and destination.stat().st_size > 0:
            continue
        if destination.name != spec.filename:
            raise ModelDownloadError(f"`{destination}` is not where `{spec.name}` downloads to ({spec.filename})")
        try:
            fetched.append(download(
                spec, destination.parent, allow_network=True, timeout=timeout,
                progress=None if progress is None else (lambda done, total, spec=spec: progress(spec, done, total)),
            ))
        except ModelUnreachable as error:
            missing = [(s, d) for s, d in wanted[index:] if not (d.is_file() and d.stat().st_size > 0)]
            raise ModelUnreachable(
                f"could not download the model files ({error.reason}); without network, fetch them by hand: "
                f"{fetch_instructions(missing)}; then run again",
                error.reason,
            ) from None
    return fetched


def detector_spec(variant: str) -> ModelSpec:
    """The RF-DETR ONNX file of a detector variant (`rfdetr-<variant>`; the nano file for an unknown one)."""
    return KNOWN_MODELS.get(f"rfdetr-{variant}", KNOWN_MODELS["rfdetr-nano"])
