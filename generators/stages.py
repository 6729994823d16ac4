"""Training of a :class:`~generators.d2nwg.D2NWG` pipeline with Lightning.

Two stages, each a ``LightningModule`` trained for a fixed number of steps with
checkpoints (``out/checkpoints/<stage>/last.ckpt``, resumed automatically), CSV logs
(``out/logs/<stage>``) and an optional progress bar:

* ``vae``: :class:`~generators.autoencoders.TokenVAE` on the zoo's tokens;
* ``diffusion``: the denoiser (with its set encoder and, for neuron-centric tokens of
  one-hidden-layer networks, the readout probe of :mod:`generators.probe`) on the VAE's
  scaled latent means,
  DDPM noise from diffusers' ``DDPMScheduler``, condition dropout for classifier-free
  guidance, diffusers' ``EMAModel`` of the weights (the EMA is what gets saved).

Between them, the optional contrastive pre-alignment of the set encoder with the latents.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, load_safetensors, save_safetensors
from wspace.schedules import warmup_cosine_factor

from .conditioning import ShotSampler, contrastive_loss
from .tokenizer import canonicalize

__all__ = ["prepare_data", "fit_pipeline"]


# --------------------------------------------------------------------------- data
def prepare_data(zoo: Any, cfg: dict, seed: int = 0) -> dict:
    """Select the training checkpoints of ``zoo`` and load their weights and tasks."""
    from datasets_zoo import Zoo
    from datasets_zoo.tasks import get_task

    z = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    data = cfg["data"]
    recs = z.records
    keep = np.ones(len(recs), dtype=bool)
    if data["tasks"] is not None:
        allowed = set(data["tasks"])
        keep &= np.array([r.get("task") in allowed for r in recs])
    elif data["split"] is not None and any("split" in r for r in recs):
        keep &= np.array([r.get("split") == data["split"] for r in recs])
    if data["exclude_tasks"]:
        banned = set(data["exclude_tasks"])
        keep &= np.array([r.get("task") not in banned for r in recs])
    if data["epochs"] is not None:
        ep = set(int(e) for e in data["epochs"])
        keep &= np.array([r.get("epoch") in ep for r in recs])
    if data["min_test_acc"] is not None:
        keep &= np.array([(r.get("metrics") or {}).get("test_acc", 0.0) >= float(data["min_test_acc"]) for r in recs])
    keep &= np.array([not (r.get("metrics") or {}).get("diverged", False) for r in recs])
    idx = np.flatnonzero(keep)
    sids = [recs[i].get("spec_id") for i in idx]
    if len(set(sids)) > 1:  # a generator models one architecture: keep the selection's most common one
        top = z.select(idx).most_common_spec_id()
        idx = np.array([i for i, s in zip(idx, sids) if s == top], dtype=np.int64)
    if data["max_models"] is not None and len(idx) > int(data["max_models"]):
        idx = np.sort(np.random.RandomState(seed).choice(idx, int(data["max_models"]), replace=False))
    if len(idx) < 2:
        raise WeightSpaceError(f"only {len(idx)} checkpoint(s) of the zoo match the training selection {data}",
                               file=z.path)
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


class _RandomBatches(torch.utils.data.IterableDataset):
    """Endless random mini-batches of in-memory tensors (no per-item collation)."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int):
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        n = len(self.tensors[0])
        while True:
            perm = torch.randperm(n, generator=g)
            for a in range(0, n - min(self.batch_size, n) + 1, min(self.batch_size, n)):
                i = perm[a:a + min(self.batch_size, n)]
                yield tuple(t[i] for t in self.tensors)


def _loader(tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int):
    return torch.utils.data.DataLoader(_RandomBatches(tensors, batch_size, seed), batch_size=None)


def _cosine(opt: torch.optim.Optimizer, total: int, warmup: int):
    f = functools.partial(warmup_cosine_factor, total=total, warmup=warmup, floor=0.05)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, f), "interval": "step"}


# --------------------------------------------------------------------------- lightning modules
def _lightning():
    import lightning as L

    return L


def _vae_module(vae, mask: torch.Tensor, c: dict):
    L = _lightning()

    class VAEStage(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.vae = vae
            self.register_buffer("mask", mask, persistent=False)

        def training_step(self, batch, _):
            loss, parts = self.vae(batch[0], self.mask, c["kl_weight"])
            self.log_dict({"train/loss": loss, "train/mse": parts["mse"], "train/kl": parts["kl"]},
                          prog_bar=True, on_step=True)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.vae.parameters(), lr=c["lr"], weight_decay=0.0)
            return {"optimizer": opt, "lr_scheduler": _cosine(opt, c["steps"], 50)}

    return VAEStage()


