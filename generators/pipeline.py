"""The generator interface: one base class every weight generator implements (diffusers-style).

A generator is trained on a zoo, draws networks of one architecture and saves itself to a
directory of JSON + safetensors files::

    pipe = SomeGenerator.train(zoo, "runs/x", config={...})  # writes runs/x/pipeline/
    ws = pipe.sample("digits:0-3-5-7-9", n=16, generator=torch.Generator().manual_seed(0))
    pipe.save_pretrained("runs/x/pipeline")
    pipe = WeightGenerator.from_pretrained("runs/x/pipeline")  # picks the class from model_index.json

``model_index.json`` records the class as an importable path (``"_target_":
"generators.d2nwg.D2NWG"``) plus ``_class_name`` and ``_wspace_version``; the rest of the
index belongs to the subclass. Loading never unpickles. Which classes a saved file may name:

* classes inside the ``generators`` package (their module is imported on demand);
* a class defined elsewhere (your own module, a test) only when its module is already
  imported: a file on disk never makes this library import code outside ``generators``.
  Import your module first, then call ``from_pretrained``.

A user's *config* (``_target_`` of ``configs/train/generator/<name>.yaml``) is trusted like
code: :func:`generator_class` with ``trusted=True`` imports any module it names. Either way
the class must be a concrete subclass of :class:`WeightGenerator`.

Adding a generator: one module implementing this interface plus one config file with its
``_target_`` and defaults; nothing else changes (no registry).
"""
from __future__ import annotations

import abc
import importlib
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, read_json
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

__all__ = ["WeightGenerator", "MODEL_INDEX", "PIPELINE_DIR", "LEGACY_CLASS_NAMES", "class_path", "generator_class",
           "pipeline_directory"]

MODEL_INDEX = "model_index.json"
PIPELINE_DIR = "pipeline"  # ``train(zoo, out)`` saves the trained generator to ``out/pipeline``
PACKAGE = "generators"
# model_index.json files written before `_target_` existed name only their class
LEGACY_CLASS_NAMES = {"D2NWG": "generators.d2nwg.D2NWG"}
RESERVED_INDEX_KEYS = ("_class_name", "_target_", "_wspace_version")

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

G = TypeVar("G", bound="WeightGenerator")


class WeightGenerator(abc.ABC):
    """Base class of weight generators: ``train`` -> ``sample`` -> ``save_pretrained`` / ``from_pretrained``.

    Subclasses implement :attr:`spec`, :meth:`sample`, :meth:`train`,
    :meth:`save_components` and :meth:`load_components`, and set :attr:`name`
    (a short label written into the records of sampled zoos) and :attr:`conditional`.
    """

    name: ClassVar[str] = ""
    conditional: ClassVar[bool] = True  # whether ``sample`` uses its ``condition``

    # ------------------------------------------------------------------ the contract
    @property
    @abc.abstractmethod
    def spec(self) -> WeightSpaceSpec:
        """The architecture of the networks this generator draws."""

    @abc.abstractmethod
    def sample(self, condition: Any = None, n: int = 16, *, generator: torch.Generator | None = None,
               **options: Any) -> WeightSpace:
        """``n`` networks for ``condition`` (a task name, a task object, generator-specific
        tensors, or None for unconditional generators). Deterministic for a seeded CPU
        ``generator``; ``options`` are the generator's own sampling settings."""

    @classmethod
    @abc.abstractmethod
    def train(cls: type[G], zoo: Any, out: str | os.PathLike, config: Mapping[str, Any] | None = None, *,
              seed: int = 0, device: str = "cpu", trainer: Mapping[str, Any] | None = None,
              progress: bool = False, **overrides: Any) -> G:
        """Train on ``zoo`` (a path or a :class:`~datasets_zoo.Zoo`) into ``out`` and save the
        result to ``out/pipeline``. ``config``: the generator's settings (its YAML node;
        ``_target_`` / ``name`` are ignored), ``overrides`` update it; ``trainer``: Lightning
        ``Trainer`` keyword arguments for generators trained with Lightning."""

    @abc.abstractmethod
    def save_components(self, directory: Path) -> dict[str, Any]:
        """Write this generator's files into ``directory`` (it exists); return the JSON-able
        entries of ``model_index.json`` that :meth:`load_components` needs."""

    @classmethod
    @abc.abstractmethod
    def load_components(cls: type[G], directory: Path, index: Mapping[str, Any], device: str | torch.device = "cpu"
                        ) -> G:
        """Rebuild the generator from ``directory`` and its ``model_index.json`` entries."""

    # ------------------------------------------------------------------ defaults
    def sampling_settings(self, **options: Any) -> dict[str, Any]:
        """The effective sampling settings for ``options`` (None: the default), as recorded
        with sampled networks. The base returns the options that were set."""
        return {k: v for k, v in options.items() if v is not None}

    def to(self: G, device: str | torch.device) -> G:
        """Move the generator's tensors to ``device`` (the base holds none)."""
        return self

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the generator to ``directory``: its files, then ``model_index.json``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        entries = self.save_components(d)
        clash = sorted(set(entries) & set(RESERVED_INDEX_KEYS))
        if clash:
            raise WeightSpaceError(f"{type(self).__name__}.save_components returned reserved keys {clash}")
        from wspace import __version__

        index = {"_class_name": type(self).__name__, "_target_": class_path(type(self)),
                 "_wspace_version": __version__, **entries}
        with atomic_write(d / MODEL_INDEX) as f:
            json.dump(index, f, indent=2)
        return d

    @classmethod
    def from_pretrained(cls: type[G], directory: str | os.PathLike, device: str | torch.device = "cpu") -> G:
        """Load a generator written by :meth:`save_pretrained`; the class comes from
        ``model_index.json`` and must be ``cls`` or a subclass of it (see the module
        docstring for which classes a file may name).

        Raises:
            WeightSpaceError: no ``model_index.json``, invalid JSON, an unknown class, a
                class that is not a generator (or not a ``cls``), or files that do not match.
        """
        d = Path(directory)
        f = d / MODEL_INDEX
        index = read_json(f, missing=f"not a generator pipeline directory (no {MODEL_INDEX})")
        if not isinstance(index, dict):
            raise WeightSpaceError(f"{MODEL_INDEX} must hold a JSON object", file=f)
        target = index.get("_target_")
        if target is None:
            name = index.get("_class_name")
            if name not in LEGACY_CLASS_NAMES:
                raise WeightSpaceError(f"names no generator class (no _target_; _class_name {name!r})", file=f)
            target = LEGACY_CLASS_NAMES[name]
        klass = generator_class(target, trusted=False, file=f)
        if not issubclass(klass, cls):
            raise WeightSpaceError(f"holds a '{klass.__name__}', not a {cls.__name__} pipeline", file=f)
        return klass.load_components(d, index, device)


