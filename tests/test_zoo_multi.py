"""Multi-architecture task zoos (digits-tasks-multi) and the generators' data selection:
one architecture per generator, chosen explicitly; diverged / NaN checkpoints counted and
dropped only on request."""
import json
import warnings
from importlib import resources

import numpy as np
import pytest
import torch

from datasets_zoo import Zoo
from datasets_zoo.build import build_zoo, load_preset, plan_runs
from datasets_zoo.build.planning import subset_split
from datasets_zoo.format import ZooWriter
from generators.config import generator_defaults
from generators.selection import select_checkpoints
from wspace import WeightSpace, WeightSpaceError
from wspace.families import family_spec
from wspace.io import load_safetensors, save_safetensors

ARCHS = ["mlp-64-32-5", "mlp-64-64-32-5", "mlp-64-32-32-32-5", "cnn-8-16"]


@pytest.fixture(scope="module")
def multi_zoo(tmp_path_factory):
    """The small digits-tasks-multi zoo, built through the CLI's entry point."""
    from omegaconf import OmegaConf

    from wspace.commands.zoo_build import main as zoo_build_main

    out = tmp_path_factory.mktemp("multi") / "zoo"
    preset = OmegaConf.load(str(resources.files("configs") / "zoo_build" / "zoo" / "digits-tasks-multi.yaml"))
    cfg = OmegaConf.create({"zoo": preset, "out": str(out), "size": "small", "device": "cpu", "seed": 0,
                            "progress": False})
    return Zoo.open(zoo_build_main(cfg))


def _data(**kw):
    d = generator_defaults("gaussian")["data"]
    d.update(kw)
    return d


# --------------------------------------------------------------------------- the preset
def test_multi_preset_records_splits_and_architectures(multi_zoo):
    zoo = multi_zoo
    cfg = load_preset("digits-tasks-multi", "small")
    assert len(zoo) == len(plan_runs(cfg)) * len(cfg["save_epochs"])
    assert list(zoo.architectures) == ARCHS and len(zoo.spec_ids) == 4
    recs = zoo.records
    assert {r["split"] for r in recs} == {"train", "heldout", "heldout_pair"}
    for r in recs:
        assert r["architecture"] in ARCHS and "test_acc" in r["metrics"]
        assert r["task"].endswith("@image") == (r["architecture"] == "cnn-8-16")
    splits = zoo.meta["splits"]
    pairs = {tuple(p) for p in splits["heldout_pairs"]}
    assert pairs and pairs == {(r["task"], r["architecture"]) for r in recs if r["split"] == "heldout_pair"}
    base = lambda t: t.split("@")[0]  # noqa: E731
    held = set(splits["heldout_tasks"])
    for task, arch in pairs:  # a held-out pair's task is trained with the other architectures
        others = {r["architecture"] for r in recs if base(r["task"]) == base(task) and r["split"] == "train"}
        assert others == set(ARCHS) - {arch}
    for r in recs:  # a held-out task is never trained with any architecture
        assert (base(r["task"]) in held) == (r["split"] == "heldout")
    assert set(zoo.meta["architectures"]) == set(ARCHS)
    assert all(r["task"] in zoo.tasks for r in recs)


def test_every_architecture_loads_as_its_own_weight_space(multi_zoo):
    meta = multi_zoo.meta["architectures"]
    for name in ARCHS:
        view = multi_zoo.architecture(name)
        ws = view.weights()
        assert isinstance(ws, WeightSpace) and len(ws) == multi_zoo.architectures[name]
        kw = dict(meta[name]["family_kwargs"], num_classes=5)
        kw["in_channels" if meta[name]["family"] == "small_cnn" else "in_features"] = 1 if meta[name]["view"] else 64
        assert ws.spec == family_spec(meta[name]["family"], **kw)
        assert multi_zoo.architecture(view.spec_ids[0]).spec == ws.spec  # a spec id names it too
    with pytest.raises(WeightSpaceError, match="no architecture 'mlp-9'.*cnn-8-16"):
        multi_zoo.architecture("mlp-9")
    with pytest.raises(WeightSpaceError, match=r"zoo\.architecture\('mlp-64-32-5'\)"):
        multi_zoo.spec


