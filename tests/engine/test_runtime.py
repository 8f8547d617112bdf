"""ONNX Runtime sessions: provider choice and fallback, clear errors for bad files, signature checks."""

import onnxruntime as ort
import pytest

from instanthmr_blender.models import runtime
from instanthmr_blender.models.runtime import ModelError, TensorSpec, check_signature, create_session
from testkit.contract_models import (
    build_instanthmr_model,
    build_rfdetr_model,
    build_wrong_size_model,
    write_corrupt_model,
)


def test_available_devices_lists_only_present_providers(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runtime.available_devices() == ["auto", "cuda", "cpu"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert runtime.available_devices() == ["auto", "cpu"]


def test_missing_provider_falls_back_to_cpu_with_one_log_line(tmp_path):
    model = build_rfdetr_model(tmp_path / "det.onnx")
    lines = []
    wanted = "coreml" if "CoreMLExecutionProvider" not in ort.get_available_providers() else "directml"
    session, provider = create_session(model, device=wanted, log=lines.append)
    assert provider == "CPUExecutionProvider"
    assert session.get_providers()[0] == "CPUExecutionProvider"
    fallback = [line for line in lines if "using the CPU" in line]
    assert len(fallback) == 1 and wanted in fallback[0]


def test_auto_prefers_the_first_present_accelerator(monkeypatch):
    present = ["DmlExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: present)
    assert runtime._choose_provider("auto", print) == "CUDAExecutionProvider"
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        runtime._choose_provider("tpu", print)


def test_cpu_session_runs_and_reports_its_provider(tmp_path):
    session, provider = create_session(build_instanthmr_model(tmp_path / "hmr.onnx"), device="cpu", threads=1)
    assert provider == "CPUExecutionProvider"
    assert [i.name for i in session.get_inputs()] == ["image", "cliff_cond"]


def test_missing_file_is_a_clear_model_error(tmp_path):
    with pytest.raises(ModelError, match=r"`.*nothing\.onnx` does not exist"):
        create_session(tmp_path / "nothing.onnx")
    with pytest.raises(ModelError, match="is a folder"):
        create_session(tmp_path)


def test_corrupt_and_non_onnx_files_are_clear_model_errors(tmp_path):
    with pytest.raises(ModelError, match=r"`broken\.onnx` could not be loaded as an ONNX model.*fully downloaded"):
        create_session(write_corrupt_model(tmp_path / "broken.onnx"))
    text = tmp_path / "notes.onnx"
    text.write_text("this is a text file, not a model\n")
    with pytest.raises(ModelError, match=r"`notes\.onnx` could not be loaded"):
        create_session(text)


HMR_INPUTS = [TensorSpec("image", (None, 3, 224, 224)), TensorSpec("cliff_cond", (None, 3))]


def test_signature_check_names_the_first_mismatch(tmp_path):
    session, _ = create_session(build_wrong_size_model(tmp_path / "instanthmr.onnx"), device="cpu")
    with pytest.raises(ModelError) as info:
        check_signature(
            session, "instanthmr.onnx", inputs=HMR_INPUTS, outputs=[], outputs_by_name=False,
            model_hint="is this the InstantHMR model?",
        )
    assert str(info.value) == (
        "instanthmr.onnx: input 'image' has shape [N,3,256,256], expected [N,3,224,224] — "
        "is this the InstantHMR model?"
    )


def test_signature_check_by_name_reports_a_missing_output(tmp_path):
    session, _ = create_session(build_rfdetr_model(tmp_path / "det.onnx"), device="cpu")
    with pytest.raises(ModelError, match=r"det\.onnx: has no output 'boxes' \(it has: dets, labels\)"):
        check_signature(
            session, "det.onnx", inputs=[TensorSpec("input", (None, 3, 64, 64))],
            outputs=[TensorSpec("boxes", (None, 300, 4))], outputs_by_name=True, model_hint="?",
        )
    with pytest.raises(ModelError, match="has 1 inputs"):
        check_signature(session, "det.onnx", inputs=HMR_INPUTS, outputs=[], outputs_by_name=True, model_hint="?")
    # the right spec passes
    check_signature(
        session, "det.onnx", inputs=[TensorSpec("input", (None, 3, 64, 64))],
        outputs=[TensorSpec("labels", (None, 300, 91)), TensorSpec("dets", (None, 300, 4))],
        outputs_by_name=True, model_hint="?",
    )


def test_fixed_batch_size_is_read_from_the_model(tmp_path):
    dynamic, _ = create_session(build_rfdetr_model(tmp_path / "a.onnx"), device="cpu")
    fixed, _ = create_session(build_rfdetr_model(tmp_path / "b.onnx", batch=1), device="cpu")
    assert runtime.fixed_batch_size(dynamic) is None
    assert runtime.fixed_batch_size(fixed) == 1
