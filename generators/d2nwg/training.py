"""Training of a D2NWG pipeline: data selection, then two Lightning stages.

* ``vae``: :class:`~generators.autoencoders.TokenVAE` on the zoo's tokens
  (:class:`~generators.d2nwg.vae_stage.VAEStage`);
* ``diffusion``: the denoiser (with its set encoder and, for neuron-centric tokens of
  one-hidden-layer networks, the readout probe of :mod:`generators.probe`) on the VAE's
  scaled latent means (:class:`~generators.d2nwg.diffusion_stage.DiffusionStage`).

Between them, the optional contrastive pre-alignment of the set encoder with the latents.
Each stage runs a fixed number of steps with resumable checkpoints and CSV logs
(:func:`generators.fitting.fit_stage`); a finished stage's weights are kept in
``out/stages/<stage>.safetensors`` and reused by a rerun. :meth:`D2NWG.train
<generators.d2nwg.D2NWG.train>` assembles the pipeline from what :func:`fit_stages` returns.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, load_safetensors, save_safetensors
from wspace.space import WeightSpace

from ..autoencoders import TokenVAE
from ..conditioning import ShotSampler, contrastive_loss
from ..denoisers import TokenDenoiser
from ..fitting import Stage, fit_stage, random_batches, seed_stage, settle_stages, stage_trainer_kwargs
from ..selection import select_checkpoints
from ..tokenizer import WeightTokenizer, canonicalize
from .components import build_modules, make_probe, make_tokenizer

__all__ = ["prepare_data", "fit_stages", "TrainedParts", "STAGES", "CODE"]

# The stages, the config keys each depends on and what each leaves in `out`: their fingerprints
# are checked before any work starts (generators.fitting.settle_stages), so a rerun never reuses
# a stage trained with other settings. CODE: the modules whose source is part of the fingerprint.
STAGES = (Stage("vae", ("data", "tokenizer", "vae"), ("stages/vae.safetensors", "checkpoints/vae", "logs/vae")),
          Stage("diffusion", None, ("stages/denoiser.safetensors", "checkpoints/diffusion", "logs/diffusion")),
          Stage("pipeline", (), ("pipeline",)))
CODE = ("generators.d2nwg", "generators.autoencoders", "generators.conditioning", "generators.denoisers",
        "generators.fitting", "generators.probe", "generators.selection", "generators.tokenizer")


@dataclass
class TrainedParts:
    """What :func:`fit_stages` trains: everything a :class:`~generators.d2nwg.D2NWG` holds."""

    tokenizer: WeightTokenizer
    vae: TokenVAE
    denoiser: TokenDenoiser
    latent_scale: float
    input_shape: tuple[int, ...]
    reference: WeightSpace | None


# --------------------------------------------------------------------------- data
def prepare_data(zoo: Any, cfg: Mapping, seed: int = 0) -> dict:
    """Select the training checkpoints of ``zoo`` (``cfg["data"]``) and load their weights and tasks."""
    from datasets_zoo.tasks import get_task

    z, idx = select_checkpoints(zoo, cfg["data"], seed)
    recs = z.records
    ws = z.weights(idx).to(torch.float32)
    names = [recs[i].get("task") for i in idx]
    if any(n is None for n in names):
        raise WeightSpaceError("dataset conditioning needs a task name on every record", file=z.path)
    uniq = sorted(set(names))
    tasks = [get_task(n) for n in uniq]
    shapes = {tuple(t.input_shape) for t in tasks}
    if len(shapes) != 1:
        raise WeightSpaceError(f"the training tasks mix input shapes {sorted(shapes)}", file=z.path)
    task_ids = torch.tensor([uniq.index(n) for n in names])
    return {"ws": ws, "task_names": uniq, "tasks": tasks, "task_ids": task_ids, "input_shape": shapes.pop(),
            "zoo_path": str(z.path)}


# --------------------------------------------------------------------------- stages
def fit_stages(zoo: Any, out: Path, cfg: Mapping, *, seed: int = 0, device: str = "cpu",
               trainer: Mapping[str, Any] | None = None, progress: bool = False) -> TrainedParts:
    """Train every stage into ``out`` (see the module docstring); the modules come back on the CPU."""
    from .diffusion_stage import DiffusionStage
    from .vae_stage import VAEStage

    trainer = stage_trainer_kwargs(trainer, device)
    settle_stages(out, zoo, cfg, STAGES, generator="generators.d2nwg.D2NWG", seed=seed, trainer=trainer, code=CODE)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(zoo, cfg, seed)
    ws = data["ws"]
    reference = None
    if cfg["tokenizer"]["canonicalize"]:
        ws, reference = canonicalize(ws, seed=seed)
    tok = make_tokenizer(ws.spec, cfg).fit(ws)
    tokens = tok.tokenize(ws, dtype=torch.float32)
    vae, den = build_modules(tok, cfg, data["input_shape"])
    with atomic_write(out / "training_data.json") as f:
        json.dump({"zoo": data["zoo_path"], "checkpoints": len(ws), "tasks": data["task_names"],
                   "tokens": [tok.num_tokens, tok.chunk_size]}, f, indent=2)

    # stage 1: VAE
    every = int(cfg["checkpoint_every"])
    vae_file = out / "stages" / "vae.safetensors"
    if vae_file.is_file():
        vae.load_state_dict(load_safetensors(vae_file)[0])
    else:
        v = cfg["vae"]
        fit_stage(VAEStage(vae, tok.mask, v), "vae", out, int(v["steps"]),
                  random_batches((tokens,), v["batch_size"], seed), trainer, every, progress)
        save_safetensors(vae_file, {k: t.detach().cpu() for k, t in vae.state_dict().items()})
    vae = vae.cpu().eval()
    with torch.no_grad():
        mu = torch.cat([vae.encode(tokens[a:a + 1024])[0] for a in range(0, len(tokens), 1024)])
    scale = 1.0 / float(mu.std().clamp_min(1e-6))
    latents = mu * scale

    seed_stage(seed, "condition")  # the same random state whether the VAE was trained now or reused
    shots = ShotSampler.from_tasks(data["tasks"], cfg["condition"]["max_per_class"], seed)
    # optional: contrastive pre-alignment of the set encoder with the weight latents (D2NWG)
    n_con = int(cfg["condition"]["contrastive_steps"])
    if n_con > 0:
        _contrastive(den.set_encoder, latents, data["task_ids"], shots, cfg, n_con, seed)

    # stage 2: latent diffusion
    den_file = out / "stages" / "denoiser.safetensors"
    if den_file.is_file():
        den.load_state_dict(load_safetensors(den_file)[0])
    else:
        d = cfg["denoiser"]
        probe = make_probe(tok, vae, scale, cfg) if den.probe_dim else None
        module = DiffusionStage(den, shots, d, cfg["condition"], cfg["scheduler"], seed, probe)
        fit_stage(module, "diffusion", out, int(d["steps"]),
                  random_batches((latents, data["task_ids"]), d["batch_size"], seed + 1), trainer, every, progress)
        module.ema.copy_to(den.parameters())  # sample with the EMA weights
        save_safetensors(den_file, {k: t.detach().cpu() for k, t in den.state_dict().items()})
    return TrainedParts(tok, vae, den.cpu(), scale, tuple(data["input_shape"]), reference)


def _contrastive(enc: torch.nn.Module, latents: torch.Tensor, task_ids: torch.Tensor, shots: ShotSampler,
                 cfg: Mapping, steps: int, seed: int) -> None:
    """CLIP-style pre-alignment of the set encoder's pooled embedding with the latents."""
    d = enc.rho.out_features
    proj_w = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(latents[0].numel(), d))
    proj_c = torch.nn.Linear(d, d)
    params = list(enc.parameters()) + list(proj_w.parameters()) + list(proj_c.parameters())
    opt = torch.optim.AdamW(params, lr=float(cfg["condition"]["contrastive_lr"]))
    g = torch.Generator().manual_seed(seed + 31)
    n, bs = len(latents), min(len(latents), int(cfg["denoiser"]["batch_size"]))
    for _ in range(steps):
        i = torch.randperm(n, generator=g)[:bs]
        _, pooled = enc(shots.draw(task_ids[i], int(cfg["condition"]["shots"]), g))
        loss = contrastive_loss(proj_c(pooled), proj_w(latents[i]))
        opt.zero_grad()
        loss.backward()
        opt.step()
