"""fp16 graphs on the CPU: the fp32 conversion (cached beside the model, keyed by its hash) computes the same."""

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnxruntime.transformers.float16 import convert_float_to_float16

from instanthmr_blender.models import fp16 as precision
from instanthmr_blender.models.files import sha256_of
from instanthmr_blender.models.fp16 import (
    CACHE_TAG,
    ConversionUnsupported,
    cached_fp32_path,
    convert_fp16_to_fp32,
    fp32_model_for_cpu,
)
from instanthmr_blender.pose.hmr import InstantHMR
from testkit.contract_models import build_instanthmr_model

IMAGE_SIZE = (994, 1768)
#: fp16 has an 11-bit significand: results agree to a few units in the last place of fp16.
FP16_RTOL = 4e-3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The contract stand-in in fp32, and converted upstream's way (fp16 inside, float32 at the boundary)."""
    folder = tmp_path_factory.mktemp("precision")
    fp32 = build_instanthmr_model(folder / "instanthmr_fp32.onnx", image_size=IMAGE_SIZE)
    fp16 = folder / "instanthmr.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(fp16))
    return fp32, fp16


def people(frame_shape):
    height, width = frame_shape[:2]
    return np.array([[0.25 * width, 0.3 * height, 0.35 * width, 0.8 * height],
                     [0.6 * width, 0.25 * height, 0.72 * width, 0.85 * height]], np.float32)


def fresh_copy(source, folder):
    folder.mkdir(exist_ok=True)
    copy = folder / source.name
    copy.write_bytes(source.read_bytes())
    return copy


def test_the_conversion_leaves_no_fp16_behind(models):
    fp32, fp16 = models
    converted = onnx.load_from_string(convert_fp16_to_fp32(fp16.read_bytes()))
    types = {t.data_type for t in converted.graph.initializer}
    types |= {a.t.data_type for n in converted.graph.node for a in n.attribute if a.HasField("t")}
    assert onnx.TensorProto.FLOAT16 not in types and onnx.TensorProto.FLOAT in types
    casts = [a.i for n in converted.graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert casts and onnx.TensorProto.FLOAT16 not in casts
    assert convert_fp16_to_fp32(fp32.read_bytes()) is None  # nothing in fp16: nothing to do


def tiny_fp16_model(raw: bool) -> onnx.ModelProto:
    """x (float32) -> Cast fp16 -> + fp16 weights -> Cast float32; weights in raw_data or in int32_data."""
    weights = np.array([0.1, -2.5, 1000.0, 3e-5], np.float16)
    tensor = helper.make_tensor("w", onnx.TensorProto.FLOAT16, [4], weights.tobytes() if raw else weights, raw=raw)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["x16"], to=onnx.TensorProto.FLOAT16),
         helper.make_node("Add", ["x16", "w"], ["y16"]),
         helper.make_node("Cast", ["y16"], ["y"], to=onnx.TensorProto.FLOAT)],
        "tiny", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])], initializer=[tensor])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("raw", [True, False])
def test_fp16_weights_come_back_exactly_from_raw_and_int32_data(raw):
    model = tiny_fp16_model(raw)
    converted = onnx.load_from_string(convert_fp16_to_fp32(model.SerializeToString()))
    onnx.checker.check_model(converted)
    (weights,) = converted.graph.initializer
    assert weights.data_type == onnx.TensorProto.FLOAT
    np.testing.assert_array_equal(numpy_helper.to_array(weights),
                                  np.array([0.1, -2.5, 1000.0, 3e-5], np.float16).astype(np.float32))
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    (y,) = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})
    np.testing.assert_array_equal(y, x + numpy_helper.to_array(weights))


