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
    model_files = sys.modules[ADDON_MODULE + ".instanthmr_blender.models.files"]
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


def test_command_line_downloads_the_chosen_size_and_records_its_licence(registry, tmp_path, fixtures_dir, capsys):
    """capture.py --download-models with --model-size nano --model-fit 1: the chosen file and the detector come from
    the (loopback) server, verified; the capture runs in the user's lens; the take and every rig name the weights."""
    import socket
    from importlib import import_module

    from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model

    base = registry.KNOWN_MODELS["instanthmr"].url.rsplit("/", 1)[0]
    built = tmp_path / "published"
    hmr_bytes = build_instanthmr_model(built / "hmr.onnx", image_dtype="uint8", cliff_form="angular",
                                       metadata={"cliff_focal": "true"}).read_bytes()
    detector_bytes = build_rfdetr_model(built / "model.onnx", boxes=(DetectorBox(0.3, 0.55, 0.12, 0.6),
                                                                    DetectorBox(0.7, 0.55, 0.12, 0.6))).read_bytes()
    PAYLOADS.update({"/instanthmr-nano-fit1.onnx": hmr_bytes, "/model.onnx": detector_bytes})
    registry.KNOWN_MODELS["instanthmr-nano-fit1"] = dataclasses.replace(
        registry.KNOWN_MODELS["instanthmr-nano-fit1"], url=base + "/instanthmr-nano-fit1.onnx")
    registry.KNOWN_MODELS["rfdetr-nano"] = dataclasses.replace(
        registry.KNOWN_MODELS["rfdetr-nano"], url=base + "/model.onnx",
        sha256=hashlib.sha256(detector_bytes).hexdigest())
    cli = import_module(ADDON_MODULE + ".cli")
    folder, out, take_path = tmp_path / "models", tmp_path / "walk.blend", tmp_path / "walk.npz"
    argv = [str(fixtures_dir / "video" / "two_people_walking.mp4"), "--model-dir", str(folder), "--model-size", "nano",
            "--model-fit", "1", "--end", "8", "--min-track-length", "3", "--lens-mm", "50", "--out", str(out),
            "--save-take", str(take_path)]

    # Offline: one line naming each file, where to fetch it, and the real folder to put it in
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    saved_urls = {name: registry.KNOWN_MODELS[name] for name in ("instanthmr-nano-fit1", "rfdetr-nano")}
    for name, spec in saved_urls.items():
        registry.KNOWN_MODELS[name] = dataclasses.replace(spec, url=closed + "/" + spec.url.rsplit("/", 1)[1])
    assert cli.main(argv + ["--download-models"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("capture: error: could not download the model files (")
    assert (f"{closed}/instanthmr-nano-fit1.onnx saved as {folder}/instanthmr-nano-fit1.onnx; {closed}/model.onnx "
            f"saved as {folder}/rfdetr-nano.onnx (it is called model.onnx there: rename it)") in line
    registry.KNOWN_MODELS.update(saved_urls)

    # Without the option nothing is fetched: the missing files are named and the option suggested
    assert cli.main(argv) == 2
    assert "--download-models" in capsys.readouterr().err and not list(folder.glob("*.onnx"))

    assert cli.main(argv + ["--download-models"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"downloaded and verified {folder / 'instanthmr-nano-fit1.onnx'}" in printed
    assert (folder / "instanthmr-nano-fit1.onnx").read_bytes() == hmr_bytes
    assert (folder / "rfdetr-nano.onnx").read_bytes() == detector_bytes

    api = import_module(ADDON_MODULE + ".instanthmr_blender.take")
    take = api.load_take(take_path)
    assert take.focal_length == pytest.approx(50 * 1768 / 36)  # the lens, along the longer side
    info = take.model_info
    assert info["model"] == "instanthmr-nano-fit1" and info["sha256"] == hashlib.sha256(hmr_bytes).hexdigest()
    assert "angular cliff_cond" in info["graph"] and info["focal_source"] == "user"
    rigs = [o for o in bpy.context.scene.objects if o.get("instanthmr_role") == "capture_rig"]
    assert len(rigs) == 2
    for rig in rigs:
        assert rig["instanthmr_model"] == "instanthmr-nano-fit1" and rig["instanthmr_model_file"] == (
            "instanthmr-nano-fit1.onnx")
        assert rig["instanthmr_model_sha256"] == info["sha256"]
        assert rig["instanthmr_model_licence"].startswith("SAM License, non-commercial use only")
        assert rig["instanthmr_model_licence_url"] == "https://huggingface.co/momolesang/InstantHMR"
        assert "first download" in rig["instanthmr_model_hash_check"]
    assert bpy.context.scene.camera.data.lens == pytest.approx(50.0)  # 36 mm horizontal sensor on a landscape clip
