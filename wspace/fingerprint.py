"""Run fingerprints: a rerun never reuses a result trained with other settings.

A command that writes training results into a directory (``wspace train``, every stage of
a generator) first *settles* it with :func:`settle`: it compares the fingerprint of what
it is about to compute (the settings that determine the result: config, zoo
fingerprint, seeds, code version of the relevant parts) with the one recorded next to
the results already there, and

* no results yet: records the fingerprint and starts (``"fresh"``);
* same fingerprint: resumes or reuses them (``"resume"``);
* another fingerprint (or results without one): refuses with a
  :class:`~wspace.errors.WeightSpaceError` that names every setting that differs and how
  to proceed: a new ``out=``, ``resume=force`` (continue from / reuse the results anyway;
  the record then notes what was forced) or ``overwrite=true`` (delete those results and
  start over).

The choice between the last two is a :class:`RerunPolicy`, passed explicitly or set for a
block of code with :func:`rerun_policy` (what ``wspace train resume=force`` /
``overwrite=true`` do around a generator's ``train``)::

    from wspace.fingerprint import rerun_policy
    with rerun_policy(overwrite=True):
        train_d2nwg(zoo, "runs/d2nwg", denoiser={"steps": 400})

A record is a small JSON file (``fingerprints/<name>.json`` in the run directory):
``{"fingerprint": <sha256>, "settings": {...}, "wspace_version": ..., "forced": [...]}``.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib.util
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Sequence

from .errors import WeightSpaceError

__all__ = ["RECORD_DIR", "TRAINER_PRESENTATION", "RerunPolicy", "rerun_policy", "current_policy", "canonical", "digest", "code_version",
           "differences", "settle", "read_record", "record_path"]

RECORD_DIR = "fingerprints"  # records live in <run dir>/fingerprints/<name>.json

#: Lightning Trainer arguments that say where a run executes and how it reports, not what it
#: computes: left out of fingerprints (so a run may resume on another device or without a bar)
TRAINER_PRESENTATION = ("enable_progress_bar", "enable_model_summary", "log_every_n_steps", "accelerator",
                        "devices", "num_nodes", "plugins", "profiler", "barebones", "detect_anomaly", "strategy",
                        "logger", "callbacks", "default_root_dir", "enable_checkpointing")

Resume = Literal[True, False, "force"]


@dataclass(frozen=True)
class RerunPolicy:
    """What a rerun does with results trained with other settings.

    ``resume``: ``True`` (default: resume / reuse matching results, refuse others),
    ``"force"`` (resume / reuse them whatever their settings) or ``False`` (start over,
    as ``overwrite``); ``overwrite``: delete results whose settings differ and start them over.
    """

    resume: Resume = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.resume not in (True, False, "force"):
            raise WeightSpaceError(f"resume must be true, false or force, got {self.resume!r}")
        if not isinstance(self.overwrite, bool):
            raise WeightSpaceError(f"overwrite must be true or false, got {self.overwrite!r}")
        if self.resume == "force" and self.overwrite:
            raise WeightSpaceError("resume=force and overwrite=true contradict each other: pick one")

    @property
    def discard(self) -> bool:
        """Whether results trained with other settings are deleted (``overwrite`` or ``resume=false``)."""
        return self.overwrite or self.resume is False

    @classmethod
    def parse(cls, resume: Any = True, overwrite: Any = False) -> "RerunPolicy":
        """From command-line values: ``resume`` true / false / force (any case; ``None``: true),
        ``overwrite`` true / false."""
        if resume is None:
            resume = True
        if isinstance(resume, str):
            low = resume.strip().lower()
            resume = {"true": True, "false": False, "force": "force"}.get(low, resume)
        if overwrite is None:
            overwrite = False
        if isinstance(overwrite, str):
            overwrite = {"true": True, "false": False}.get(overwrite.strip().lower(), overwrite)
        return cls(resume, overwrite)


_POLICY: contextvars.ContextVar[RerunPolicy] = contextvars.ContextVar("wspace_rerun_policy", default=RerunPolicy())


def current_policy() -> RerunPolicy:
    """The policy set by the innermost :func:`rerun_policy` block (default: resume matching results, refuse others)."""
    return _POLICY.get()


@contextlib.contextmanager
def rerun_policy(resume: Any = True, overwrite: Any = False) -> Iterator[RerunPolicy]:
    """Set the :class:`RerunPolicy` of every :func:`settle` call in the block."""
    token = _POLICY.set(RerunPolicy.parse(resume, overwrite))
    try:
        yield _POLICY.get()
    finally:
        _POLICY.reset(token)


# --------------------------------------------------------------------------- hashing
def canonical(value: Any) -> Any:
    """``value`` as plain JSON data (mappings with string keys, lists, numbers, strings;
    tuples become lists, non-finite floats and other objects become strings), so that two
    equal configurations give equal JSON."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return canonical(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return repr(value)


