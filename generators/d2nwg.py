"""D2NWG-style latent weight diffusion conditioned on a task's data.

Pipeline (Soro et al., ICLR 2025, rebuilt on this library's parts):

1. :class:`~generators.tokenizer.WeightTokenizer`: networks -> standardized tokens
   (optionally canonicalized with Git Re-Basin first);
2. :class:`~generators.autoencoders.TokenVAE`: tokens -> latent tokens;
3. :class:`~generators.denoisers.TokenDenoiser`: a transformer that denoises latent tokens,
   conditioned by a :class:`~generators.conditioning.SetEncoder` over a few labelled
   samples per class of the target task, with classifier-free guidance;
4. diffusers schedulers: ``DDPMScheduler`` for training (and 1,000-step ancestral
   sampling), ``DDIMScheduler`` / ``DPMSolverMultistepScheduler`` for fast sampling,
   ``clip_sample=False`` throughout (standardized weights and latents exceed [-1, 1]).

Example::

    from generators.d2nwg import D2NWG, train_d2nwg
    pipe = train_d2nwg("zoos/digits-tasks", "runs/d2nwg")          # a few CPU minutes
    ws = pipe.sample("digits:0-3-5-7-9", n=16, generator=torch.Generator().manual_seed(0))
    pipe.save_pretrained("runs/d2nwg/pipeline"); pipe = D2NWG.from_pretrained("runs/d2nwg/pipeline")

Files (:meth:`D2NWG.save_pretrained`, never pickle): ``model_index.json`` (configs, latent
scale), ``tokenizer_config.json`` + ``tokenizer.safetensors`` (normalization stats),
``vae.safetensors``, ``denoiser.safetensors`` (EMA weights, set encoder included),
``scheduler/scheduler_config.json`` and, when the zoo was canonicalized,
``reference.safetensors``.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from wspace.errors import WeightSpaceError
from wspace.io import atomic_write, load_safetensors, load_weight_space, read_json, save_safetensors, save_weight_space
from wspace.space import WeightSpace

from .autoencoders import TokenVAE
from .conditioning import SetEncoder, task_condition
from .denoisers import TokenDenoiser
from .probe import ReadoutProbe, probe_supported
from .tokenizer import WeightTokenizer, neuron_centric_supported

__all__ = ["D2NWG", "DEFAULT_CONFIG", "resolve_config", "train_d2nwg", "SAMPLERS"]

MODEL_INDEX = "model_index.json"
SAMPLERS = ("ddpm", "ddim", "dpm")

# Every key a user may set (train_d2nwg(**config), the hydra `generator` node). Sized so that
# the full digits-tasks run trains in minutes on a laptop CPU.
DEFAULT_CONFIG: dict[str, Any] = {
    "data": {
        "split": "train",          # records with this `split` field (all records if the zoo has none)
        "epochs": None,            # keep checkpoints of these epochs (null: all)
        "min_test_acc": None,      # drop checkpoints below this test accuracy
        "tasks": None,             # explicit training tasks (overrides `split`)
        "exclude_tasks": None,     # tasks never seen in training
        "max_models": None,        # subsample the training checkpoints (seeded)
    },
    "tokenizer": {"chunk_size": None, "per_neuron": True, "neuron_centric": "auto", "canonicalize": False},
    "vae": {"latent_dim": 64, "d_model": 128, "depth": 0, "heads": 4, "kl_weight": 1e-6, "input_noise": 1e-3,
            "latent_noise": 0.1, "lr": 1e-3, "steps": 600, "batch_size": 128},
    "condition": {"shots": 20, "hidden": 128, "depth": 1, "max_per_class": 64, "contrastive_steps": 0,
                  "contrastive_lr": 1e-3, "probe": "auto", "probe_ridge": 1.0},
    "denoiser": {"d_model": 96, "depth": 3, "heads": 4, "dropout": 0.0, "cond_drop": 0.1, "lr": 2e-3,
                 "steps": 2000, "batch_size": 64, "ema_decay": 0.999, "warmup": 100,
                 "precondition": True},
    "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                  "prediction_type": "sample"},
    "sampling": {"sampler": "ddim", "num_inference_steps": 50, "guidance_scale": 2.0, "shots": 20},
    "checkpoint_every": 500,
}


def _merge(base: dict, over: Mapping, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            raise WeightSpaceError(f"unknown D2NWG setting '{where}{k}'; known: {sorted(out)}")
        if isinstance(out[k], dict) and v is not None:
            if not isinstance(v, Mapping):
                raise WeightSpaceError(f"D2NWG setting '{where}{k}' must be a mapping, got {v!r}")
            out[k] = _merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_config(config: Mapping | None = None, **overrides: Any) -> dict:
    """``DEFAULT_CONFIG`` merged with ``config`` and then ``overrides`` (nested dicts; unknown
    keys raise). Accepts a DictConfig (the hydra ``generator`` node)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    cfg = _merge(DEFAULT_CONFIG, {k: v for k, v in (config or {}).items() if k not in ("name", "_target_")})
    return _merge(cfg, overrides)