def test_full_multi_preset_plan():
    cfg = load_preset("digits-tasks-multi", "full")
    runs = plan_runs(cfg)
    train, held = subset_split(cfg, 0)
    assert len(train) + len(held) == 252
    tasks = {r.task.split("@")[0] for r in runs}
    assert len(tasks) == cfg["tasks"]["limit"]
    assert {r.extra["architecture"] for r in runs} == set(ARCHS)
    per_arch = {a: sum(r.extra["split"] == "heldout_pair" for r in runs if r.extra["architecture"] == a) for a in ARCHS}
    assert all(n > 0 for n in per_arch.values())  # each architecture is held out on some tasks
    assert cfg["epochs"] in cfg["save_epochs"]


def test_multi_preset_validation():
    with pytest.raises(WeightSpaceError, match="architectures.cnn-8-16: unknown key"):
        load_preset("digits-tasks-multi", "small", overrides={"architectures": {"cnn-8-16": {"width": 3}}})
    with pytest.raises(WeightSpaceError, match="unknown module family"):
        load_preset("digits-tasks-multi", "small", overrides={"architectures": {"x": {"family": "nope"}}})
    with pytest.raises(WeightSpaceError, match="view"):
        load_preset("digits-tasks-multi", "small", overrides={"architectures": {"x": {"family": "mlp", "view": "signal"}}})
    with pytest.raises(WeightSpaceError, match="per architecture"):
        load_preset("digits-tasks-multi", "small", overrides={"family": "mlp"})


def _stop_after_first_chunk(index):
    raise KeyboardInterrupt("simulated kill after the first chunk")


def test_multi_kill_and_resume_equals_uninterrupted(multi_zoo, tmp_path):
    kw = dict(size="small", progress=False)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        build_zoo("digits-tasks-multi", out, on_chunk_done=_stop_after_first_chunk, **kw)
    assert 0 < len(Zoo.open(out)) < len(multi_zoo)
    build_zoo("digits-tasks-multi", out, **kw)  # the same command again finishes the zoo
    a = {r["id"]: r for r in multi_zoo.records}
    done = Zoo.open(out)
    b = {r["id"]: r for r in done.records}
    assert set(a) == set(b)
    for k in a:
        for field in ("task", "architecture", "split", "epoch", "metrics"):
            assert a[k][field] == b[k][field], (k, field)
    for name in ARCHS:
        va, vb = multi_zoo.architecture(name), done.architecture(name)
        oa = np.argsort([r["id"] for r in va.records])
        ob = np.argsort([r["id"] for r in vb.records])
        assert torch.equal(va.weights(oa).flatten(), vb.weights(ob).flatten())
    n = len(done)
    build_zoo("digits-tasks-multi", out, **kw)  # finished: nothing appended
    assert len(Zoo.open(out)) == n


# --------------------------------------------------------------------------- selection
def test_selection_mixing_architectures_names_them_and_the_option(multi_zoo):
    with pytest.raises(WeightSpaceError) as e:
        select_checkpoints(multi_zoo, _data())
    msg = str(e.value)
    for name in ARCHS:
        assert f"'{name}'" in msg
    assert "generator.data.architecture=" in msg and "checkpoints)" in msg


def test_selection_architecture_picks_one(multi_zoo):
    for name in ARCHS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a clean selection: no warning
            z, idx = select_checkpoints(multi_zoo, _data(architecture=name))
        recs = [z.records[i] for i in idx]
        assert recs and {r["architecture"] for r in recs} == {name} and {r["split"] for r in recs} == {"train"}
        assert len(z.weights(idx)) == len(idx)
    spec = multi_zoo.architecture("cnn-8-16").spec
    z, idx = select_checkpoints(multi_zoo, _data(architecture=spec.describe()))  # a spec description works too
    assert {z.records[i]["architecture"] for i in idx} == {"cnn-8-16"}
    with pytest.raises(WeightSpaceError, match="generator.data.architecture=mlp-9.*mlp-64-32-5"):
        select_checkpoints(multi_zoo, _data(architecture="mlp-9"))


