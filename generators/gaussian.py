"""A per-parameter Gaussian fitted to a zoo: the simplest weight generator (p-diff's "gaussian"
baseline, Wang et al. 2024), as a trainable, saveable pipeline.

Every parameter gets an independent normal distribution with the mean and std of that
parameter over the training checkpoints; with ``aligned: true`` the checkpoints are first
permuted onto a common reference (Git Re-Basin weight matching onto their aligned average,
:func:`generators.tokenizer.canonicalize`), a tighter, symmetry-aware fit. Unconditional:
``sample`` accepts any condition (a task, so that ``wspace sample task=...`` can score the
networks) and ignores it. Draws are those of :func:`wspace.audit.baselines.gaussian_baseline`
(same arithmetic, same random stream), from stored statistics instead of the zoo.

It is also the worked example of adding a generator: this module plus
``configs/train/generator/gaussian.yaml``, nothing else::

    wspace train generator=gaussian zoo=zoos/digits-tasks out=runs/gauss
    wspace sample checkpoint=runs/gauss task=digits:0-3-5-7-9 n=16 out=runs/gauss-samples
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from wspace.audit.baselines import fit_gaussian, sample_gaussian
from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, load_weight_space, save_weight_space
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from .config import generator_defaults, merge_settings, user_settings
from .fitting import Stage, settle_stages
from .pipeline import PIPELINE_DIR, WeightGenerator, class_path
from .selection import select_checkpoints
from .tokenizer import canonicalize

__all__ = ["GaussianGenerator"]

MEAN_FILE, STD_FILE = "mean.safetensors", "std.safetensors"
# one stage, whose result is the pipeline itself; its fingerprint covers every setting and this code
STAGES = (Stage("pipeline", None, (PIPELINE_DIR,)),)
CODE = ("generators.gaussian", "generators.selection", "generators.tokenizer", "wspace.audit.baselines", "wspace.align")


class GaussianGenerator(WeightGenerator):
    """Independent ``N(mean, std^2)`` per parameter (see the module docstring).

    ``mean`` / ``std``: one network each (B = 1, float64); ``dtype``: the dtype of the
    networks drawn (the zoo's).
    """

    name = "gaussian"
    conditional = False

    def __init__(self, mean: WeightSpace, std: WeightSpace, config: Mapping[str, Any] | None = None,
                 dtype: torch.dtype = torch.float32):
        if len(mean) != 1 or len(std) != 1 or not mean.spec.same_space(std.spec):
            raise WeightSpaceError("a Gaussian generator needs one mean and one std network of one architecture")
        if any(bool((t < 0).any()) for t in std.tensors):
            raise WeightSpaceError("a Gaussian generator's stds must be non-negative")
        self.mean, self.std = mean.to(torch.float64), std.to(torch.float64)
        self.config = self.resolve_config(config)
        self.dtype = dtype

    # ------------------------------------------------------------------ settings
    @staticmethod
    def resolve_config(config: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
        """The defaults of ``configs/train/generator/gaussian.yaml`` merged with ``config``
        and ``overrides`` (unknown keys raise)."""
        cfg = merge_settings(generator_defaults("gaussian"), user_settings(config), "gaussian")
        return merge_settings(cfg, overrides, "gaussian")

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, ws: WeightSpace, *, aligned: bool = False, seed: int = 0,
            config: Mapping[str, Any] | None = None) -> "GaussianGenerator":
        """The Gaussian of the networks ``ws`` (in their aligned frame when ``aligned``)."""
        if not isinstance(ws, WeightSpace) or len(ws) < 2:
            raise WeightSpaceError("a Gaussian generator is fitted on a WeightSpace of at least two networks")
        src = ws.detach()
        if aligned:
            src, _ = canonicalize(src, seed=seed)
        mean, std = fit_gaussian(src)
        return cls(mean, std, {**dict(config or {}), "aligned": bool(aligned)}, ws.dtype)

    @classmethod
    def train(cls, zoo: Any, out: str | os.PathLike, config: Mapping[str, Any] | None = None, *, seed: int = 0,
              device: str = "cpu", trainer: Mapping[str, Any] | None = None, progress: bool = False,
              **overrides: Any) -> "GaussianGenerator":
        """Fit on the checkpoints of ``zoo`` that ``config["data"]`` selects; save to
        ``out/pipeline`` (``trainer`` and ``progress`` are not used: there is nothing to iterate).

        A rerun into an ``out`` that holds a pipeline fitted with other settings (or another
        generator) refuses before fitting (:func:`generators.fitting.settle_stages`; see
        :mod:`wspace.fingerprint` for ``resume=force`` / ``overwrite=true``)."""
        cfg = cls.resolve_config(config, **overrides)
        settle_stages(out, zoo, cfg, STAGES, generator=class_path(cls), seed=seed, code=CODE, ignore=())
        z, idx = select_checkpoints(zoo, cfg["data"], seed)
        ws = z.weights(idx)
        pipe = cls.fit(ws, aligned=bool(cfg["aligned"]), seed=seed, config=cfg)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "training_data.json") as f:
            json.dump({"zoo": str(z.path), "checkpoints": len(ws), "aligned": bool(cfg["aligned"])}, f, indent=2)
        pipe.save_pretrained(out / PIPELINE_DIR)
        return pipe.to(device)

    # ------------------------------------------------------------------ sampling
    @property
    def spec(self) -> WeightSpaceSpec:
        return self.mean.spec

    def to(self, device: str | torch.device) -> "GaussianGenerator":
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    @torch.no_grad()
    def sample(self, condition: Any = None, n: int = 16, *, generator: torch.Generator | None = None,
               **options: Any) -> WeightSpace:
        """``n`` independent draws (``condition`` is ignored: the model is unconditional).
        Deterministic for a seeded CPU ``generator`` (default: seed 0). There are no other
        sampling options: any that is set raises."""
        unknown = sorted(k for k, v in options.items() if v is not None)
        if unknown:
            raise WeightSpaceError(f"the gaussian generator has no sampling options {unknown}")
        if not isinstance(n, int) or n < 1:
            raise WeightSpaceError(f"n must be a positive integer, got {n!r}")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        return sample_gaussian(self.mean, self.std, n, generator=generator, dtype=self.dtype)

    def sampling_settings(self, **options: Any) -> dict[str, Any]:
        return {"aligned": bool(self.config["aligned"]), **super().sampling_settings(**options)}

    # ------------------------------------------------------------------ persistence
    def save_components(self, directory: Path) -> dict[str, Any]:
        save_weight_space(self.mean.to("cpu"), Path(directory) / MEAN_FILE)
        save_weight_space(self.std.to("cpu"), Path(directory) / STD_FILE)
        return {"config": self.config, "dtype": str(self.dtype).removeprefix("torch.")}

    @classmethod
    def load_components(cls, directory: Path, index: Mapping[str, Any], device: str | torch.device = "cpu"
                        ) -> "GaussianGenerator":
        d = Path(directory)
        dtype = getattr(torch, str(index.get("dtype", "float32")), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise WeightSpaceError(f"unknown dtype {index.get('dtype')!r}", file=d / "model_index.json")
        mean, std = load_weight_space(d / MEAN_FILE), load_weight_space(d / STD_FILE)
        return cls(mean, std, index.get("config"), dtype).to(device)

    def __repr__(self) -> str:
        frame = "aligned" if self.config["aligned"] else "raw"
        return f"GaussianGenerator({self.spec.describe()}, {frame} frame)"