def _auto_chunk(spec, neuron_centric: bool = False) -> int:
    """Longest neuron row (fan-in + bias, + fan-out for neuron-centric tokens of the last
    hidden layer), capped at 128: one token per neuron when possible."""
    rows = [spec.params[l.weight].numel // spec.params[l.weight].shape[0] + (l.bias is not None)
            for l in spec.layers]
    if neuron_centric:
        rows[-2] += spec.layers[-1].out_features
        rows[-1] = spec.layers[-1].out_features
    return min(max(rows), 128)


def use_neuron_centric(config: Mapping, spec) -> bool:
    """Resolve ``tokenizer.neuron_centric`` (``"auto"``: when the spec supports it)."""
    v = config["tokenizer"]["neuron_centric"]
    if v == "auto":
        return neuron_centric_supported(spec)
    return bool(v)


def make_tokenizer(spec, config: Mapping) -> WeightTokenizer:
    """An unfitted tokenizer for ``spec`` as ``config`` says."""
    tc = config["tokenizer"]
    nc = use_neuron_centric(config, spec)
    return WeightTokenizer(spec, int(tc["chunk_size"] or _auto_chunk(spec, nc)), tc["per_neuron"], neuron_centric=nc)


def use_probe(config: Mapping, tokenizer: WeightTokenizer) -> bool:
    """Resolve ``condition.probe`` (``"auto"``: when the tokenizer supports it)."""
    v = config["condition"]["probe"]
    if v == "auto":
        return probe_supported(tokenizer)
    return bool(v)


def _scheduler(kind: str, config: Mapping):
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


