"""p-diff baseline generator (generators.pdiff): its recipe applied on D2NWG's parts, user
settings on top, save / load symmetry, unconditional samples of the zoo's architecture."""
from __future__ import annotations

import torch

from datasets_zoo import ZooWriter
from generators.pdiff import PDIFF_SETTINGS, PDiff
from generators.pipeline import WeightGenerator
from wspace.families import family_spec, init_weight_space

TINY = dict(vae={"steps": 4, "batch_size": 4, "d_model": 16, "latent_dim": 4},
            denoiser={"steps": 4, "batch_size": 4, "d_model": 16, "depth": 1, "warmup": 1},
            sampling={"num_inference_steps": 3}, checkpoint_every=2)


def test_pdiff_trains_with_its_recipe_and_round_trips(tmp_path):
    spec = family_spec("mlp", in_features=6, hidden=[5], num_classes=3)
    ws = init_weight_space(spec, 8, generator=torch.Generator().manual_seed(0))
    with ZooWriter(tmp_path / "zoo", {"tasks": {}}) as w:  # one run's trajectory: records carry no task
        w.append(ws, [{"id": f"c{i}", "run": 0, "epoch": i} for i in range(8)])
    pipe = PDiff.train(tmp_path / "zoo", tmp_path / "run", seed=0, **TINY)
    cfg = pipe.config
    assert cfg["vae"]["input_noise"] == PDIFF_SETTINGS["vae"]["input_noise"] == 1e-3
    assert cfg["vae"]["latent_noise"] == 0.1 and cfg["vae"]["behaviour_weight"] == 0.0
    assert cfg["vae"]["steps"] == 4  # the user's settings win over the recipe
    assert not pipe.conditional and cfg["tokenizer"]["neuron_centric"] is False
    again = WeightGenerator.from_pretrained(tmp_path / "run" / "pipeline")
    assert type(again) is PDiff
    g = torch.Generator().manual_seed(1)
    a = pipe.sample(None, 5, generator=g)
    b = again.sample(None, 5, generator=torch.Generator().manual_seed(1))
    assert len(a) == 5 and a.spec.same_space(spec)
    assert torch.allclose(a.flatten(), b.flatten(), atol=1e-6)


def test_pdiff_from_the_command_line(tmp_path, capsys):
    """``wspace train generator=pdiff``: D2NWG's settings with p-diff's changes (from its YAML,
    which builds on d2nwg.yaml), any of them overridable; the saved pipeline is a PDiff."""
    from generators.config import generator_defaults
    from wspace.commands import cli
    from wspace.config import compose_config

    d = generator_defaults("pdiff")
    assert d["vae"]["latent_noise"] == 0.1 and d["condition"]["mode"] == "none"
    assert d["denoiser"] == generator_defaults("d2nwg")["denoiser"]  # the rest is D2NWG's
    cfg = compose_config("train", ["generator=pdiff", "zoo=z", "out=o", "generator.denoiser.lr=0.01"])
    assert cfg.generator._target_ == "generators.pdiff.PDiff" and cfg.generator.denoiser.lr == 0.01
    spec = family_spec("mlp", in_features=6, hidden=[5], num_classes=3)
    with ZooWriter(tmp_path / "zoo", {"tasks": {}}) as w:
        w.append(init_weight_space(spec, 6, generator=torch.Generator().manual_seed(0)),
                 [{"id": f"c{i}", "run": 0, "epoch": i} for i in range(6)])
    args = [f"zoo={tmp_path / 'zoo'}", f"out={tmp_path / 'run'}"] + [
        f"generator.{k}" for k in ("vae.steps=3", "vae.batch_size=4", "vae.d_model=16", "vae.latent_dim=4",
                                   "denoiser.steps=3", "denoiser.batch_size=4", "denoiser.d_model=16",
                                   "denoiser.depth=1", "denoiser.warmup=1", "sampling.num_inference_steps=2")]
    assert cli.main(["train", "generator=pdiff", *args]) == 0
    out = capsys.readouterr().out
    assert "trained PDiff(" in out and "task=<name>" not in out
    assert type(WeightGenerator.from_pretrained(tmp_path / "run" / "pipeline")) is PDiff
