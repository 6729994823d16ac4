"""p-diff (Wang et al. 2024, "Neural Network Diffusion") as a baseline generator.

p-diff's recipe: checkpoints of the *last epochs of one training run* (the paper saves 200
during its last epoch), an autoencoder over the flattened parameters made robust by small
noise on its input (0.001) and on its latent (0.1), and an unconditional DDPM over the
latents. Its samples are known to be near-copies of the training checkpoints (Zeng et al.
2025, "Generative Modeling of Weights: Generalization or Memorization?"): the baseline the
audit must catch (``benchmarks/pdiff_audit.py``).

Here the recipe runs on D2NWG's parts (:class:`~generators.d2nwg.D2NWG`): the same
tokenizer (flat per-layer chunks instead of neuron tokens), the token VAE with p-diff's two
noises and no behaviour loss, and the transformer denoiser without condition; p-diff's own
networks are 1D convolutions, so this is p-diff's *training recipe*, not its architecture.
Its settings are ``configs/train/generator/pdiff.yaml`` (D2NWG's, with p-diff's changes)::

    wspace train generator=pdiff zoo=zoos/one-run-trajectory out=runs/pdiff

    from generators.pdiff import PDiff
    pipe = PDiff.train("zoos/one-run-trajectory", "runs/pdiff")
    ws = pipe.sample(None, n=100, generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from .config import generator_defaults, generator_own_settings, merge_settings, user_settings
from .d2nwg import D2NWG

__all__ = ["PDiff", "PDIFF_SETTINGS"]

# p-diff's recipe: what configs/train/generator/pdiff.yaml changes in D2NWG's settings (read from there)
PDIFF_SETTINGS: dict[str, Any] = generator_own_settings("pdiff")


class PDiff(D2NWG):
    """A D2NWG pipeline trained with p-diff's recipe (:data:`PDIFF_SETTINGS`); samples and
    saves like :class:`~generators.d2nwg.D2NWG`."""

    name = "pdiff"

    @classmethod
    def train(cls, zoo: Any, out: str | os.PathLike, config: Mapping[str, Any] | None = None, *, seed: int = 0,
              device: str = "cpu", trainer: Mapping[str, Any] | None = None, progress: bool = False,
              **overrides: Any) -> "PDiff":
        """Train on ``zoo`` (the checkpoints of one run's last epochs, as p-diff does) into
        ``out``: :meth:`D2NWG.train` with :data:`PDIFF_SETTINGS` under ``config`` / ``overrides``."""
        cfg = merge_settings(generator_defaults("pdiff"), user_settings(config), "p-diff")
        return super().train(zoo, out, cfg, seed=seed, device=device, trainer=trainer, progress=progress,
                             **overrides)
