"""The house's layering, read from the source: data flows one way (engine <- settings / scene <- retarget <-
operators, ui, cli), no module imports one above it or across (the command line and the operators never import
`ui/`), no two modules import each other in a circle, and no module takes another's private names."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Each top-level package of the extension and the packages it may import (besides itself).
ALLOWED = {
    "instanthmr_blender": set(),
    "registration": set(),
    "settings": {"instanthmr_blender"},
    "scene": {"instanthmr_blender"},
    "retarget": {"instanthmr_blender", "scene", "registration"},
    "operators": {"instanthmr_blender", "settings", "scene", "retarget", "registration"},
    "ui": {"instanthmr_blender", "settings", "registration"},
    "cli": {"instanthmr_blender", "settings", "scene", "retarget"},
    "capture": set(),  # the entry script reaches the add-on through Blender's add-on system only
    "__init__": {"operators", "registration", "retarget", "ui"},
}


def extension_modules() -> dict[str, Path]:
    """Dotted module name (relative to the extension root) -> file, for every module the extension ships."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] not in ALLOWED or any(part.startswith(".") for part in parts):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        modules[name] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken) for every import of an extension module, relative ones resolved,
    `from package import module` counted as an import of the module, imports inside functions included."""
    if name == "__init__":  # the extension's own face: its relative imports name the top-level packages
        package = []
    else:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{target}.{alias.name}" if target else alias.name
                if submodule in modules:
                    found.append((node.lineno, submodule, []))
                elif target in modules:
                    found.append((node.lineno, target, [alias.name]))
                elif node.level:  # a relative import of nothing the extension has: it fails at run time
                    found.append((node.lineno, f"<missing>.{target}", [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name in modules]
    return found


MODULES = extension_modules()
GRAPH = {name: imports_of(name, path, MODULES) for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_the_layers_below_it(name):
    top = name.split(".")[0]
    wrong = [(line, target) for line, target, _ in GRAPH[name] if not target.startswith("<missing>")
             and target.split(".")[0] != top and target.split(".")[0] not in ALLOWED[top]]
    assert not wrong, f"{MODULES[name].relative_to(ROOT)} imports above or across its layer: {wrong}"


def test_every_relative_import_names_a_module_that_exists():
    # Imports inside functions run only when the function does: a wrong one would pass every other check.
    missing = sorted((str(MODULES[name].relative_to(ROOT)), line, target.removeprefix("<missing>."))
                     for name, edges in GRAPH.items() for line, target, _ in edges if target.startswith("<missing>"))
    assert missing == []


def test_nothing_but_the_extension_entry_imports_the_ui():
    importers = sorted({name for name, edges in GRAPH.items() for _, target, _ in edges
                        if target.split(".")[0] == "ui" and name.split(".")[0] not in ("ui", "__init__")})
    assert importers == []


def test_no_import_circle():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for _, target, _ in GRAPH[name]:
            # a package's face importing its own modules is how a package is made, not a circle
            if target.startswith((name + ".", "<missing>")):
                continue
            if state.get(target) == 1:
                raise AssertionError(f"import circle: {' -> '.join(path[path.index(target):] + [target])}")
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name)


def test_no_private_name_is_imported_from_another_module():
    private = sorted((str(MODULES[name].relative_to(ROOT)), line, taken) for name, edges in GRAPH.items()
                     for line, _, names in edges for taken in names if taken.startswith("_"))
    assert private == []


def test_the_checks_see_the_tree():
    assert {"instanthmr_blender.capture.offline", "settings.capture", "cli.run", "ui.panel"} <= set(MODULES)
    assert any(target == "settings.capture" for _, target, _ in GRAPH["cli.inputs"])


@pytest.mark.parametrize("package", sorted(p.parent for p in (ROOT / "instanthmr_blender").rglob("__init__.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_engine_package_says_what_it_owns(package):
    assert ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