def digest(value: Any) -> str:
    """SHA-256 (hex) of ``value``'s canonical JSON (sorted keys)."""
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _module_files(name: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise WeightSpaceError(f"code_version: no module named '{name}'")
    if spec.submodule_search_locations:  # a package: every .py file below it
        files: list[Path] = []
        for root in spec.submodule_search_locations:
            files += sorted(p for p in Path(root).rglob("*.py") if "__pycache__" not in p.parts)
        return files
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def code_version(modules: Iterable[str]) -> dict[str, str]:
    """The code a result depends on: the wspace version plus, per module or package
    named in ``modules``, a SHA-256 of its source files (a package: all its ``.py`` files)."""
    from . import __version__

    out = {"wspace": __version__}
    for name in sorted(set(modules)):
        h = hashlib.sha256()
        for f in _module_files(name):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        out[name] = h.hexdigest()[:16]
    return out


# --------------------------------------------------------------------------- comparing
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1] if prefix else "(value)": value}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines for the leaves where two settings differ."""
    a, b = _flatten(canonical(old)), _flatten(canonical(new))
    out = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            out.append(f"{k}: (not set) -> {b[k]!r}")
        elif k not in b:
            out.append(f"{k}: {a[k]!r} -> (not set)")
        elif a[k] != b[k]:
            out.append(f"{k}: {a[k]!r} -> {b[k]!r}")
    return out


# --------------------------------------------------------------------------- records
def record_path(directory: str | os.PathLike, name: str) -> Path:
    """Where the record ``name`` of the run directory ``directory`` lives."""
    return Path(directory) / RECORD_DIR / f"{name}.json"


def read_record(path: str | os.PathLike) -> dict | None:
    """The record at ``path``, or None if there is none; a corrupt record raises a
    :class:`WeightSpaceError` naming it."""
    from .io import read_json

    p = Path(path)
    if not p.exists():
        return None
    doc = read_json(p)
    if not isinstance(doc, dict) or not isinstance(doc.get("fingerprint"), str) \
            or not isinstance(doc.get("settings"), dict):
        raise WeightSpaceError("corrupt fingerprint record (expected {fingerprint, settings}); delete it, or pass "
                               "overwrite=true to start over", file=p)
    return doc


def _write_record(path: Path, settings: Mapping[str, Any], forced: list[str] | None = None) -> None:
    from . import __version__
    from .io import atomic_write

    doc: dict[str, Any] = {"fingerprint": digest(settings), "settings": canonical(settings),
                           "wspace_version": __version__}
    if forced:
        doc["forced"] = forced
    with atomic_write(path) as f:
        json.dump(doc, f, indent=1, sort_keys=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def settle(directory: str | os.PathLike, name: str, settings: Mapping[str, Any], artifacts: Sequence[str | os.PathLike],
           *, what: str, policy: RerunPolicy | None = None) -> str:
    """Compare ``settings`` with the record ``name`` of ``directory`` before (re)computing
    ``artifacts`` (paths, relative to ``directory`` or absolute) and decide.

    Returns ``"fresh"`` (nothing there, or ``overwrite`` deleted the artifacts: start),
    ``"resume"`` (the artifacts were made with these settings) or ``"forced"`` (made with
    other settings, kept because of ``resume=force``). Writes the record (atomically)
    unless it is unchanged.

    Raises:
        WeightSpaceError: artifacts made with other settings (or with no record) and the
            policy neither forces nor overwrites; the message names ``what``, each setting
            that differs and the three ways on.
    """
    policy = policy or current_policy()
    d = Path(directory)
    record = record_path(d, name)
    paths = [p if Path(p).is_absolute() else d / p for p in map(Path, artifacts)]
    present = [p for p in paths if p.exists()]
    if not present:
        _write_record(record, settings)
        return "fresh"
    try:
        old = read_record(record)
    except WeightSpaceError:
        if not (policy.discard or policy.resume == "force"):
            raise
        old = None
    if old is not None and old["fingerprint"] == digest(settings):
        return "resume"
    if old is None:
        diffs = [f"no fingerprint record ({record}): written by an older wspace or by another command"]
    else:
        diffs = differences(old["settings"], settings) or ["(the settings are recorded differently)"]
    if policy.discard:
        for p in present:
            _remove(p)
        _write_record(record, settings)
        return "fresh"
    if policy.resume == "force":
        _write_record(record, settings, forced=diffs)
        return "forced"
    shown = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "")
    found = ", ".join(str(p.relative_to(d)) if p.is_relative_to(d) else str(p) for p in present)
    raise WeightSpaceError(
        f"{what} in '{d}' ({found}) was computed with other settings: {shown}. To keep it, pass a new out=<dir>; "
        f"to continue from it anyway, resume=force; to discard it and start over, overwrite=true", file=record)
