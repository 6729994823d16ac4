"""The documentation site builds with warnings as errors, and its worked example runs.

``mkdocs build --strict`` fails on a broken link or anchor, a missing page, a snippet
that does not exist and a docstring mkdocstrings cannot render (``::: target`` that no
longer resolves included). Skipped when the docs extra (``pip install ".[docs]"``) is
not installed.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_DEPS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing_docs_deps() -> list[str]:
    missing = []
    for name in DOCS_DEPS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


needs_mkdocs = pytest.mark.skipif(bool(_missing_docs_deps()), reason="docs extra not installed (pip install '.[docs]')")


@needs_mkdocs
def test_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    for page in ("index.html", "guide/own-zoo/index.html", "supported/index.html", "architecture/index.html",
                 "reference/spec/index.html", "reference/datasets_zoo/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    spec_page = (tmp_path / "site" / "reference/spec/index.html").read_text()
    for name in ("WeightSpaceSpec", "spec_from_module", "register_family", "ParamSpec", "GroupSpec", "LayerSpec"):
        assert f'id="wspace.spec.{name}"' in spec_page, name
    for page, ids in {"reference/generators": ("generators.pipeline.WeightGenerator", "generators.gaussian.GaussianGenerator",
                                               "generators.d2nwg.D2NWG"),
                      "reference/nn": ("wspace.nn.Encoder", "wspace.nn.EquivariantEncoder", "wspace.nn.build_encoder"),
                      "reference/commands": ("wspace.commands.train.fit",),
                      "reference/standardize": ("wspace.standardize.WeightStats",),
                      "reference/tasks": ("wspace.tasks.InrClassification",),
                      "reference/config": ("wspace.config.compose_config",)}.items():
        html = (tmp_path / "site" / page / "index.html").read_text()
        for name in ids:
            assert f'id="{name}"' in html, (page, name)


PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "ARCHITECTURE.md"]


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_pages_name_real_files_and_objects():
    """Every repository path (`configs/...`, `wspace/...`, ...) and every backticked dotted
    name (`wspace.nn.build_encoder`) the pages mention exists, so a moved file or renamed
    object breaks this test rather than silently staling the docs (placeholders like
    `<name>` are skipped)."""
    path_re = re.compile(r"(?<![\w/.])((?:configs|wspace|generators|datasets_zoo|docs|tests|benchmarks)/[\w./-]*[\w/])(?![\w<{])")
    name_re = re.compile(r"`((?:wspace|generators|datasets_zoo)(?:\.\w+)+)")
    bad = []
    for page in PAGES:
        text = page.read_text()
        rel = page.relative_to(ROOT)
        bad += [f"{rel}: {m.group(1)}" for m in path_re.finditer(text) if not (ROOT / m.group(1)).exists()]
        bad += [f"{rel}: {m.group(1)}" for m in name_re.finditer(text) if not _resolves(m.group(1))]
    assert not bad, bad


def test_pages_do_not_describe_removed_mechanisms():
    """The pre-#14 mechanisms (encoder options under `kwargs`, Python name registries,
    top-level subcommand YAMLs) stay out of the pages."""
    stale = ("encoder.kwargs", "ENCODERS", "EQUIVARIANT_ENCODERS", "RECIPES", "configs/audit.yaml",
             "configs/quickstart.yaml", "configs/train.yaml", "generators/d2nwg.py", "datasets_zoo/format.py",
             "wspace/spec.py", "wspace.cli")
    bad = [f"{p.relative_to(ROOT)}: {s}" for p in PAGES for s in stale if s in p.read_text()]
    assert not bad, bad


@pytest.mark.slow
def test_own_zoo_example_matches_its_page(tmp_path):
    """docs/examples/own_zoo.py runs and prints what docs/guide/own-zoo.md shows (the
    lines that do not depend on the platform's floating point)."""
    r = subprocess.run([sys.executable, str(ROOT / "docs/examples/own_zoo.py"), str(tmp_path / "my_zoo")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-4000:]
    out = r.stdout.splitlines()
    page = (ROOT / "docs/guide/own-zoo.md").read_text()
    assert out[0] == f"Zoo('{tmp_path / 'my_zoo'}', format=plain, 8 checkpoints, specs=['spec-0'])"
    assert "Zoo('my_zoo', format=plain, 8 checkpoints, specs=['spec-0'])" in page
    assert out[1] == "linear 64->32 | relu | linear 32->10 | 2410 parameters" and out[1] in page
    header = (tmp_path / "my_zoo" / "metadata.csv").read_text().splitlines()[0]
    assert header == "file,run,seed,epoch,task,metrics.test_acc,metrics.train_loss,hparams.lr" and header in page
    assert out[-1].startswith("train split: 4 checkpoints, runs") and "train split: 4 checkpoints, runs" in page
