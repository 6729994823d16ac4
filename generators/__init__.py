"""generators: models that generate network weights.

One interface, :class:`generators.pipeline.WeightGenerator` (``train`` -> ``sample`` ->
``save_pretrained`` / ``from_pretrained``), implemented by :class:`generators.d2nwg.D2NWG`
(latent weight diffusion conditioned on a task's data) and
:class:`generators.gaussian.GaussianGenerator` (a per-parameter Gaussian baseline). Shared
parts: the tokenizer, autoencoders, denoisers, conditioning, probe, checkpoint selection
(:mod:`.selection`), stage fitting with Lightning (:mod:`.fitting`), settings (:mod:`.config`)
and evaluation.

Adding a generator: one module implementing the interface plus one
``configs/train/generator/<name>.yaml`` whose ``_target_`` names the class.
"""
