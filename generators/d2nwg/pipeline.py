"""The D2NWG pipeline: a trained latent weight-diffusion generator for one architecture.

:class:`D2NWG` implements :class:`generators.pipeline.WeightGenerator`; training lives in
:mod:`generators.d2nwg.training`, the parts in :mod:`generators.d2nwg.components`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from wspace.errors import WeightSpaceError
from wspace.io import load_safetensors, load_weight_space, save_safetensors, save_weight_space
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

from ..autoencoders import TokenVAE
from ..conditioning import task_condition
from ..denoisers import TokenDenoiser
from ..pipeline import PIPELINE_DIR, WeightGenerator
from ..tokenizer import WeightTokenizer, canonicalize
from ..probe import fit_readout, probe_spec_supported
from .components import SAMPLERS, build_modules, make_probe, make_scheduler
from .config import resolve_config
from .latent_norm import LatentNorm
from .training import fit_stages

__all__ = ["D2NWG", "train_d2nwg", "READOUTS"]

# sampling's `readout`: the output layer as generated ("none"), refit by ridge regression on the support
# shots ("ridge"), or "auto": ridge for a task-conditioned pipeline whose architecture the probe reads
# (feed-forward MLPs / CNNs ending in a linear layer), none otherwise
READOUTS = ("auto", "none", "ridge")


class D2NWG(WeightGenerator):
    """A trained latent weight-diffusion pipeline for one architecture (see :mod:`generators.d2nwg`)."""

    name = "d2nwg"
    conditional = True

    def __init__(self, tokenizer: WeightTokenizer, vae: TokenVAE, denoiser: TokenDenoiser, config: Mapping,
                 latent_norm: LatentNorm | float, input_shape: tuple[int, ...], reference: WeightSpace | None = None):
        self.tokenizer, self.vae, self.denoiser = tokenizer, vae.eval(), denoiser.eval()
        self.config = resolve_config(config)
        if not isinstance(latent_norm, LatentNorm):  # a single scale (pipelines saved before latent_norm)
            latent_norm = LatentNorm.global_scale(float(latent_norm), tokenizer.num_tokens, vae.config["latent_dim"])
        expect = (tokenizer.num_tokens, int(vae.config["latent_dim"]))
        if tuple(latent_norm.mean.shape) != expect:
            raise WeightSpaceError(f"latent statistics of shape {list(latent_norm.mean.shape)} do not fit "
                                   f"{expect[0]} tokens x {expect[1]} latent channels")
        self.latent_norm = latent_norm
        self.input_shape = tuple(int(s) for s in input_shape)
        self.reference = reference
        self.conditional = denoiser.set_encoder is not None  # unconditional: e.g. trained on an INR zoo
        self.probe = make_probe(tokenizer, vae, self.latent_norm, self.config) if denoiser.probe_dim else None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def build_modules(tokenizer: WeightTokenizer, config: Mapping, input_shape: tuple[int, ...],
                      conditional: bool = True) -> tuple[TokenVAE, TokenDenoiser]:
        """Fresh (untrained) VAE and denoiser for ``tokenizer``'s grid
        (:func:`generators.d2nwg.components.build_modules`)."""
        return build_modules(tokenizer, config, input_shape, conditional)

    @classmethod
    def train(cls, zoo: Any, out: str | os.PathLike, config: Mapping[str, Any] | None = None, *, seed: int = 0,
              device: str = "cpu", trainer: Mapping[str, Any] | None = None, progress: bool = False,
              **overrides: Any) -> "D2NWG":
        """Train a D2NWG pipeline on ``zoo`` (a path or a :class:`~datasets_zoo.Zoo`) into ``out``.

        ``config`` / ``overrides`` follow the defaults of ``configs/train/generator/d2nwg.yaml``
        (e.g. ``vae={"steps": 500}``). Lightning writes checkpoints (``out/checkpoints``,
        resumed when present) and CSV logs (``out/logs``); the final pipeline is saved to
        ``out/pipeline``. Returns it, on ``device``.
        """
        cfg = resolve_config(config, **overrides)
        out = Path(out)
        p = fit_stages(zoo, out, cfg, seed=seed, device=device, trainer=trainer, progress=progress)
        pipe = cls(p.tokenizer, p.vae, p.denoiser, cfg, p.latent_norm, p.input_shape, p.reference)
        pipe.save_pretrained(out / PIPELINE_DIR)
        return pipe.to(device)

    @property
    def spec(self) -> WeightSpaceSpec:
        return self.tokenizer.spec

    @property
    def num_classes(self) -> int:
        """Output units of the generated networks (classes of the tasks it is conditioned on)."""
        return self.denoiser.num_classes

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
        """Normalized latent means ``[B, T, L]`` (the diffusion's space) of networks
        (canonicalized first if the zoo was)."""
        if self.reference is not None:
            ws, _ = canonicalize(ws, self.reference.to(ws.device))
        tokens = self.tokenizer.tokenize(ws.to(self.device), dtype=torch.float32)
        mu, _ = self.vae.encode(tokens)
        return self.latent_norm.normalize(mu)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> WeightSpace:
        """Networks from normalized latents ``[B, T, L]``."""
        tokens = self.vae.decode(self.latent_norm.denormalize(latents))
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
        if shape and shape != self.input_shape:
            hint = (" (image tasks are named '<task>@image', e.g. 'digits:0-1-2-3-4@image')"
                    if len(self.input_shape) == 3 and math.prod(shape) == math.prod(self.input_shape) else "")
            raise WeightSpaceError(f"task '{task.name}' has inputs of shape {list(shape)}; this generator was "
                                   f"trained on inputs of shape {list(self.input_shape)}{hint}")
        shots = int(shots or self.config["sampling"]["shots"])
        return task_condition(task, n, shots, self.num_classes, generator,
                              self.config["condition"]["max_per_class"]).to(self.device)

    def sampling_settings(self, guidance_scale: float | None = None, num_inference_steps: int | None = None,
                          sampler: str | None = None, readout: str | None = None, **options: Any) -> dict[str, Any]:
        """The sampler, guidance scale and step count a :meth:`sample` call with these
        options uses (None: the pipeline's ``sampling`` defaults)."""
        s = self.config["sampling"]
        sampler = sampler or s["sampler"]
        steps = num_inference_steps if num_inference_steps is not None else (
            self.config["scheduler"]["num_train_timesteps"] if sampler == "ddpm" else s["num_inference_steps"])
        g = s["guidance_scale"] if guidance_scale is None else guidance_scale
        if sampler not in SAMPLERS:
            raise WeightSpaceError(f"unknown sampler '{sampler}'; choose one of {SAMPLERS}")
        if isinstance(g, bool) or not (isinstance(g, (int, float)) and math.isfinite(float(g))):
            raise WeightSpaceError(f"guidance_scale must be a finite number, got {g!r}")
        if int(steps) < 1:
            raise WeightSpaceError(f"num_inference_steps must be >= 1, got {steps}")
        readout = self.resolve_readout(readout)

        return {"guidance_scale": g, "num_inference_steps": int(steps), "sampler": sampler, "readout": readout,
                **{k: v for k, v in options.items() if v is not None}}

    def resolve_readout(self, readout: str | None = None) -> str:
        """The readout a :meth:`sample` call uses: ``"none"`` or ``"ridge"`` (None: the
        pipeline's ``sampling.readout``; ``"auto"``: ridge when this pipeline is conditioned
        on a task and the probe reads its architecture, else none)."""
        if readout is None:
            readout = self.config["sampling"].get("readout") or "none"  # null in pipelines saved before "auto"
        if readout not in READOUTS:
            raise WeightSpaceError(f"readout must be one of {READOUTS}, got {readout!r}")
        if readout == "auto":
            return "ridge" if self.conditional and probe_spec_supported(self.spec) else "none"
        if readout == "ridge" and not self.conditional:
            raise WeightSpaceError("readout='ridge' fits the output layer on a task's shots; this generator is "
                                   "unconditional")
        if readout == "ridge" and not probe_spec_supported(self.spec):
            raise WeightSpaceError(f"readout='ridge' needs a feed-forward network ending in a linear layer; this "
                                   f"generator draws {self.spec.describe()}")
        return readout

    def check_spec(self, spec: WeightSpaceSpec) -> None:
        """Raise unless ``spec`` is the architecture this generator draws (names both)."""
        if not isinstance(spec, WeightSpaceSpec):
            raise WeightSpaceError(f"spec must be a WeightSpaceSpec, got {type(spec).__name__}")
        if not spec.same_space(self.spec):
            raise WeightSpaceError(f"this generator was trained on {self.spec.describe()} ({self.num_classes} "
                                   f"classes); it cannot sample {spec.describe()} ({spec.out_features} outputs). "
                                   f"Train one generator per architecture (generator.data.architecture=...)")

    @torch.no_grad()
    def sample(self, condition: Any = None, n: int = 16, *, guidance_scale: float | None = None,
               num_inference_steps: int | None = None, generator: torch.Generator | None = None,
               sampler: str | None = None, shots: int | None = None, batch_size: int = 512,
               readout: str | None = None, spec: WeightSpaceSpec | None = None) -> WeightSpace:
        """``n`` networks for ``condition``: a task name such as ``"digits:0-3-5-7-9"``, a
        Task, or explicit class-ordered shots ``[n, K, S, *input]`` (a tensor); None for an
        unconditional pipeline (one trained on a zoo without classification tasks).

        ``sampler``: ``"ddim"`` (default), ``"dpm"`` (DPM-Solver++ 2M) or ``"ddpm"``
        (ancestral, ``num_train_timesteps`` steps unless ``num_inference_steps`` says
        otherwise). ``guidance_scale`` 1 disables classifier-free guidance. ``readout``:
        ``"ridge"`` refits the output layer on the condition's shots
        (:func:`generators.probe.fit_readout`: a fitting step on the support set, not
        generation; the hidden layers stay as generated), ``"none"`` keeps the generated output
        layer, ``"auto"`` / None (the pipeline's default) is ridge for task-conditioned
        feed-forward MLPs / CNNs (see :meth:`resolve_readout`). ``spec``: the architecture the caller expects (an
        error names both when it is not this generator's). Deterministic for a seeded (CPU)
        ``generator``.
        """
        if spec is not None:
            self.check_spec(spec)
        if self.conditional and condition is None:
            raise WeightSpaceError("this D2NWG pipeline is conditioned on a task: pass one (a task name, a Task or "
                                   "shots)")
        if not self.conditional and condition is not None:
            raise WeightSpaceError("this D2NWG pipeline is unconditional (trained on a zoo without classification "
                                   "tasks): sample without a condition")
        st = self.sampling_settings(guidance_scale, num_inference_steps, sampler, readout)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise WeightSpaceError(f"n must be an integer >= 1, got {n!r}")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        shots_t = None
        if self.conditional:
            shots_t = condition if isinstance(condition, torch.Tensor) else self.condition(condition, n, shots,
                                                                                           generator)
            if shots_t.shape[0] != n:
                raise WeightSpaceError(f"condition has {shots_t.shape[0]} rows for n={n} networks")
            shots_t = shots_t.to(self.device)
        T, L = self.tokenizer.num_tokens, self.vae.config["latent_dim"]
        out = []
        for a in range(0, n, batch_size):
            b = min(n, a + batch_size)
            noise = torch.randn(b - a, T, L, generator=generator).to(self.device)
            out.append(self._denoise(noise, None if shots_t is None else shots_t[a:b], st["sampler"],
                                     st["num_inference_steps"], float(st["guidance_scale"]), generator))
        ws = self.decode(torch.cat(out))
        if st["readout"] == "ridge":
            ws = fit_readout(ws, shots_t, float(self.config["condition"]["probe_ridge"]))
        return ws

    def _denoise(self, z: torch.Tensor, shots: torch.Tensor | None, sampler: str, steps: int, guidance: float,
                 generator: torch.Generator) -> torch.Tensor:
        sched = make_scheduler(sampler, self.config["scheduler"])
        sched.set_timesteps(steps)
        den = self.denoiser
        cond = den.condition_tokens(shots) if shots is not None else None
        B = z.shape[0]
        z = z * sched.init_noise_sigma
        guided = guidance != 1.0 and cond is not None
        if guided:
            cond2 = torch.cat([cond, cond])
            drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(z.device)
        abar = sched.alphas_cumprod
        for t in sched.timesteps:
            tt = torch.full((B,), int(t), device=z.device)
            # probe on the shrinkage estimate sqrt(abar) z_t of the clean latent (bounded at high noise)
            pr = self.probe(z * float(abar[int(t)]) ** 0.5, shots) if self.probe is not None and shots is not None \
                else None
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
    def save_components(self, directory: Path) -> dict[str, Any]:
        """Tokenizer, VAE, denoiser (EMA weights), scheduler config and the reference (when
        canonicalized); returns the settings that ``model_index.json`` records."""
        d = Path(directory)
        self.tokenizer.save(d)
        cpu = lambda m: {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}  # noqa: E731
        save_safetensors(d / "vae.safetensors", cpu(self.vae))
        save_safetensors(d / "denoiser.safetensors", cpu(self.denoiser))
        make_scheduler("ddpm", self.config["scheduler"]).save_config(str(d / "scheduler"))
        if self.reference is not None:
            save_weight_space(self.reference.to("cpu"), d / "reference.safetensors")
        self.latent_norm.save(d)
        return {"config": self.config, "input_shape": list(self.input_shape),
                "vae": self.vae.config, "denoiser": self.denoiser.config,
                "set_encoder": self.denoiser.set_encoder.config if self.conditional else None,
                "conditional": self.conditional, "canonicalized": self.reference is not None}

    @classmethod
    def load_components(cls, directory: Path, index: Mapping[str, Any], device: str | torch.device = "cpu"
                        ) -> "D2NWG":
        """Rebuild the pipeline from the files :meth:`save_components` wrote."""
        d = Path(directory)
        for key in ("config", "input_shape"):
            if key not in index:
                raise WeightSpaceError(f"model_index.json lacks '{key}'", file=d / "model_index.json")
        tok = WeightTokenizer.load(d)
        vae, den = build_modules(tok, index["config"], tuple(index["input_shape"]),
                                 bool(index.get("conditional", True)))
        for name, module in (("vae", vae), ("denoiser", den)):
            tensors, _ = load_safetensors(d / f"{name}.safetensors")
            missing, unexpected = module.load_state_dict(tensors, strict=False)
            if missing or unexpected:
                raise WeightSpaceError(f"weights do not match the config: missing {missing[:3]}, unexpected "
                                       f"{unexpected[:3]}", file=d / f"{name}.safetensors")
        ref = load_weight_space(d / "reference.safetensors") if index.get("canonicalized") else None
        if LatentNorm.saved_in(d):
            norm: LatentNorm | float = LatentNorm.load(d)
        elif "latent_scale" in index:  # saved before latent_norm: one global scale
            norm = float(index["latent_scale"])
        else:
            raise WeightSpaceError("the pipeline has neither latent_norm.safetensors nor a 'latent_scale'", file=d)
        return cls(tok, vae, den, index["config"], norm, tuple(index["input_shape"]), ref).to(device)

    def __repr__(self) -> str:
        what = f"{self.num_classes} classes" if self.conditional else "unconditional"
        return (f"{type(self).__name__}({self.spec.describe()}, {self.tokenizer.num_tokens} tokens x "
                f"{self.vae.config['latent_dim']} latent, {what})")


def train_d2nwg(zoo: Any, out: str | os.PathLike, *, seed: int = 0, device: str = "cpu",
                trainer: Mapping | None = None, progress: bool = False, config: Mapping | None = None,
                **overrides: Any) -> D2NWG:
    """Train a D2NWG pipeline on ``zoo`` into ``out``: :meth:`D2NWG.train` with keyword
    settings (e.g. ``train_d2nwg(zoo, out, vae={"steps": 500})``)."""
    return D2NWG.train(zoo, out, config, seed=seed, device=device, trainer=trainer, progress=progress, **overrides)