def test_weights_in_external_files_are_refused(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(tiny_fp16_model(raw=True), str(path), save_as_external_data=True, size_threshold=0,
              all_tensors_to_one_file=True, location="external.data")
    with pytest.raises(ConversionUnsupported, match="external data"):
        convert_fp16_to_fp32(path.read_bytes())
    logged = []
    assert fp32_model_for_cpu(path, logged.append) == path and "running it as it is" in logged[0]


def test_fp16_model_runs_as_fp32_on_the_cpu_within_fp16_precision(models, tmp_path):
    fp32, fp16 = models
    model = fresh_copy(fp16, tmp_path / "models")
    frame = np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3), np.uint8)
    boxes = people(frame.shape)
    logged = []
    converted = InstantHMR(model, device="cpu", log=logged.append)
    cache = cached_fp32_path(model, sha256_of(model))
    assert cache.is_file() and CACHE_TAG in cache.name
    assert any("converted once to fp32" in line for line in logged)
    as_fp16 = InstantHMR(model, device="cpu", keep_fp16=True).predict(frame, boxes)
    reference = InstantHMR(fp32, device="cpu").predict(frame, boxes)
    result = converted.predict(frame, boxes)
    for name in ("mhr_params", "shape_params", "cam_trans", "joints_3d", "joints_2d"):
        got, fp16_run, fp32_run = (getattr(p, name) for p in (result, as_fp16, reference))
        scale = np.abs(fp32_run).max()
        np.testing.assert_allclose(got, fp16_run, atol=FP16_RTOL * scale, err_msg=name)
        np.testing.assert_allclose(got, fp32_run, atol=FP16_RTOL * scale, err_msg=name)

    # the second load uses the cached file without converting again
    stamp = cache.stat().st_mtime_ns
    logged.clear()
    InstantHMR(model, device="cpu", log=logged.append)
    assert cache.stat().st_mtime_ns == stamp
    assert any(cache.name in line and "using its fp32 conversion" in line for line in logged)

    # another model file under the same name (another hash) gets its own conversion
    model.write_bytes(fresh_copy(fp32, tmp_path / "other").read_bytes())
    assert cached_fp32_path(model, sha256_of(model)) != cache


def test_a_read_only_model_folder_converts_in_memory(models, tmp_path, monkeypatch):
    _, fp16 = models
    model = fresh_copy(fp16, tmp_path / "readonly")

    def refuse(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(model), "write_bytes", refuse)  # as a read-only folder would (even for root)
    logged = []
    loaded = fp32_model_for_cpu(model, logged.append)
    assert isinstance(loaded, bytes) and "in memory" in logged[0] and "Permission denied" in logged[0]
    assert list(model.parent.iterdir()) == [model]
    monkeypatch.undo()
    session_outputs = InstantHMR(model, device="cpu").session.get_outputs()
    assert {"mhr_params", "joints_2d", "joints_3d"} <= {output.name for output in session_outputs}


def test_fp32_models_are_loaded_as_they_are(models, tmp_path):
    fp32, _ = models
    model = fresh_copy(fp32, tmp_path / "plain")
    assert fp32_model_for_cpu(model, print) == model
    assert [p.name for p in model.parent.iterdir()] == [model.name]


def test_an_fp32_model_is_read_through_once_per_process_and_again_when_replaced(models, tmp_path, monkeypatch):
    """Every capture loads the models: an unchanged fp32 file is neither hashed nor parsed again (0.3 s for an
    80 MB file on the development machine); a file written anew is."""
    fp32, fp16 = models
    model = fresh_copy(fp32, tmp_path / "memo")
    read = []
    real_convert, real_open = precision.convert_fp16_to_fp32, open

    def counting_convert(data):
        read.append("parsed")
        return real_convert(data)

    def counting_open(path, *args, **kwargs):
        if Path(path) == model:
            read.append("hashed")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(precision, "convert_fp16_to_fp32", counting_convert)
    monkeypatch.setattr("builtins.open", counting_open)
    assert fp32_model_for_cpu(model, print) == model and read == ["hashed", "parsed"]
    assert fp32_model_for_cpu(model, print) == model and read == ["hashed", "parsed"]  # nothing read again
    assert sha256_of(model) == hashlib.sha256(model.read_bytes()).hexdigest()
    model.write_bytes(fp16.read_bytes())  # replaced: read again, and now converted
    converted = fp32_model_for_cpu(model, print)
    assert read == ["hashed", "parsed", "hashed", "parsed"] and CACHE_TAG in Path(converted).name
