"""Every panel, list and the preferences draw without errors, and everything they show exists: each `prop`
names a real property of its data and each `operator` a registered operator. Module-mode Blender draws no UI,
so the draw functions run against a recording layout."""

import importlib
import sys

import bpy
import pytest
from conftest import ADDON_MODULE


class RecordingLayout:
    """Stands in for bpy.types.UILayout: checks what a draw function asks for and records it."""

    def __init__(self, record: list):
        self.record = record
        self.enabled = True
        self.active = True
        self.alert = False

    def prop(self, data, name, **_kwargs):
        assert name in data.bl_rna.properties.keys(), f"{type(data).__name__} has no property {name!r}"
        self.record.append(("prop", name))
        return None

    def operator(self, idname, **_kwargs):
        module, _, name = idname.partition(".")
        assert hasattr(getattr(bpy.ops, module), name), f"operator {idname!r} is not registered"
        self.record.append(("operator", idname))
        return _OperatorProperties()

    def template_list(self, list_type, _list_id, data, collection, active_data, active_name, **_kwargs):
        assert hasattr(bpy.types, list_type), f"UIList {list_type!r} is not registered"
        assert collection in data.bl_rna.properties.keys() and active_name in active_data.bl_rna.properties.keys()
        self.record.append(("list", list_type))

    def progress(self, **kwargs):
        self.record.append(("progress", kwargs.get("text", "")))

    def label(self, **kwargs):
        self.record.append(("label", kwargs.get("text", "")))

    def separator(self, **_kwargs):
        pass

    def _child(self, *_args, **_kwargs):
        return RecordingLayout(self.record)

    row = column = box = split = _child


class _OperatorProperties:
    def __setattr__(self, name, value):
        pass


def addon_classes(base_type):
    found = []
    for name, module in sorted(sys.modules.items()):
        if name.startswith(ADDON_MODULE + ".") and module is not None:
            found.extend(cls for cls in getattr(module, "classes", ()) if issubclass(cls, base_type))
    return found


def draw(cls, context):
    record = []
    holder = type("Holder", (), {"layout": RecordingLayout(record)})()
    cls.draw(holder, context)
    return record


@pytest.fixture
def scene_with_people(addon):
    bpy.ops.wm.read_homefile(use_empty=True)
    settings = bpy.context.scene.instanthmr
    person = settings.people.add()
    person.track_id, person.first_frame, person.last_frame, person.frame_count = 3, 1, 40, 40
    return settings


def test_every_panel_draws_and_shows_only_real_things(scene_with_people):
    panels = addon_classes(bpy.types.Panel)
    assert len(panels) >= 5
    progress = bpy.context.window_manager.instanthmr_progress
    for running in (False, True):
        progress.running = running
        for panel in panels:
            record = draw(panel, bpy.context)
            assert record, f"{panel.__name__} drew nothing"
    progress.running = False
    main = draw(bpy.types.VIEW3D_PT_instanthmr_capture, bpy.context)
    assert ("prop", "clip") in main and ("operator", "instanthmr.capture") in main


def test_people_list_items_draw(scene_with_people):
    record = []
    layout = RecordingLayout(record)
    item = scene_with_people.people[0]
    bpy.types.INSTANTHMR_UL_people.draw_item(None, bpy.context, layout, scene_with_people, item, 0,
                                             scene_with_people, "people_index")
    assert ("prop", "keep") in record
    assert any(kind == "label" and "1-40" in text for kind, text in record)


def test_preferences_draw(addon):
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    record = []
    holder_layout = RecordingLayout(record)

    class Holder:
        layout = holder_layout

        def __getattr__(self, name):
            return getattr(prefs, name)

    type(prefs).draw(Holder(), bpy.context)
    shown = {name for kind, name in record if kind == "prop"}
    assert {"model_folder", "instanthmr_path", "detector_path", "default_device", "threads", "hmr_size"} <= shown
    labels = [text for kind, text in record if kind == "label"]
    assert any(text.startswith("Licence: SAM License") for text in labels)  # the first release by default
    assert ("operator", "wm.url_open") in record
    prefs.hmr_size, prefs.hmr_fit = "medium_commercial", "2"
    try:
        record.clear()
        type(prefs).draw(Holder(), bpy.context)
        labels = [text for kind, text in record if kind == "label"]
        assert "Licence: SAM License, commercial use allowed" in labels and ("prop", "hmr_fit") in record
        assert any(text.startswith("instanthmr-medium_commercial-fit2.onnx: HGNetV2-B4, 32.2 M") for text in labels)
        assert any(text.startswith("Accuracy: ") for text in labels)
    finally:
        prefs.hmr_size, prefs.hmr_fit = "first_release", "0"
    assert "hmr_precision" not in shown  # no INT8 model: nothing to choose
    assert any(kind == "label" and "No INT8 InstantHMR" in text for kind, text in record)


def test_preferences_offer_int8_only_with_its_fidelity(addon, tmp_path):
    quantized = importlib.import_module(ADDON_MODULE + ".instanthmr_blender.models.int8")
    FidelityReport, int8_model_path, report_path = (
        quantized.FidelityReport, quantized.int8_model_path, quantized.report_path)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    model = tmp_path / "instanthmr.onnx"
    model.write_bytes(b"fp32")
    int8_model_path(model).write_bytes(b"int8")
    FidelityReport(model=model.name, model_sha256="0" * 64, model_bytes=4, int8_model="instanthmr.int8.onnx",
                   clip="me.mp4",
                   calibration_crops=30, held_out_crops=70, fp32_ms=90.0, int8_ms=45.0, provider="CPU",
                   mm_3d_mean=7.5, mm_3d_p95=16.0, mm_3d_aligned_mean=5.0, mm_3d_aligned_p95=11.0, px_2d_mean=1.2,
                   px_2d_p95=2.5, jitter_fp32_mm=3.0, jitter_int8_mm=3.3).save(report_path(model))
    kept = prefs.instanthmr_path
    prefs.instanthmr_path = str(model)
    try:
        record = []
        type(prefs).draw(_PrefsHolder(prefs, RecordingLayout(record)), bpy.context)
    finally:
        prefs.instanthmr_path = kept
    assert ("prop", "hmr_precision") in record
    labels = " ".join(text for kind, text in record if kind == "label")
    assert "2.00x faster" in labels and "7.5 mm 3D" in labels and "3.0 -> 3.3" in labels and "me.mp4" in labels
    model.write_bytes(b"another model")  # replaced after quantising: not offered, and the panel says why
    record.clear()
    kept = prefs.instanthmr_path
    prefs.instanthmr_path = str(model)
    try:
        type(prefs).draw(_PrefsHolder(prefs, RecordingLayout(record)), bpy.context)
    finally:
        prefs.instanthmr_path = kept
    assert ("prop", "hmr_precision") not in record
    assert "measured on another model" in " ".join(text for kind, text in record if kind == "label")


class _PrefsHolder:
    def __init__(self, prefs, layout):
        self._prefs, self.layout = prefs, layout

    def __getattr__(self, name):
        return getattr(self._prefs, name)
