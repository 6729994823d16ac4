"""The generator interface (generators.pipeline): a generator is one module plus one config.

* the Gaussian baseline (generators/gaussian.py + configs/train/generator/gaussian.yaml):
  trained on a tiny zoo, saved and reloaded bit-exactly, sampled deterministically, through
  Python and through `wspace train` / `wspace sample`;
* a generator defined in this test module, chosen by `_target_` alone (no registry);
* bad pipeline directories raise WeightSpaceError naming model_index.json;
* defaults live once: the CLI's composed config and the Python defaults agree.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import torch

from generators.pipeline import (MODEL_INDEX, PIPELINE_DIR, WeightGenerator, class_path, generator_class,
                                 pipeline_directory)
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec


# --------------------------------------------------------------------------- a generator defined here
class ConstantGenerator(WeightGenerator):
    """Every parameter equals ``value`` plus ``noise`` times a standard normal draw."""

    name = "constant"
    conditional = False

    def __init__(self, spec: WeightSpaceSpec, value: float, noise: float = 0.0):
        self._spec, self.value, self.noise = spec, float(value), float(noise)

    @property
    def spec(self) -> WeightSpaceSpec:
        return self._spec

    def sample(self, condition: Any = None, n: int = 16, *, generator: torch.Generator | None = None,
               **options: Any) -> WeightSpace:
        return WeightSpace(self.spec, [self.value + self.noise * torch.randn((n, *p.shape), generator=generator)
                                       for p in self.spec.params])

    @classmethod
    def train(cls, zoo: Any, out: Any, config: Mapping[str, Any] | None = None, *, seed: int = 0,
              device: str = "cpu", trainer: Any = None, progress: bool = False, **overrides: Any):
        from datasets_zoo import Zoo

        cfg = {"value": 0.0, "noise": 0.0, **dict(config or {}), **overrides}
        pipe = cls(Zoo.open(zoo).spec, cfg["value"], cfg["noise"])
        pipe.save_pretrained(Path(out) / PIPELINE_DIR)
        return pipe

    def save_components(self, directory: Path) -> dict[str, Any]:
        return {"spec": json.loads(self.spec.to_json()), "value": self.value, "noise": self.noise}

    @classmethod
    def load_components(cls, directory: Path, index: Mapping[str, Any], device: Any = "cpu"):
        return cls(WeightSpaceSpec.from_json(json.dumps(index["spec"])), index["value"], index["noise"])


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory, one_thread):
    from datasets_zoo.build import build_zoo

    return Path(build_zoo("digits-tasks", tmp_path_factory.mktemp("pipeline") / "zoo", size="small", progress=False))


def _heldout(zoo: Path) -> str:
    from datasets_zoo import Zoo

    return Zoo.open(zoo).meta["splits"]["built_heldout_tasks"][0]


def _equal(a: WeightSpace, b: WeightSpace) -> bool:
    return a.spec == b.spec and all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))


# --------------------------------------------------------------------------- the Gaussian baseline
def test_gaussian_trains_saves_loads_and_samples(tiny_zoo, tmp_path):
    from datasets_zoo import Zoo
    from generators.gaussian import GaussianGenerator

    pipe = GaussianGenerator.train(tiny_zoo, tmp_path / "run")
    index = json.loads((tmp_path / "run" / PIPELINE_DIR / MODEL_INDEX).read_text())
    assert index["_target_"] == "generators.gaussian.GaussianGenerator" and index["_class_name"] == "GaussianGenerator"
    zoo = Zoo.open(tiny_zoo)
    assert pipe.spec.fingerprint == zoo.spec.fingerprint
    train = zoo.filter(split="train").weights()
    assert torch.allclose(pipe.mean.tensors[0][0], train.tensors[0].double().mean(0))

    again = WeightGenerator.from_pretrained(tmp_path / "run" / PIPELINE_DIR)  # the class comes from the file
    assert type(again) is GaussianGenerator and again.config == pipe.config and again.dtype == pipe.dtype
    assert _equal(again.mean, pipe.mean) and _equal(again.std, pipe.std)
    a = pipe.sample(_heldout(tiny_zoo), 5, generator=torch.Generator().manual_seed(3))
    b = again.sample(None, 5, generator=torch.Generator().manual_seed(3))
    assert len(a) == 5 and a.spec == zoo.spec and a.dtype == torch.float32 and _equal(a, b)
    c = again.sample(None, 5, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a.tensors[0], c.tensors[0])
    with pytest.raises(WeightSpaceError, match="no sampling options"):
        pipe.sample(None, 2, guidance_scale=2.0)


def test_gaussian_draws_are_the_core_baseline():
    from generators.gaussian import GaussianGenerator
    from wspace.audit.baselines import gaussian_baseline
    from wspace.families import family_spec

    spec = family_spec("mlp", hidden=[16], num_classes=3)
    ws = WeightSpace.init(spec, 7, generator=torch.Generator().manual_seed(0)).map(lambda t: t * 1.5 + 0.1)
    ours = GaussianGenerator.fit(ws).sample(None, 4, generator=torch.Generator().manual_seed(11))
    core = gaussian_baseline(ws, 4, generator=torch.Generator().manual_seed(11))
    assert _equal(ours, core)


def test_gaussian_aligned_frame_removes_permutations():
    from generators.gaussian import GaussianGenerator
    from wspace.families import family_spec
    from wspace.symmetry import permute, random_permutation

    spec = family_spec("mlp", hidden=[16], num_classes=3)
    g = torch.Generator().manual_seed(1)
    base = WeightSpace.init(spec, 1, generator=g)
    copies = permute(WeightSpace.cat([base] * 6), random_permutation(spec, 6, generator=g))  # one function, 6 ways
    raw, aligned = GaussianGenerator.fit(copies), GaussianGenerator.fit(copies, aligned=True)
    assert aligned.config["aligned"] and not raw.config["aligned"]
    assert max(float(t.max()) for t in aligned.std.tensors) < 1e-6 < float(raw.std.tensors[0].max())


def test_gaussian_through_the_cli(tiny_zoo, tmp_path, capsys):
    from datasets_zoo import Zoo
    from wspace.commands import cli

    out, samples, held = tmp_path / "gauss", tmp_path / "samples", _heldout(tiny_zoo)
    assert cli.main(["train", "generator=gaussian", f"zoo={tiny_zoo}", f"out={out}", "generator.aligned=true"]) == 0
    assert "GaussianGenerator" in capsys.readouterr().out
    assert cli.main(["sample", f"checkpoint={out}", f"task={held}", "n=3", f"out={samples}", "seed=2"]) == 0
    z = Zoo.open(samples)
    assert len(z) == 3 and [r["task"] for r in z.records] == [held] * 3
    assert z.meta["generator"]["name"] == "gaussian" and z.records[0]["hparams"] == {"aligned": True}
    pipe = WeightGenerator.from_pretrained(pipeline_directory(out))
    expect = pipe.sample(held, 3, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a, b) for a, b in zip(z.weights().tensors, expect.tensors))
    with pytest.raises(SystemExit):  # a diffusion option for a generator without it: a clean error
        cli.main(["sample", f"checkpoint={out}", f"task={held}", f"out={tmp_path / 's2'}", "guidance_scale=2"])
    assert "no sampling options ['guidance_scale']" in capsys.readouterr().err


# --------------------------------------------------------------------------- any generator, by _target_
def test_a_generator_defined_anywhere_is_chosen_by_target(tiny_zoo, tmp_path):
    from wspace.commands.train_generator import main as train_generator

    target = class_path(ConstantGenerator)
    assert generator_class(target) is ConstantGenerator
    cfg = {"generator": {"_target_": target, "name": "constant", "value": 0.25}, "zoo": str(tiny_zoo),
           "out": str(tmp_path / "c"), "seed": 0, "device": "cpu", "trainer": {}}
    pipe = train_generator(cfg)
    assert isinstance(pipe, ConstantGenerator) and pipe.value == 0.25
    # its module is imported (this one), so a saved pipeline naming it loads with the base class
    again = WeightGenerator.from_pretrained(tmp_path / "c" / PIPELINE_DIR)
    assert isinstance(again, ConstantGenerator) and _equal(again.sample(None, 2), pipe.sample(None, 2))


def test_a_generator_config_outside_the_package_composes_and_trains(tiny_zoo, tmp_path):
    from wspace.commands.train_generator import main as train_generator
    from wspace.config import compose_config

    extra = tmp_path / "my_configs"
    (extra / "generator").mkdir(parents=True)
    (extra / "generator" / "constant.yaml").write_text(
        f"# @package _global_\ntask:\n  name: generate\ngenerator:\n  _target_: {class_path(ConstantGenerator)}\n"
        f"  name: constant\n  value: 0.5\n  noise: 0.0\n")
    cfg = compose_config("train", [f"hydra.searchpath=[{extra.as_uri()}]", "generator=constant",
                                   f"zoo={tiny_zoo}", f"out={tmp_path / 'c'}", "generator.value=0.75"])
    pipe = train_generator(cfg)
    assert isinstance(pipe, ConstantGenerator) and pipe.value == 0.75


# --------------------------------------------------------------------------- bad input
def _write_index(d: Path, index: Any) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / MODEL_INDEX).write_text(json.dumps(index))
    return d


def test_from_pretrained_rejects_bad_directories(tmp_path):
    from generators.d2nwg import D2NWG

    with pytest.raises(WeightSpaceError, match=r"model_index\.json.*no model_index\.json") as e:
        WeightGenerator.from_pretrained(tmp_path)
    assert e.value.file == str(tmp_path / MODEL_INDEX)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MODEL_INDEX).write_text("{not json")
    with pytest.raises(WeightSpaceError, match="invalid JSON"):
        WeightGenerator.from_pretrained(tmp_path / "bad")
    cases = {
        "list": ([1, 2], "JSON object"),
        "unknown": ({"_target_": "generators.no_such_module.Gen"}, "unknown generator class 'generators.no_such"),
        "noattr": ({"_target_": "generators.gaussian.NoSuchClass"}, "unknown generator class"),
        "notgen": ({"_target_": "generators.tokenizer.WeightTokenizer"}, "not a generator class"),
        "function": ({"_target_": "json.dumps"}, "not a generator class"),
        "base": ({"_target_": "generators.pipeline.WeightGenerator"}, "abstract"),
        "malformed": ({"_target_": "../evil"}, "dotted path"),
        "noclass": ({"_class_name": "Mystery"}, "names no generator class"),
    }
    for name, (index, msg) in cases.items():
        d = _write_index(tmp_path / name, index)
        with pytest.raises(WeightSpaceError, match=msg) as e:
            WeightGenerator.from_pretrained(d)
        assert e.value.file == str(d / MODEL_INDEX), name
    gauss = _write_index(tmp_path / "gauss", {"_target_": "generators.gaussian.GaussianGenerator"})
    with pytest.raises(WeightSpaceError, match="holds a 'GaussianGenerator', not a D2NWG pipeline"):
        D2NWG.from_pretrained(gauss)


def test_a_saved_file_never_imports_code_outside_the_package(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "wspace_untrusted_gen.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('yes')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    d = _write_index(tmp_path / "p", {"_target_": "wspace_untrusted_gen.Gen"})
    with pytest.raises(WeightSpaceError, match="outside the 'generators' package"):
        WeightGenerator.from_pretrained(d)
    assert not marker.exists() and "wspace_untrusted_gen" not in sys.modules


def test_classes_defined_in_functions_cannot_be_saved():
    def make():
        class Local(ConstantGenerator):
            pass

        return Local

    with pytest.raises(WeightSpaceError, match="module level"):
        class_path(make())


# --------------------------------------------------------------------------- defaults live once
@pytest.mark.parametrize("name", ["d2nwg", "gaussian"])
def test_cli_and_python_defaults_agree(name):
    from wspace.config import compose_config, to_plain

    node = to_plain(compose_config("train", [f"generator={name}", "zoo=/z", "out=/o"]).generator)
    assert node.pop("name") == name
    cls = generator_class(node.pop("_target_"))
    python = cls.resolve_config() if name == "gaussian" else __import__("generators.d2nwg").d2nwg.resolve_config()
    assert node == python


def test_generator_configs_choose_the_fixed_step_trainer():
    """A generator's stages run fixed step counts: its `--help` / config shows no max_epochs."""
    from wspace.config import compose_config, group_options

    for name in group_options("train", "generator"):
        cfg = compose_config("train", [f"generator={name}"])
        assert "max_epochs" not in cfg.trainer and "max_time" not in cfg.trainer, name
    assert "max_epochs" in compose_config("train", ["task=generalization", "encoder=statnn"]).trainer


def test_gaussian_fit_and_sample_are_the_audit_baseline():
    from wspace.audit.baselines import fit_gaussian, gaussian_baseline, sample_gaussian
    from wspace.families import family_spec, init_weight_space

    ws = init_weight_space(family_spec("mlp", in_features=4, hidden=(5,), num_classes=3), 6,
                           generator=torch.Generator().manual_seed(1))
    mean, std = fit_gaussian(ws)
    a = sample_gaussian(mean, std, 4, generator=torch.Generator().manual_seed(2), dtype=ws.dtype)
    b = gaussian_baseline(ws, 4, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