def _diffusion_module(denoiser, shots: ShotSampler, c: dict, cond_cfg: dict, sched_cfg: dict, seed: int,
                      probe=None):
    L = _lightning()
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    class DiffusionStage(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.denoiser = denoiser
            self.sched = DDPMScheduler(**sched_cfg, clip_sample=False)
            self.ema = EMAModel(self.denoiser.parameters(), decay=c["ema_decay"], use_ema_warmup=True, power=0.75)
            self.gen = torch.Generator().manual_seed(seed + 17)

        def training_step(self, batch, _):
            z, tid = batch
            B = z.shape[0]
            x = shots.draw(tid.cpu(), cond_cfg["shots"], self.gen).to(z.device)
            cond = self.denoiser.condition_tokens(x)
            drop = torch.rand(B, device=z.device) < c["cond_drop"]
            noise = torch.randn_like(z)
            t = torch.randint(0, self.sched.config.num_train_timesteps, (B,), device=z.device)
            zt = self.sched.add_noise(z, noise, t)
            pr = None
            if probe is not None:  # as at sampling time: probe the shrinkage estimate sqrt(abar) z_t
                ab = self.sched.alphas_cumprod.to(z.device)[t].sqrt()[:, None, None]
                pr = probe(zt * ab, x)
            target = noise if self.sched.config.prediction_type == "epsilon" else \
                self.sched.get_velocity(z, noise, t) if self.sched.config.prediction_type == "v_prediction" else z
            loss = torch.nn.functional.mse_loss(self.denoiser(zt, t, cond, drop, pr), target)
            self.log("train/loss", loss, prog_bar=True, on_step=True)
            return loss

        def on_train_batch_end(self, *args):
            self.ema.step(self.denoiser.parameters())

        def on_save_checkpoint(self, checkpoint):
            checkpoint["ema"] = self.ema.state_dict()

        def on_load_checkpoint(self, checkpoint):
            if "ema" in checkpoint:
                self.ema.load_state_dict(checkpoint["ema"])

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.denoiser.parameters(), lr=c["lr"], weight_decay=0.0)
            return {"optimizer": opt, "lr_scheduler": _cosine(opt, c["steps"], c["warmup"])}

    return DiffusionStage()


def _fit(module, stage: str, out: Path, steps: int, loader, trainer_kwargs: dict, every: int, progress: bool) -> None:
    L = _lightning()
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    kw = {k: v for k, v in trainer_kwargs.items() if k not in ("max_epochs", "max_steps", "logger", "callbacks",
                                                                 "default_root_dir")}
    kw.setdefault("accelerator", "cpu")
    kw.setdefault("devices", 1)
    kw["enable_progress_bar"] = bool(kw.get("enable_progress_bar", True) and progress)
    kw["log_every_n_steps"] = max(1, min(int(kw.get("log_every_n_steps") or 10), steps))
    ckdir = out / "checkpoints" / stage
    cb = ModelCheckpoint(dirpath=ckdir, save_last=True, every_n_train_steps=max(1, every), save_top_k=0)
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=CSVLogger(str(out / "logs"), name=stage, version=0),
                        callbacks=[cb], enable_model_summary=False, default_root_dir=str(out),
                        num_sanity_val_steps=0, **kw)
    last = ckdir / "last.ckpt"
    # resuming reads our own Lightning checkpoint (written by this function) from `out`
    trainer.fit(module, loader, ckpt_path=str(last) if last.is_file() else None)


# --------------------------------------------------------------------------- pipeline
def fit_pipeline(zoo: Any, out: Path, cfg: dict, *, seed: int = 0, device: str = "cpu",
                 trainer: dict | None = None, progress: bool = False):
    """Train every stage into ``out`` and return the :class:`~generators.d2nwg.D2NWG`."""
    from .d2nwg import D2NWG, make_probe, make_tokenizer

    torch.manual_seed(seed)
    trainer = dict(trainer or {})
    if trainer.get("accelerator", "auto") == "auto":  # as `wspace train` does for encoders: device= decides
        from wspace.devices import trainer_device

        trainer.update(trainer_device(device))
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(zoo, cfg, seed)
    ws = data["ws"]
    tc = cfg["tokenizer"]
    reference = None
    if tc["canonicalize"]:
        ws, reference = canonicalize(ws, seed=seed)
    tok = make_tokenizer(ws.spec, cfg).fit(ws)
    tokens = tok.tokenize(ws, dtype=torch.float32)
    vae, den = D2NWG.build_modules(tok, cfg, data["input_shape"])
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
        _fit(_vae_module(vae, tok.mask, v), "vae", out, int(v["steps"]), _loader((tokens,), v["batch_size"], seed),
             trainer, every, progress)
        save_safetensors(vae_file, {k: t.detach().cpu() for k, t in vae.state_dict().items()})
    vae = vae.cpu().eval()
    with torch.no_grad():
        mu = torch.cat([vae.encode(tokens[a:a + 1024])[0] for a in range(0, len(tokens), 1024)])
    scale = 1.0 / float(mu.std().clamp_min(1e-6))
    latents = mu * scale

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
        module = _diffusion_module(den, shots, d, cfg["condition"], cfg["scheduler"], seed, probe)
        _fit(module, "diffusion", out, int(d["steps"]), _loader((latents, data["task_ids"]), d["batch_size"], seed + 1),
             trainer, every, progress)
        module.ema.copy_to(den.parameters())  # sample with the EMA weights
        save_safetensors(den_file, {k: t.detach().cpu() for k, t in den.state_dict().items()})
    pipe = D2NWG(tok, vae, den.cpu(), cfg, scale, data["input_shape"], reference)
    pipe.save_pretrained(out / "pipeline")
    return pipe.to(device)


def _contrastive(enc, latents: torch.Tensor, task_ids: torch.Tensor, shots: ShotSampler, cfg: dict, steps: int,
                 seed: int) -> None:
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
