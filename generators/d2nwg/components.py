"""The parts of a D2NWG pipeline, built from its settings: tokenizer, VAE, denoiser (with its
set encoder), diffusers schedulers and the readout probe."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from wspace.errors import WeightSpaceError
from wspace.spec import WeightSpaceSpec

from ..autoencoders import TokenVAE
from ..conditioning import SetEncoder
from ..denoisers import TokenDenoiser
from ..probe import ReadoutProbe, probe_supported
from ..tokenizer import WeightTokenizer, neuron_centric_supported
from .config import resolve_config
from .latent_norm import LatentNorm

__all__ = ["SAMPLERS", "auto_chunk", "use_neuron_centric", "make_tokenizer", "use_probe", "make_scheduler",
           "build_modules", "make_probe", "token_positions"]

SAMPLERS = ("ddpm", "ddim", "dpm")


def auto_chunk(spec: WeightSpaceSpec, neuron_centric: bool = False) -> int:
    """Longest neuron row (fan-in + bias, + fan-out for neuron-centric tokens of the last
    hidden layer), capped at 128: one token per neuron when possible."""
    rows = [spec.params[l.weight].numel // spec.params[l.weight].shape[0] + (l.bias is not None)
            for l in spec.layers]
    if neuron_centric:
        rows[-2] += spec.layers[-1].out_features
        rows[-1] = spec.layers[-1].out_features
    return min(max(rows), 128)


def use_neuron_centric(config: Mapping, spec: WeightSpaceSpec) -> bool:
    """Resolve ``tokenizer.neuron_centric`` (``"auto"``: when the spec supports it)."""
    v = config["tokenizer"]["neuron_centric"]
    if v == "auto":
        return neuron_centric_supported(spec)
    return bool(v)


def make_tokenizer(spec: WeightSpaceSpec, config: Mapping) -> WeightTokenizer:
    """An unfitted tokenizer for ``spec`` as ``config`` says."""
    tc = config["tokenizer"]
    nc = use_neuron_centric(config, spec)
    return WeightTokenizer(spec, int(tc["chunk_size"] or auto_chunk(spec, nc)), tc["per_neuron"], neuron_centric=nc)


def use_probe(config: Mapping, tokenizer: WeightTokenizer) -> bool:
    """Resolve ``condition.probe`` (``"auto"``: when the tokenizer supports it)."""
    v = config["condition"]["probe"]
    if v == "auto":
        return probe_supported(tokenizer)
    if v and not probe_supported(tokenizer):
        raise WeightSpaceError(f"generator.condition.probe=true needs neuron-centric tokens of a feed-forward "
                               f"network ending in a linear layer (MLP, CNN with global pooling); got {tokenizer!r}")
    return bool(v)


def make_scheduler(kind: str, config: Mapping) -> Any:
    """A diffusers scheduler (``ddpm``, ``ddim`` or ``dpm`` = DPM-Solver++ 2M) from the
    ``scheduler`` settings, never clipping samples."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    base = dict(config)
    base["clip_sample"] = False  # weights and latents are not images in [-1, 1]
    if kind == "ddpm":
        return DDPMScheduler(**base)
    if kind == "ddim":
        return DDIMScheduler(**base)
    if kind == "dpm":
        base.pop("clip_sample")
        return DPMSolverMultistepScheduler(**base, algorithm_type="dpmsolver++", solver_order=2)
    raise WeightSpaceError(f"unknown sampler '{kind}'; choose one of {SAMPLERS}")


def token_positions(tokenizer: WeightTokenizer, config: Mapping) -> torch.Tensor | None:
    """Position index per token: hidden neurons of a layer share one (the modules commute
    with their permutations) unless the zoo is canonicalized, where every position means one
    aligned neuron (None: ``arange(T)``)."""
    return None if config["tokenizer"]["canonicalize"] else tokenizer.layout.role_index


def build_modules(tokenizer: WeightTokenizer, config: Mapping, input_shape: tuple[int, ...],
                  conditional: bool = True) -> tuple[TokenVAE, TokenDenoiser]:
    """Fresh (untrained) VAE and denoiser for ``tokenizer``'s grid; ``conditional=False``
    builds an unconditional denoiser (no set encoder, no probe)."""
    c = resolve_config(config)
    v, d, cond = c["vae"], c["denoiser"], c["condition"]
    positions = token_positions(tokenizer, c)
    vae = TokenVAE(tokenizer.num_tokens, tokenizer.chunk_size, v["latent_dim"], v["d_model"], v["depth"],
                   v["heads"], 0.0, v["input_noise"], v["latent_noise"], positions)
    K = tokenizer.spec.out_features
    enc = SetEncoder(math.prod(input_shape), K, d["d_model"], cond["hidden"], cond["depth"], d["heads"]) \
        if conditional else None
    lay = tokenizer.layout
    slots = torch.where(lay.is_output, lay.neuron_index, torch.full_like(lay.neuron_index, -1))
    probe_dim = 2 * K + 1 if conditional and use_probe(c, tokenizer) else 0
    abar = None
    if c["scheduler"]["prediction_type"] == "sample" and d["precondition"]:
        abar = make_scheduler("ddpm", c["scheduler"]).alphas_cumprod
    den = TokenDenoiser(tokenizer.num_tokens, v["latent_dim"], slots, enc, d["d_model"], d["depth"], d["heads"],
                        d["dropout"], positions, probe_dim, abar, num_classes=K)
    return vae, den


def make_probe(tokenizer: WeightTokenizer, vae: TokenVAE, latent_norm: LatentNorm, config: Mapping) -> ReadoutProbe:
    """The readout probe of a pipeline: decodes the diffusion's (normalized) latents with ``vae``."""
    return ReadoutProbe(tokenizer, lambda z: vae.decode(latent_norm.denormalize(z)), config["condition"]["probe_ridge"])
