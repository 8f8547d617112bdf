"""Downloading what a capture needs (`--download-models`): a chosen InstantHMR size and the detector, from a real
HTTP server on 127.0.0.1, verified; without network, one line saying which files to fetch from where to where."""

import dataclasses
import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instanthmr_blender.models.files import (
    HASHES_FILE,
    KNOWN_MODELS,
    ModelDownloadError,
    ModelUnreachable,
    download_missing,
    fetch_instructions,
)
from instanthmr_blender.models.registry import registry

HMR_PATH = "/momolesang/InstantHMR/resolve/main/instanthmr-nano-fit1.onnx"
DETECTOR_PATH = "/AnnotateIt/rfdetr-nano-coco-onnx/resolve/main/model.onnx"
FILES = {HMR_PATH: b"H" * 250_000, DETECTOR_PATH: b"D" * 130_000}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server():
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            body = FILES.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def wanted_for(base: str, folder):
    """The chosen size (nano, fit 1) and the nano detector, their URLs moved to `base`."""
    hmr = registry().choose("nano", 1)
    hmr_spec = dataclasses.replace(KNOWN_MODELS[hmr.name], url=base + HMR_PATH)
    detector_spec = dataclasses.replace(KNOWN_MODELS["rfdetr-nano"], url=base + DETECTOR_PATH,
                                        sha256=hashlib.sha256(FILES[DETECTOR_PATH]).hexdigest())
    return [(hmr_spec, folder / hmr.file), (detector_spec, folder / "rfdetr-nano.onnx")]


def test_the_chosen_size_and_the_detector_are_fetched_and_verified(server, tmp_path):
    base, requests = server
    folder = tmp_path / "models"
    seen = []
    fetched = download_missing(wanted_for(base, folder), progress=lambda spec, done, total: seen.append(spec.name))
    assert fetched == [folder / "instanthmr-nano-fit1.onnx", folder / "rfdetr-nano.onnx"]
    assert (folder / "instanthmr-nano-fit1.onnx").read_bytes() == FILES[HMR_PATH]
    assert (folder / "rfdetr-nano.onnx").read_bytes() == FILES[DETECTOR_PATH]  # model.onnx, renamed
    # no published hash for the v1.1 file: recorded on this first download
    records = json.loads((folder / HASHES_FILE).read_text())
    assert records["instanthmr-nano-fit1"]["sha256"] == hashlib.sha256(FILES[HMR_PATH]).hexdigest()
    assert seen[0] == "instanthmr-nano-fit1" and seen[-1] == "rfdetr-nano"
    assert requests == [HMR_PATH, DETECTOR_PATH]
    # everything present: nothing is fetched again
    assert download_missing(wanted_for(base, folder)) == [] and len(requests) == 2


def test_a_wrong_detector_hash_keeps_nothing(server, tmp_path):
    base, _ = server
    (hmr, hmr_path), (detector, detector_path) = wanted_for(base, tmp_path)
    with pytest.raises(ModelDownloadError, match="does not match the expected SHA-256"):
        download_missing([(hmr, hmr_path), (dataclasses.replace(detector, sha256="0" * 64), detector_path)])
    assert hmr_path.is_file() and not detector_path.exists()


def test_without_network_one_line_says_what_to_fetch_where(tmp_path):
    base = closed_port_url()
    folder = tmp_path / "models"
    wanted = wanted_for(base, folder)
    with pytest.raises(ModelUnreachable) as error:
        download_missing(wanted, timeout=5)
    message = str(error.value)
    assert "\n" not in message and message.startswith("could not download the model files (")
    assert (f"{base}{HMR_PATH} saved as {folder.resolve()}/instanthmr-nano-fit1.onnx; "
            f"{base}{DETECTOR_PATH} saved as {folder.resolve()}/rfdetr-nano.onnx "
            "(it is called model.onnx there: rename it); then run again") in message
    assert not folder.exists() or not any(folder.iterdir())
    # a file already there is not listed
    folder.mkdir(exist_ok=True)
    (folder / "instanthmr-nano-fit1.onnx").write_bytes(b"placed by hand")
    with pytest.raises(ModelUnreachable) as error:
        download_missing(wanted, timeout=5)
    assert "instanthmr-nano-fit1" not in str(error.value) and "rfdetr-nano.onnx" in str(error.value)


def test_fetch_instructions_use_real_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from pathlib import Path

    text = fetch_instructions([(KNOWN_MODELS["instanthmr"], Path("models") / "instanthmr.onnx")])
    assert text == ("https://huggingface.co/momolesang/InstantHMR/resolve/3504446fc31e7f76fdb1cd7e463189e7cf0fdd0f/"
                    f"instanthmr.onnx saved as {tmp_path / 'models' / 'instanthmr.onnx'}")


def test_a_destination_of_another_name_is_not_downloaded_into(tmp_path):
    with pytest.raises(ModelDownloadError, match="is not where `instanthmr` downloads to"):
        download_missing([(KNOWN_MODELS["instanthmr"], tmp_path / "my-model.onnx")])