def test_gaussian_generator_trains_on_one_architecture(multi_zoo, tmp_path):
    from generators.gaussian import GaussianGenerator

    pipe = GaussianGenerator.train(multi_zoo.path, tmp_path / "g", {"data": {"architecture": "mlp-64-64-32-5"}})
    assert pipe.spec == multi_zoo.architecture("mlp-64-64-32-5").spec
    with pytest.raises(WeightSpaceError, match="generator.data.architecture"):
        GaussianGenerator.train(multi_zoo.path, tmp_path / "h")


@pytest.fixture()
def sick_zoo(tmp_path):
    """A native zoo of 8 MLPs: #2 flagged diverged, #5 with a NaN weight written into its shard."""
    spec = family_spec("mlp", hidden=[4], in_features=6, num_classes=3)
    ws = WeightSpace.init(spec, 8, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "sick"
    with ZooWriter(path) as w:
        w.append(ws, [{"id": f"m{i}", "task": "t", "epoch": 1,
                       "metrics": {"test_acc": 0.9, "diverged": i == 2}} for i in range(8)])
    shard = next((path / "shards").iterdir())
    tensors, meta = load_safetensors(shard, check=False)
    key = list(tensors)[0]
    tensors[key][5].view(-1)[0] = float("nan")
    save_safetensors(shard, tensors, meta)
    return path


def test_diverged_and_nan_checkpoints_error_without_the_option(sick_zoo):
    with pytest.raises(WeightSpaceError, match=r"1 diverged .*1 with NaN/inf weights.*drop_diverged=true.*min_test_acc"):
        select_checkpoints(sick_zoo, _data())


def test_diverged_and_nan_checkpoints_dropped_with_the_option(sick_zoo):
    with pytest.warns(UserWarning, match=r"dropping 1 diverged .*1 with NaN/inf"):
        z, idx = select_checkpoints(sick_zoo, _data(drop_diverged=True))
    assert [z.records[i]["id"] for i in idx] == ["m0", "m1", "m3", "m4", "m6", "m7"]
    assert all(bool(torch.isfinite(t).all()) for t in z.weights(idx).tensors)


def test_specs_without_architecture_field(tmp_path):
    """A zoo mixing specs without an ``architecture`` field: named by spec id and description."""
    path = tmp_path / "mixed"
    a = family_spec("mlp", hidden=[4], in_features=6, num_classes=3)
    b = family_spec("mlp", hidden=[5], in_features=6, num_classes=3)
    with ZooWriter(path) as w:
        w.append(WeightSpace.init(a, 3, generator=torch.Generator().manual_seed(0)),
                 [{"id": f"a{i}", "metrics": {"test_acc": 0.5}} for i in range(3)])
        w.append(WeightSpace.init(b, 2, generator=torch.Generator().manual_seed(1)),
                 [{"id": f"b{i}", "metrics": {"test_acc": 0.5}} for i in range(2)])
    with pytest.raises(WeightSpaceError, match=r"'spec-0' \(linear 6->4.*3 checkpoints\).*'spec-1'.*2 checkpoints"):
        select_checkpoints(path, _data())
    z, idx = select_checkpoints(path, _data(architecture="spec-1"))
    assert [z.records[i]["id"] for i in idx] == ["b0", "b1"]
    z, idx = select_checkpoints(path, _data(architecture=a.describe()))
    assert len(idx) == 3
    assert json.dumps(Zoo.open(path).architectures) == '{"spec-0": 3, "spec-1": 2}'
