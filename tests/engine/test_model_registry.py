"""The model registry (`instanthmr_blender/model_registry.json`): every published file, consistent with itself, with
the release notes and with the download registry."""

import copy
import json
import re

import pytest

from instanthmr_blender.models.files import KNOWN_MODELS
from instanthmr_blender.models.registry import (
    DEFAULT_FIT,
    DEFAULT_SIZE,
    REGISTRY_FILE,
    RegistryError,
    parse_registry,
    registry,
)

HGNET_SIZES = ("nano", "tiny", "small", "medium", "medium_commercial")
# The release notes (issue 11, model-contract section 5): size -> (backbone, million parameters, 3DPW PA-MPJPE mm)
RELEASE_NOTES = {
    "nano": ("HGNetV2-B0", 20.0, 46.6),
    "tiny": ("HGNetV2-B1", 20.3, 44.0),
    "small": ("HGNetV2-B2", 24.4, 41.7),
    "medium": ("HGNetV2-B4", 32.2, 40.0),
    "medium_commercial": ("HGNetV2-B4", 32.2, 50.7),
}


def raw():
    return json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))


def test_every_published_file_is_listed_once():
    models = registry().models
    names, files = [m.name for m in models], [m.file for m in models]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)
    assert len({(m.size, m.fit) for m in models}) == len(models)
    expected = {"instanthmr.onnx"} | {f"instanthmr-{size}.onnx" for size in HGNET_SIZES} | {
        f"instanthmr-{size}-fit{level}.onnx" for size in HGNET_SIZES for level in (1, 2)}
    assert set(files) == expected
    for model in models:
        stem = model.file.removesuffix(".onnx")
        assert model.name == stem  # the download name is the file's stem
        release = "v1.0" if model.size == "first_release" else {0: "v1.0.1", 1: "v1.1", 2: "v1.1"}[model.fit]
        assert model.release == release
        assert stem.endswith(f"-fit{model.fit}") == (model.fit > 0)
    assert registry().fits_of("first_release") == [0]
    assert all(registry().fits_of(size) == [0, 1, 2] for size in HGNET_SIZES)


def test_sizes_match_the_release_notes():
    for size, (backbone, parameters, pa_mpjpe) in RELEASE_NOTES.items():
        for model in (m for m in registry().models if m.size == size):
            assert (model.backbone, model.parameters_m) == (backbone, parameters)
        plain = registry().choose(size, 0)
        assert [a.mm for a in plain.accuracy if a.benchmark == "3DPW"] == [pa_mpjpe]
    # EMDB-1 with and without the fit, as the v1.1 notes give them
    assert {a.mm for a in registry().choose("medium", 1).accuracy} == {44.4}
    assert {a.mm for a in registry().choose("nano", 2).accuracy} == {55.9}
    assert 48.8 in {a.mm for a in registry().choose("medium", 0).accuracy}


def test_licences_and_commercial_use():
    for model in registry().models:
        assert model.licence.text and model.licence.url.startswith("https://")
        if model.size == "medium_commercial":
            assert model.licence.commercial_use is True and "commercial use allowed" in model.licence.text
        elif model.size == "first_release":
            assert model.licence.commercial_use is None and model.licence.text.startswith("SAM License")
        else:
            assert model.licence.commercial_use is False and "non-commercial use only" in model.licence.text
            assert "CC BY-NC 4.0" in model.licence.text  # what the third-party card says is shown too


def test_hashes_revisions_and_urls():
    first = registry().choose(DEFAULT_SIZE, DEFAULT_FIT)
    assert first.file == "instanthmr.onnx" and first.backbone == "RepViT-M1.5"
    assert first.sha256 == "f717558094f57d7c9cd084d7981874dbcc3f08e7308501eb98c12844e2cce3b7"
    assert first.bytes == 80_961_622 and first.revision == "3504446fc31e7f76fdb1cd7e463189e7cf0fdd0f"
    assert registry().choose("tiny", 0).revision == "07988f51c8c8908cfc7bb44fc18f645c9551b0bf"
    for model in registry().models:
        assert model.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", model.sha256)
        assert model.revision is None or re.fullmatch(r"[0-9a-f]{40}", model.revision)
        assert model.url == (f"https://huggingface.co/momolesang/InstantHMR/resolve/"
                             f"{model.revision or 'main'}/{model.file}")
        # hashes are pinned only where known: everything after the first release is recorded on first download
        assert (model.sha256 is None) == (model.size != "first_release")


def test_the_download_registry_agrees():
    for model in registry().models:
        spec = KNOWN_MODELS[model.name]
        assert (spec.filename, spec.url, spec.sha256, spec.size_hint) == (model.file, model.url, model.sha256,
                                                                          model.bytes)
        assert (spec.licence, spec.licence_url) == (model.licence.text, model.licence.url)


def test_choose_names_what_exists():
    assert registry().choose("small", 2).file == "instanthmr-small-fit2.onnx"
    with pytest.raises(RegistryError, match=r"InstantHMR first_release has no fit level 1 \(published: 0\)"):
        registry().choose("first_release", 1)
    with pytest.raises(RegistryError, match="unknown InstantHMR size 'huge': use one of first_release, nano"):
        registry().choose("huge", 0)
    assert registry().by_sha256("F717558094F57D7C9CD084D7981874DBCC3F08E7308501EB98C12844E2CCE3B7").name == "instanthmr"
    assert registry().by_file("instanthmr-tiny-fit1.onnx").label == "Tiny, fit 1"


@pytest.mark.parametrize("break_it, message", [
    (lambda d: d.update(format="other"), "expected format"),
    (lambda d: d["models"][1].update(size="huge"), "unknown size 'huge'"),
    (lambda d: d["models"][1].update(licence="gpl"), "unknown licence 'gpl'"),
    (lambda d: d["models"][1].pop("file"), "model 'instanthmr-nano': KeyError"),
])
def test_a_malformed_registry_is_named(break_it, message):
    data = copy.deepcopy(raw())
    break_it(data)
    with pytest.raises(RegistryError, match=message):
        parse_registry(data)
