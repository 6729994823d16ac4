"""Training of a D2NWG pipeline: data selection, then two Lightning stages.

* ``vae``: :class:`~generators.autoencoders.TokenVAE` on the zoo's tokens, structure +
  behaviour loss (:class:`~generators.d2nwg.vae_stage.VAEStage`);
* ``diffusion``: the denoiser (with its set encoder and, for neuron-centric tokens of
  feed-forward MLPs / CNNs, the readout probe of :mod:`generators.probe`) on the VAE's
  scaled latent means (:class:`~generators.d2nwg.diffusion_stage.DiffusionStage`).
  Zoos without classification tasks (INRs) train an unconditional denoiser
  (``condition.mode``).

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
from .components import build_modules, make_probe, make_tokenizer, token_positions
from .latent_norm import LatentNorm

__all__ = ["prepare_data", "fit_stages", "TrainedParts", "condition_mode", "query_inputs", "CONDITION_MODES", "STAGES",
           "CODE"]

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
    latent_norm: LatentNorm
    input_shape: tuple[int, ...]
    reference: WeightSpace | None


# --------------------------------------------------------------------------- data
CONDITION_MODES = ("auto", "task", "none")


def condition_mode(cfg: Mapping, tasks: list) -> str:
    """``task`` or ``none``: ``condition.mode``, with ``auto`` resolved from the tasks of the
    training records (``task`` when every one is a classification task)."""
    mode = cfg["condition"]["mode"]
    if mode not in CONDITION_MODES:
        raise WeightSpaceError(f"generator.condition.mode must be one of {CONDITION_MODES}, got {mode!r}")
    classif = bool(tasks) and all(getattr(t, "kind", None) == "classification" for t in tasks)
    if mode == "auto":
        return "task" if classif else "none"
    if mode == "task" and not classif:
        kinds = sorted({getattr(t, "kind", "none") for t in tasks}) if tasks else ["no task names"]
        raise WeightSpaceError(f"generator.condition.mode=task needs classification tasks on every training "
                               f"record; this zoo has {kinds}; use generator.condition.mode=none (unconditional)")
    return mode


def query_inputs(tasks: list, size: int, seed: int) -> torch.Tensor | None:
    """Inputs ``[N, *input]`` the behaviour loss runs the networks on: up to ``size`` training
    inputs pooled over the classification ``tasks``, or the coordinate grid of INR tasks."""
    if size <= 0 or not tasks:
        return None
    if all(getattr(t, "kind", None) == "inr" for t in tasks):
        return tasks[0].coords.float()
    if not all(getattr(t, "kind", None) == "classification" for t in tasks):
        return None
    x = torch.cat([t.x_train for t in tasks]).float()
    x = torch.unique(x.reshape(len(x), -1), dim=0).reshape(-1, *x.shape[1:])  # tasks share their pooled inputs
    g = torch.Generator().manual_seed(seed + 101)
    return x[torch.randperm(len(x), generator=g)[:size]]


def prepare_data(zoo: Any, cfg: Mapping, seed: int = 0) -> dict:
    """Select the training checkpoints of ``zoo`` (``cfg["data"]``) and load their weights and
    tasks; ``mode`` says whether the generator is conditioned on the tasks."""
    from datasets_zoo.tasks import get_task

    z, idx = select_checkpoints(zoo, cfg["data"], seed)
    recs = z.records
    ws = z.weights(idx).to(torch.float32)
    names = [recs[i].get("task") for i in idx]
    uniq = sorted(set(n for n in names if n is not None))
    tasks = [get_task(n) for n in uniq]
    mode = condition_mode(cfg, tasks if len(uniq) and None not in names else [])
    out = {"ws": ws, "mode": mode, "tasks": tasks, "task_names": uniq, "zoo_path": str(z.path),
           "query": query_inputs(tasks, int(cfg["vae"]["query_size"]), seed)}
    if mode == "none":
        out.update(task_ids=torch.zeros(len(ws), dtype=torch.long), input_shape=(ws.spec.in_features,))
        return out
    shapes = {tuple(t.input_shape) for t in tasks}
    if len(shapes) != 1:
        raise WeightSpaceError(f"the training tasks mix input shapes {sorted(shapes)}", file=z.path)
    out.update(task_ids=torch.tensor([uniq.index(n) for n in names]), input_shape=shapes.pop())
    return out


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
    conditional = data["mode"] == "task"
    reference = None
    if cfg["tokenizer"]["canonicalize"]:
        ws, reference = canonicalize(ws, seed=seed)
    tok = make_tokenizer(ws.spec, cfg).fit(ws)
    tokens = tok.tokenize(ws, dtype=torch.float32)
    vae, den = build_modules(tok, cfg, data["input_shape"], conditional)
    with atomic_write(out / "training_data.json") as f:
        json.dump({"zoo": data["zoo_path"], "checkpoints": len(ws), "tasks": data["task_names"],
                   "condition": data["mode"], "tokens": [tok.num_tokens, tok.chunk_size],
                   "query_inputs": 0 if data["query"] is None else len(data["query"])}, f, indent=2)

    # stage 1: VAE (structure + behaviour on the query inputs)
    every = int(cfg["checkpoint_every"])
    vae_file = out / "stages" / "vae.safetensors"
    if vae_file.is_file():
        vae.load_state_dict(load_safetensors(vae_file)[0])
    else:
        v = cfg["vae"]
        fit_stage(VAEStage(vae, tok, v, data["query"]), "vae", out, int(v["steps"]),
                  random_batches((tokens,), v["batch_size"], seed), trainer, every, progress)
        save_safetensors(vae_file, {k: t.detach().cpu() for k, t in vae.state_dict().items()})
    vae = vae.cpu().eval()
    with torch.no_grad():
        mu = torch.cat([vae.encode(tokens[a:a + 1024])[0] for a in range(0, len(tokens), 1024)])
    norm = LatentNorm.fit(mu, cfg["denoiser"]["latent_norm"], token_positions(tok, cfg))  # groups = positions
    latents = norm.normalize(mu)

    seed_stage(seed, "condition")  # the same random state whether the VAE was trained now or reused
    shots = ShotSampler.from_tasks(data["tasks"], cfg["condition"]["max_per_class"], seed) if conditional else None
    # optional: contrastive pre-alignment of the set encoder with the weight latents (D2NWG)
    n_con = int(cfg["condition"]["contrastive_steps"])
    if n_con > 0 and conditional:
        _contrastive(den.set_encoder, latents, data["task_ids"], shots, cfg, n_con, seed)

    # stage 2: latent diffusion
    den_file = out / "stages" / "denoiser.safetensors"
    if den_file.is_file():
        den.load_state_dict(load_safetensors(den_file)[0])
    else:
        d = cfg["denoiser"]
        probe = make_probe(tok, vae, norm, cfg) if den.probe_dim else None
        module = DiffusionStage(den, shots, d, cfg["condition"], cfg["scheduler"], seed, probe)
        fit_stage(module, "diffusion", out, int(d["steps"]),
                  random_batches((latents, data["task_ids"]), d["batch_size"], seed + 1), trainer, every, progress)
        module.ema.copy_to(den.parameters())  # sample with the EMA weights
        save_safetensors(den_file, {k: t.detach().cpu() for k, t in den.state_dict().items()})
    return TrainedParts(tok, vae, den.cpu(), norm, tuple(data["input_shape"]), reference)


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
