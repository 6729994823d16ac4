"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) pass,
every core module is under the core contract, and no file imports another file's private names."""
from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wspace", "datasets_zoo", "generators")


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_core_contract_lists_every_core_module():
    core = next(c for c in _contracts() if c["type"] == "forbidden" and "wspace.commands" in c["forbidden_modules"])
    listed = set(core["source_modules"])
    present = {f"wspace.{p.stem if p.is_file() else p.name}" for p in (ROOT / "wspace").iterdir()
               if (p.suffix == ".py" and not p.name.startswith("__")) or (p.is_dir() and (p / "__init__.py").is_file())}
    assert present - {"wspace.commands"} == listed, "a core module is missing from the core contract (or listed twice)"


@pytest.mark.skipif(importlib.util.find_spec("importlinter") is None, reason="import-linter not installed")
def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("lint-imports not on PATH")
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(mod: str, level: int, here: str, is_pkg: bool) -> str:
    if level == 0:
        return mod
    base = here.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, mod] if mod else base)


def _private_imports(path: Path) -> list[str]:
    """``from <project module> import _name`` and ``<project module alias>._name`` in one file."""
    here, is_pkg = _module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    found, module_aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _resolve(node.module or "", node.level, here, is_pkg)
            if mod.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {mod} import {a.name}")
                full = f"{mod}.{a.name}"
                if importlib.util.find_spec(mod) and (ROOT / Path(*full.split("."))).with_suffix(".py").exists():
                    module_aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES and a.asname:
                    module_aliases.add(a.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_imported_across_files():
    files = [p for pkg in (*PACKAGES, "benchmarks") for p in sorted((ROOT / pkg).rglob("*.py"))]
    bad = [hit for f in files for hit in _private_imports(f)]
    assert not bad, "private names used across files:\n" + "\n".join(bad)
