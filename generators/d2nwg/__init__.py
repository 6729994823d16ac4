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

Files (:meth:`D2NWG.save_pretrained`, never pickle): ``model_index.json`` (class, configs,
latent scale), ``tokenizer_config.json`` + ``tokenizer.safetensors`` (normalization stats),
``vae.safetensors``, ``denoiser.safetensors`` (EMA weights, set encoder included),
``scheduler/scheduler_config.json`` and, when the zoo was canonicalized,
``reference.safetensors``.

Modules: :mod:`.config` (defaults from ``configs/train/generator/d2nwg.yaml``),
:mod:`.components` (building the parts), :mod:`.pipeline` (the :class:`D2NWG` class),
:mod:`.training` (data selection and the stages), :mod:`.vae_stage` and
:mod:`.diffusion_stage` (the LightningModules).
"""
from __future__ import annotations

from ..pipeline import MODEL_INDEX
from .components import SAMPLERS, make_probe, make_tokenizer, use_neuron_centric, use_probe
from .config import DEFAULT_CONFIG, resolve_config
from .pipeline import D2NWG, train_d2nwg

__all__ = ["D2NWG", "DEFAULT_CONFIG", "resolve_config", "train_d2nwg", "SAMPLERS", "MODEL_INDEX", "make_probe",
           "make_tokenizer", "use_neuron_centric", "use_probe"]
