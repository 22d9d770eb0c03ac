"""Every import target held in a string resolves: entry points, the registry's lazy classes, CLI dispatch.

The strings are read from where they live (pyproject.toml, the package's own source), not from a
copied list, so a module that moves without its string following fails here, not at a user's call.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "robovlms_mobile"
# a whole string that names a plugin module or object: "robovlms_mobile.a.b" or "robovlms_mobile.a.b:Name"
TARGET_RE = re.compile(r"robovlms_mobile(\.\w+)+(:\w+(\.\w+)*)?")
IMPORTING_CALLS = {"import_module", "when_imported", "find_spec"}  # first argument is a module name


def resolve(target: str) -> Any:
    """The object a "module:attr.attr" or dotted "module[.attr]" string names (ImportError/AttributeError if none)."""
    module_name, _, attrs = target.partition(":")
    if not attrs:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError:
            module_name, _, attrs = module_name.rpartition(".")
    value: Any = importlib.import_module(module_name)
    for attr in attrs.split("."):
        value = getattr(value, attr)
    return value


def _source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + [REPO / "robovlms_mobile_autoload.py"]


def string_targets() -> list[tuple[str, str]]:
    """(file:line, string) for every lazy import target written in the package's source."""
    found = []
    for path in _source_files():
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and TARGET_RE.fullmatch(node.value):
                found.append((where, node.value))
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if func in IMPORTING_CALLS and not TARGET_RE.fullmatch(node.args[0].value):
                    found.append((where, node.args[0].value))  # upstream / transformers modules hooked or imported by name
    return found


def pyproject_entry_points() -> dict[tuple[str, str], str]:
    """(group, name) -> "module:attr" for [project.scripts] and every [project.entry-points.<group>]."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    eps = {("console_scripts", name): value for name, value in project.get("scripts", {}).items()}
    for group, items in project.get("entry-points", {}).items():
        eps.update({(group, name): value for name, value in items.items()})
    return eps


def test_the_scan_finds_the_known_kinds_of_targets():
    """Guards the scan itself: it must see the registry's lazy classes and the hooked upstream modules."""
    strings = {s for _, s in string_targets()}
    assert any(s.endswith(":MobileVLAH5Dataset") for s in strings), sorted(strings)
    assert any(s.endswith(":MobileVLALSTMDecoder") for s in strings), sorted(strings)
    assert {"robovlms", "robovlms.data", "robovlms.train.base_trainer"} <= strings
    assert ("robovlms.plugins", "mobile_vla") in pyproject_entry_points()


@pytest.mark.parametrize("where,target", string_targets(), ids=str)
def test_string_target_resolves(where, target):
    try:
        value = resolve(target)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{where}: {target!r} does not resolve: {exc!r}")
    assert value is not None


@pytest.mark.parametrize("key", sorted(pyproject_entry_points()), ids=lambda k: f"{k[0]}:{k[1]}")
def test_entry_point_resolves_and_is_installed_as_written(key):
    group, name = key
    target = pyproject_entry_points()[key]
    value = resolve(target)
    assert callable(value), f"pyproject.toml {group} {name} = {target!r} is not callable"
    installed = {ep.name: ep for ep in entry_points(group=group)}
    assert name in installed, f"{group} {name} is not installed: re-run `pip install -e .` (make setup)"
    assert installed[name].value == target, f"installed {group} {name} = {installed[name].value!r}, pyproject says {target!r}"
    assert installed[name].load() is value


def _lazy_namespaces() -> list[ModuleType]:
    return [m for m in list(sys.modules.values()) if isinstance(getattr(m, "_robovlms_mobile_lazy", None), dict)]


def test_every_registry_target_is_found_by_upstreams_lookup():
    """After `import robovlms` (the entry point fires) upstream's getattr lookups return the plugin's classes."""
    import robovlms  # noqa: F401  (fires the robovlms.plugins entry point)
    import robovlms.data  # noqa: F401
    import robovlms.model.backbone  # noqa: F401
    import robovlms.model.policy_head  # noqa: F401
    import robovlms.train.base_trainer  # noqa: F401

    register = resolve(pyproject_entry_points()[("robovlms.plugins", "mobile_vla")])
    register()  # idempotent; also covers a run with ROBOVLMS_MOBILE_AUTOLOAD=0
    registry_source = Path(sys.modules[register.__module__].__file__)
    written = {s for w, s in string_targets() if w.startswith(str(registry_source.relative_to(REPO))) and ":" in s}
    registered = {}
    for module in _lazy_namespaces():
        for name, target in module._robovlms_mobile_lazy.items():
            assert getattr(module, name) is resolve(target), f"{module.__name__}.{name} is not {target}"
            assert target.rsplit(":", 1)[1].split(".")[-1] == name, f"{module.__name__}.{name} -> {target}"
            registered[target] = module.__name__
    assert written and written <= set(registered), f"written in {registry_source.name} but never registered: {written - set(registered)}"