class D2NWG:
    """A trained latent weight-diffusion pipeline for one architecture (see the module docstring)."""

    def __init__(self, tokenizer: WeightTokenizer, vae: TokenVAE, denoiser: TokenDenoiser, config: Mapping,
                 latent_scale: float, input_shape: tuple[int, ...], reference: WeightSpace | None = None):
        self.tokenizer, self.vae, self.denoiser = tokenizer, vae.eval(), denoiser.eval()
        self.config = resolve_config(config)
        self.latent_scale = float(latent_scale)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.reference = reference
        self.probe = make_probe(tokenizer, vae, self.latent_scale, self.config) if denoiser.probe_dim else None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def build_modules(tokenizer: WeightTokenizer, config: Mapping, input_shape: tuple[int, ...]
                      ) -> tuple[TokenVAE, TokenDenoiser]:
        """Fresh (untrained) VAE and denoiser for ``tokenizer``'s grid."""
        c = resolve_config(config)
        v, d, cond = c["vae"], c["denoiser"], c["condition"]
        # hidden neurons share position embeddings (the modules commute with their permutations)
        # unless the zoo is canonicalized, where every position means one aligned neuron
        positions = None if c["tokenizer"]["canonicalize"] else tokenizer.layout.role_index
        vae = TokenVAE(tokenizer.num_tokens, tokenizer.chunk_size, v["latent_dim"], v["d_model"], v["depth"],
                       v["heads"], 0.0, v["input_noise"], v["latent_noise"], positions)
        K = tokenizer.spec.out_features
        enc = SetEncoder(math.prod(input_shape), K, d["d_model"], cond["hidden"], cond["depth"], d["heads"])
        lay = tokenizer.layout
        slots = torch.where(lay.is_output, lay.neuron_index, torch.full_like(lay.neuron_index, -1))
        probe_dim = 2 * K + 1 if use_probe(c, tokenizer) else 0
        abar = None
        if c["scheduler"]["prediction_type"] == "sample" and d["precondition"]:
            abar = _scheduler("ddpm", c["scheduler"]).alphas_cumprod
        den = TokenDenoiser(tokenizer.num_tokens, v["latent_dim"], slots, enc, d["d_model"], d["depth"], d["heads"],
                            d["dropout"], positions, probe_dim, abar)
        return vae, den

    @property
    def spec(self):
        return self.tokenizer.spec

    @property
    def num_classes(self) -> int:
        return self.denoiser.set_encoder.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def to(self, device: str | torch.device) -> "D2NWG":
        self.vae.to(device)
        self.denoiser.to(device)
        return self

    # ------------------------------------------------------------------ latents
    @torch.no_grad()
    def encode(self, ws: WeightSpace) -> torch.Tensor:
        """Scaled latent means ``[B, T, L]`` of networks (canonicalized first if the zoo was)."""
        if self.reference is not None:
            from .tokenizer import canonicalize

            ws, _ = canonicalize(ws, self.reference.to(ws.device))
        tokens = self.tokenizer.tokenize(ws.to(self.device), dtype=torch.float32)
        mu, _ = self.vae.encode(tokens)
        return mu * self.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> WeightSpace:
        """Networks from scaled latents ``[B, T, L]``."""
        tokens = self.vae.decode(latents / self.latent_scale)
        return self.tokenizer.detokenize(tokens * self.tokenizer.mask.to(tokens.device))

    @torch.no_grad()
    def reconstruct(self, ws: WeightSpace) -> WeightSpace:
        """VAE round trip of ``ws`` (in the canonical frame when canonicalized)."""
        return self.decode(self.encode(ws))

    # ------------------------------------------------------------------ sampling
    def condition(self, task: Any, n: int, shots: int | None = None, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Class-ordered shots ``[n, K, S, *input]`` for ``task`` (a name or a Task)."""
        if isinstance(task, str):
            from datasets_zoo.tasks import get_task

            task = get_task(task)
        shape = tuple(getattr(task, "input_shape", ()) or ())
        if shape and math.prod(shape) != math.prod(self.input_shape):
            raise WeightSpaceError(f"task '{task.name}' has inputs of shape {list(shape)}; this generator was "
                                   f"trained on inputs of shape {list(self.input_shape)}")
        shots = int(shots or self.config["sampling"]["shots"])
        return task_condition(task, n, shots, self.num_classes, generator,
                              self.config["condition"]["max_per_class"]).to(self.device)

    @torch.no_grad()
    def sample(self, task: Any, n: int = 16, *, guidance_scale: float | None = None,
               num_inference_steps: int | None = None, generator: torch.Generator | None = None,
               sampler: str | None = None, shots: int | None = None, batch_size: int = 512,
               condition: torch.Tensor | None = None) -> WeightSpace:
        """``n`` networks for ``task`` (a task name such as ``"digits:0-3-5-7-9"``, a Task,
        or explicit class-ordered shots via ``condition`` ``[n, K, S, *input]``).

        ``sampler``: ``"ddim"`` (default), ``"dpm"`` (DPM-Solver++ 2M) or ``"ddpm"``
        (ancestral, ``num_train_timesteps`` steps unless ``num_inference_steps`` says
        otherwise). ``guidance_scale`` 1 disables classifier-free guidance. Deterministic
        for a seeded (CPU) ``generator``.
        """
        s = self.config["sampling"]
        sampler = sampler or s["sampler"]
        g = s["guidance_scale"] if guidance_scale is None else float(guidance_scale)
        steps = num_inference_steps or (self.config["scheduler"]["num_train_timesteps"] if sampler == "ddpm"
                                        else s["num_inference_steps"])
        if n < 1:
            raise WeightSpaceError(f"n must be >= 1, got {n}")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        shots_t = condition if condition is not None else self.condition(task, n, shots, generator)
        if shots_t.shape[0] != n:
            raise WeightSpaceError(f"condition has {shots_t.shape[0]} rows for n={n} networks")
        shots_t = shots_t.to(self.device)
        T, L = self.tokenizer.num_tokens, self.vae.config["latent_dim"]
        out = []
        for a in range(0, n, batch_size):
            b = min(n, a + batch_size)
            noise = torch.randn(b - a, T, L, generator=generator).to(self.device)
            out.append(self._denoise(noise, shots_t[a:b], sampler, int(steps), g, generator))
        return self.decode(torch.cat(out))

    def _denoise(self, z: torch.Tensor, shots: torch.Tensor, sampler: str, steps: int, guidance: float,
                 generator: torch.Generator) -> torch.Tensor:
        sched = _scheduler(sampler, self.config["scheduler"])
        sched.set_timesteps(steps)
        den = self.denoiser
        cond = den.condition_tokens(shots)
        B = z.shape[0]
        z = z * sched.init_noise_sigma
        guided = guidance != 1.0
        if guided:
            cond2 = torch.cat([cond, cond])
            drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(z.device)
        abar = sched.alphas_cumprod
        for t in sched.timesteps:
            tt = torch.full((B,), int(t), device=z.device)
            # probe on the shrinkage estimate sqrt(abar) z_t of the clean latent (bounded at high noise)
            pr = self.probe(z * float(abar[int(t)]) ** 0.5, shots) if self.probe is not None else None
            if guided:
                pr2 = None if pr is None else torch.cat([pr, pr])
                eps_c, eps_u = den(torch.cat([z, z]), torch.cat([tt, tt]), cond2, drop, pr2).chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            else:
                eps = den(z, tt, cond, None, pr)
            kw = {"generator": generator} if sampler in ("ddpm", "ddim") else {}
            z = sched.step(eps, t, z, **kw).prev_sample
        return z

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the pipeline to ``directory`` (JSON configs + safetensors, no pickle)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(d)
        cpu = lambda m: {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}  # noqa: E731
        save_safetensors(d / "vae.safetensors", cpu(self.vae))
        save_safetensors(d / "denoiser.safetensors", cpu(self.denoiser))
        _scheduler("ddpm", self.config["scheduler"]).save_config(str(d / "scheduler"))
        if self.reference is not None:
            save_weight_space(self.reference.to("cpu"), d / "reference.safetensors")
        from wspace import __version__

        index = {"_class_name": "D2NWG", "_wspace_version": __version__, "config": self.config,
                 "latent_scale": self.latent_scale, "input_shape": list(self.input_shape),
                 "vae": self.vae.config, "denoiser": self.denoiser.config,
                 "set_encoder": self.denoiser.set_encoder.config, "canonicalized": self.reference is not None}
        with atomic_write(d / MODEL_INDEX) as f:
            json.dump(index, f, indent=2)
        return d

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> "D2NWG":
        """Load a pipeline written by :meth:`save_pretrained`."""
        d = Path(directory)
        f = d / MODEL_INDEX
        index = read_json(f, missing="not a D2NWG pipeline directory (no model_index.json)")
        if index.get("_class_name") != "D2NWG":
            raise WeightSpaceError(f"holds a '{index.get('_class_name')}', not a D2NWG pipeline", file=f)
        tok = WeightTokenizer.load(d)
        vae, den = cls.build_modules(tok, index["config"], tuple(index["input_shape"]))
        for name, module in (("vae", vae), ("denoiser", den)):
            tensors, _ = load_safetensors(d / f"{name}.safetensors")
            missing, unexpected = module.load_state_dict(tensors, strict=False)
            if missing or unexpected:
                raise WeightSpaceError(f"weights do not match the config: missing {missing[:3]}, unexpected "
                                       f"{unexpected[:3]}", file=d / f"{name}.safetensors")
        ref = load_weight_space(d / "reference.safetensors") if index.get("canonicalized") else None
        return cls(tok, vae, den, index["config"], index["latent_scale"], tuple(index["input_shape"]),
                   ref).to(device)

    def __repr__(self) -> str:
        return (f"D2NWG({self.spec.describe()}, {self.tokenizer.num_tokens} tokens x {self.vae.config['latent_dim']} "
                f"latent, {self.num_classes} classes)")


def make_probe(tokenizer: WeightTokenizer, vae: TokenVAE, latent_scale: float, config: Mapping) -> ReadoutProbe:
    """The readout probe of a pipeline: decodes scaled latents with ``vae``."""
    scale = float(latent_scale)
    return ReadoutProbe(tokenizer, lambda z: vae.decode(z / scale), config["condition"]["probe_ridge"])


def train_d2nwg(zoo: Any, out: str | os.PathLike, *, seed: int = 0, device: str = "cpu",
                trainer: Mapping | None = None, progress: bool = False, config: Mapping | None = None,
                **overrides: Any) -> D2NWG:
    """Train a D2NWG pipeline on ``zoo`` (a path or a :class:`~datasets_zoo.Zoo`) into ``out``.

    ``config`` / ``overrides`` follow :data:`DEFAULT_CONFIG` (e.g. ``vae={"steps": 500}``).
    Lightning writes checkpoints (``out/checkpoints``, resumed when present) and CSV logs
    (``out/logs``); the final pipeline is saved to ``out/pipeline``. Returns it.
    """
    from .stages import fit_pipeline

    cfg = resolve_config(config, **overrides)
    return fit_pipeline(zoo, Path(out), cfg, seed=seed, device=device, trainer=dict(trainer or {}),
                        progress=progress)