def class_path(cls: type) -> str:
    """The shortest importable dotted path of ``cls`` (``generators.d2nwg.D2NWG`` rather than
    ``generators.d2nwg.pipeline.D2NWG`` when the package re-exports it)."""
    if "<locals>" in cls.__qualname__:
        raise WeightSpaceError(f"{cls.__qualname__} is defined inside a function; define generator classes at "
                               f"module level so that saved pipelines can name them")
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None and "." not in cls.__qualname__ and getattr(mod, cls.__qualname__, None) is cls:
            return f"{'.'.join(parts[:i])}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _may_import(module: str, trusted: bool) -> bool:
    return trusted or module == PACKAGE or module.startswith(PACKAGE + ".") or module in sys.modules


def generator_class(target: str, *, trusted: bool = True, file: str | os.PathLike | None = None
                    ) -> type[WeightGenerator]:
    """The :class:`WeightGenerator` subclass named by ``target`` (``"package.module.Class"``).

    ``trusted`` (a config the user chose): any module may be imported. Untrusted (a saved
    file): only modules inside the ``generators`` package are imported; a class elsewhere
    must already be imported. ``file`` is named in errors.

    Raises:
        WeightSpaceError: a malformed path, nothing importable under it, or not a concrete
            :class:`WeightGenerator` subclass.
    """
    if not isinstance(target, str) or not _DOTTED.match(target):
        raise WeightSpaceError(f"generator _target_ must be a dotted path like 'generators.d2nwg.D2NWG', "
                               f"got {target!r}", file=file)
    parts = target.split(".")
    obj, blocked = None, None
    for i in range(len(parts) - 1, 0, -1):  # longest importable module prefix, then attributes
        module = ".".join(parts[:i])
        if not _may_import(module, trusted):
            blocked = blocked or module
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and (module == e.name or module.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise
        obj = mod
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            break
    if obj is None:
        why = (f"; module '{blocked}' is outside the '{PACKAGE}' package and not imported: a saved file never makes "
               f"this library import it, import it yourself first" if blocked else "")
        raise WeightSpaceError(f"unknown generator class '{target}'{why}", file=file)
    if not (inspect.isclass(obj) and issubclass(obj, WeightGenerator)):
        raise WeightSpaceError(f"'{target}' is not a generator class (a subclass of "
                               f"generators.pipeline.WeightGenerator)", file=file)
    if inspect.isabstract(obj):
        raise WeightSpaceError(f"'{target}' is an abstract generator class", file=file)
    return obj


def pipeline_directory(checkpoint: str | os.PathLike) -> Path:
    """The pipeline directory of ``checkpoint``: itself, or ``checkpoint/pipeline`` when
    ``checkpoint`` is a training output directory (what ``train`` wrote)."""
    d = Path(checkpoint)
    if not (d / MODEL_INDEX).is_file() and (d / PIPELINE_DIR / MODEL_INDEX).is_file():
        return d / PIPELINE_DIR
    if not d.exists():
        raise WeightSpaceError("no such generator checkpoint directory", file=d)
    return d
