"""The published InstantHMR files, read from `model_registry.json` (data, not code): size, backbone, fit level,
licence, accuracy, source revision and SHA-256 where known.

Sizes: "first_release" (RepViT-M1.5, `instanthmr.onnx`) and the HGNetV2 sizes nano..medium_commercial of v1.0.1.
Fit levels: 0 (the network alone), 1 and 2 (v1.1: a kinematic fit inside the graph on 1 or 2 crops per person).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

REGISTRY_FILE = Path(__file__).with_name("registry.json")
REGISTRY_FORMAT = "instanthmr-model-registry"
#: The file every earlier version of the add-on used: still the default choice, so existing users keep working.
DEFAULT_SIZE = "first_release"
DEFAULT_FIT = 0


class RegistryError(ValueError):
    """The registry file is malformed, or a size / fit level that no published file has was asked for."""


@dataclass(frozen=True)
class Licence:
    key: str
    text: str  # as the model card states it
    url: str  # where the user reads it
    commercial_use: bool | None  # None: the card does not say


@dataclass(frozen=True)
class Accuracy:
    benchmark: str  # "3DPW", "EMDB-1"
    metric: str  # "PA-MPJPE"
    mm: float
    note: str

    def text(self) -> str:
        return f"{self.benchmark} {self.metric} {self.mm:.1f} mm" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class HMRModel:
    """One published InstantHMR file."""

    name: str  # the key in the model folder's hash records and the downloads ("instanthmr-nano-fit1")
    file: str  # its file name in the Hugging Face repository and in the model folder
    release: str  # "v1.0", "v1.0.1", "v1.1"
    size: str  # "first_release", "nano", ..., "medium_commercial"
    size_label: str
    backbone: str
    parameters_m: float | None  # millions of parameters; None where not published
    fit: int  # 0, 1, 2
    repository: str  # Hugging Face repository, "owner/name"
    revision: str | None  # the commit the file is fetched from; None: the main branch
    sha256: str | None  # None: not published (recorded on the first download)
    bytes: int | None
    licence: Licence
    accuracy: tuple[Accuracy, ...]

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repository}/resolve/{self.revision or 'main'}/{self.file}"

    @property
    def source(self) -> str:
        """`owner/name@revision` (or `@main`): where the weights come from."""
        return f"{self.repository}@{self.revision or 'main'}"

    @property
    def label(self) -> str:
        return self.size_label + ("" if self.fit == 0 else f", fit {self.fit}")

    def accuracy_text(self) -> str:
        return "; ".join(a.text() for a in self.accuracy) or "no published accuracy"


@dataclass(frozen=True)
class Registry:
    repository: str
    sizes: dict[str, dict]  # size -> {"label", "backbone", "parameters_m"}
    fit_levels: dict[int, str]
    licences: dict[str, Licence]
    models: tuple[HMRModel, ...]

    def by_name(self, name: str) -> HMRModel | None:
        return next((m for m in self.models if m.name == name), None)

    def by_file(self, file_name: str) -> HMRModel | None:
        return next((m for m in self.models if m.file == file_name), None)

    def by_sha256(self, sha256: str) -> HMRModel | None:
        return next((m for m in self.models if m.sha256 and m.sha256 == sha256.lower()), None)

    def fits_of(self, size: str) -> list[int]:
        return sorted(m.fit for m in self.models if m.size == size)

    def choose(self, size: str, fit: int) -> HMRModel:
        """The published file of this size and fit level (RegistryError naming what exists when there is none)."""
        for model in self.models:
            if model.size == size and model.fit == int(fit):
                return model
        if size not in self.sizes:
            raise RegistryError(f"unknown InstantHMR size {size!r}: use one of {', '.join(self.sizes)}")
        levels = ", ".join(str(f) for f in self.fits_of(size))
        raise RegistryError(f"InstantHMR {size} has no fit level {fit} (published: {levels})")


def _fail(why: str) -> RegistryError:
    return RegistryError(f"`{REGISTRY_FILE.name}` is malformed: {why}")


def parse_registry(data: dict) -> Registry:
    """A Registry from the JSON document; RegistryError naming the first malformed entry."""
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT or data.get("version") != 1:
        raise _fail(f"expected format {REGISTRY_FORMAT!r} version 1")
    repository = data["repository"]
    licences = {
        key: Licence(key, value["text"], value["url"], value["commercial_use"])
        for key, value in data["licences"].items()
    }
    sizes = data["sizes"]
    models = []
    for entry in data["models"]:
        name = entry.get("name", "?")
        size = sizes.get(entry.get("size"))
        if size is None:
            raise _fail(f"model {name!r} has unknown size {entry.get('size')!r}")
        if entry.get("licence") not in licences:
            raise _fail(f"model {name!r} has unknown licence {entry.get('licence')!r}")
        try:
            models.append(HMRModel(
                name=name, file=entry["file"], release=entry["release"], size=entry["size"],
                size_label=size["label"], backbone=size["backbone"], parameters_m=size["parameters_m"],
                fit=int(entry["fit"]), repository=repository, revision=entry["revision"],
                sha256=entry["sha256"].lower() if entry["sha256"] else None, bytes=entry["bytes"],
                licence=licences[entry["licence"]],
                accuracy=tuple(Accuracy(a["benchmark"], a["metric"], float(a["mm"]), a["note"])
                               for a in entry["accuracy"]),
            ))
        except (KeyError, TypeError, ValueError) as error:
            raise _fail(f"model {name!r}: {type(error).__name__} {error}") from None
    return Registry(
        repository=repository,
        sizes=sizes,
        fit_levels={int(level): text for level, text in data["fit_levels"].items()},
        licences=licences,
        models=tuple(models),
    )


@functools.cache
def registry() -> Registry:
    """The registry shipped with the add-on (read once)."""
    try:
        data = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _fail(str(error)) from None
    return parse_registry(data)
