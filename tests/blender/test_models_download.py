"""Model downloads from the add-on preferences, in real Blender, against a local HTTP server on loopback:
offered only with Blender's online access on, progress while running, SHA-256 verified, clear failures."""

import dataclasses
import hashlib
import http.server
import sys
import threading
import time

import bpy
import pytest
from conftest import ADDON_MODULE

PAYLOADS = {"/instanthmr.onnx": b"I" * 300_000, "/rfdetr.onnx": b"R" * 200_000}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAYLOADS.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for start in range(0, len(body), 65536):
            self.wfile.write(body[start:start + 65536])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def registry(addon, server, tmp_path):
    """The add-on's model registry pointed at the loopback server; the model folder in tmp_path."""
    model_files = sys.modules[ADDON_MODULE + ".instanthmr_blender.model_files"]
    saved = dict(model_files.KNOWN_MODELS)
    model_files.KNOWN_MODELS["instanthmr"] = dataclasses.replace(
        saved["instanthmr"], url=server + "/instanthmr.onnx", sha256=None)
    model_files.KNOWN_MODELS["rfdetr-nano"] = dataclasses.replace(
        saved["rfdetr-nano"], url=server + "/rfdetr.onnx",
        sha256=hashlib.sha256(PAYLOADS["/rfdetr.onnx"]).hexdigest())
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.model_folder = str(tmp_path / "models")
    prefs.instanthmr_path = prefs.detector_path = ""
    yield model_files
    model_files.KNOWN_MODELS.clear()
    model_files.KNOWN_MODELS.update(saved)
    bpy.context.preferences.system.use_online_access = False


def pump(models_ops, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, message = models_ops.pump_download(bpy.context)
        if state != "RUNNING":
            return state, message
        time.sleep(0.02)
    pytest.fail("download did not finish")


def test_download_is_offered_only_with_online_access(registry):
    bpy.context.preferences.system.use_online_access = False
    assert not bpy.app.online_access
    assert not bpy.ops.instanthmr.download_models.poll()
    bpy.context.preferences.system.use_online_access = True
    assert bpy.ops.instanthmr.download_models.poll()


def test_download_fetches_and_verifies_the_missing_models(registry, tmp_path):
    bpy.context.preferences.system.use_online_access = True
    models_ops = sys.modules[ADDON_MODULE + ".operators.models"]
    assert bpy.ops.instanthmr.download_models() == {"FINISHED"}  # module mode: starts the worker
    state, message = pump(models_ops)
    assert state == "FINISHED", message
    assert "instanthmr" in message and "rfdetr-nano" in message
    folder = tmp_path / "models"
    assert (folder / "instanthmr.onnx").read_bytes() == PAYLOADS["/instanthmr.onnx"]
    assert (folder / "rfdetr-nano.onnx").read_bytes() == PAYLOADS["/rfdetr.onnx"]
    assert (folder / "hashes.json").is_file()  # InstantHMR has no published hash: recorded on first download
    assert bpy.context.window_manager.instanthmr_download.factor == 1.0
    # Nothing missing any more: a second run downloads nothing.
    models_ops.start_download(bpy.context)
    assert pump(models_ops) == ("FINISHED", "Downloaded and verified: nothing was missing")


def test_a_wrong_hash_fails_with_a_clear_message_and_keeps_nothing(registry, tmp_path):
    bpy.context.preferences.system.use_online_access = True
    registry.KNOWN_MODELS["rfdetr-nano"] = dataclasses.replace(registry.KNOWN_MODELS["rfdetr-nano"], sha256="0" * 64)
    models_ops = sys.modules[ADDON_MODULE + ".operators.models"]
    models_ops.start_download(bpy.context, ["rfdetr-nano"])
    state, message = pump(models_ops)
    assert state == "FAILED" and "SHA-256" in message.upper().replace("SHA256", "SHA-256")
    assert not (tmp_path / "models" / "rfdetr-nano.onnx").exists()


def test_download_refused_when_online_access_is_off(registry, tmp_path):
    bpy.context.preferences.system.use_online_access = False
    models_ops = sys.modules[ADDON_MODULE + ".operators.models"]
    models_ops.start_download(bpy.context, ["instanthmr"])
    state, message = pump(models_ops)
    assert state == "FAILED" and "online access" in message.lower()
    assert not (tmp_path / "models" / "instanthmr.onnx").exists()
