"""Vectorized zoo builder: tiny zoos of every preset, exact per-network training,
metrics that match re-evaluation, and kill-and-resume equal to an uninterrupted build."""
import json
from importlib import resources

import pytest
import torch

from datasets_zoo.build import build_zoo, load_preset, plan_runs
from datasets_zoo.build.inr_chunks import render_targets
from datasets_zoo.build.planning import subset_split
from wspace.families import build_family, family_spec, init_weight_space
from datasets_zoo.format import ZooWriter
from datasets_zoo.tasks import get_task
from datasets_zoo.train_vectorized import (
    ClassifierData, DropoutSampler, VectorizedOptimizer, epoch_order, fit_inrs, psnr, train_classifiers,
)
from datasets_zoo.zoo import Zoo
from wspace import WeightSpace, WeightSpaceError

PRESETS = ["digits-mlp", "digits-cnn", "digits-tasks", "digits-tasks-multi", "digits-inr"]


def _manifest(path):
    with open(path / "manifest.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return {r["id"]: r for r in rows}


def _weights_by_id(path):
    zoo = Zoo.open(path)
    out = {}
    for sid in zoo.spec_ids:
        view = zoo.filter(spec_id=sid)
        ws = view.weights()
        for i, r in enumerate(view.records):
            out[r["id"]] = ws[i].flatten()[0]
    return out


# --------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", PRESETS)
def test_small_preset_builds_and_reloads(preset, tmp_path):
    out = build_zoo(preset, tmp_path / preset, size="small", progress=False)
    cfg = load_preset(preset, "small")
    runs = plan_runs(cfg)
    zoo = Zoo.open(out)
    per_run = len(cfg["save_epochs"]) if cfg["kind"] == "classifier" else 1
    assert len(zoo) == len(runs) * per_run
    assert zoo.meta["builder"]["name"] == preset
    assert len({r["id"] for r in zoo.records}) == len(zoo)
    for r in zoo.records:
        assert {"id", "run", "seed", "task", "epoch", "hparams", "metrics"} <= set(r)
    ws = zoo.filter(spec_id=zoo.spec_ids[0]).weights()
    assert all(torch.isfinite(t).all() for t in ws.tensors)
    # a different configuration refuses the existing zoo instead of mixing into it
    with pytest.raises(WeightSpaceError, match="different configuration"):
        build_zoo(preset, out, size="small", seed=1, progress=False)


def test_tasks_preset_split_is_disjoint(tmp_path):
    cfg = load_preset("digits-tasks", "full")
    train, held = subset_split(cfg, 0)
    assert len(train) + len(held) == 252 and len(held) == round(0.2 * 252)
    assert not set(train) & set(held)
    out = build_zoo("digits-tasks", tmp_path / "t", size="small", progress=False)
    zoo = Zoo.open(out)
    splits = zoo.meta["splits"]
    assert set(splits["heldout_tasks"]) == set(held)
    for r in zoo.records:
        assert (r["task"] in held) == (r["split"] == "heldout")
        assert get_task(r["task"]).num_classes == 5


def test_inr_preset_variants_and_split(tmp_path):
    out = build_zoo("digits-inr", tmp_path / "i", size="small", progress=False,
                    overrides={"inr": {"views": 2}})
    zoo = Zoo.open(out)
    recs = zoo.records
    cfg = load_preset("digits-inr", "small")
    n_img = 3 * cfg["inr"]["images_per_split"]
    assert len(recs) == n_img * cfg["inr"]["variants"] * 2
    # split by source image: every variant and view of one image shares its split
    by_img = {}
    for r in recs:
        by_img.setdefault(r["source_index"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_img.values())
    assert {"train", "test"} <= {r["split"] for r in recs}
    # two views of one target are independent inits (different seeds, different weights)
    ws = zoo.weights()
    a = [i for i, r in enumerate(recs) if r["image"] == 0 and r["variant"] == 0]
    assert len(a) == 2 and recs[a[0]]["seed"] != recs[a[1]]["seed"]
    assert not torch.equal(ws[a[0]].flatten(), ws[a[1]].flatten())


# --------------------------------------------------------------------------- metrics = re-evaluation
@pytest.mark.parametrize("preset", ["digits-mlp", "digits-tasks", "digits-cnn"])
def test_recorded_accuracy_matches_reevaluation(preset, tmp_path):
    out = build_zoo(preset, tmp_path / preset, size="small", progress=False)
    zoo = Zoo.open(out)
    checked = 0
    for sid in zoo.spec_ids:
        view = zoo.filter(spec_id=sid)
        ws = view.weights()
        for i, r in enumerate(view.records):
            task = get_task(r["task"])
            with torch.no_grad():
                logits = ws[i](task.x_test)[0]
            acc = (logits.argmax(-1) == task.y_test).float().mean().item()
            loss = torch.nn.functional.cross_entropy(logits, task.y_test).item()
            assert acc == pytest.approx(r["metrics"]["test_acc"], abs=1e-6)
            assert loss == pytest.approx(r["metrics"]["test_loss"], rel=1e-4, abs=1e-5)
            checked += 1
    assert checked == len(zoo)


def test_recorded_psnr_matches_reevaluation(tmp_path):
    out = build_zoo("digits-inr", tmp_path / "inr", size="small", progress=False)
    zoo = Zoo.open(out)
    ws = zoo.weights()
    cfg = load_preset("digits-inr", "small")
    coords, targets = render_targets(cfg, 0)
    img = torch.tensor([r["image"] for r in zoo.records])
    var = torch.tensor([r["variant"] for r in zoo.records])
    with torch.no_grad():
        mse = (ws(coords) - targets[img, var]).pow(2).flatten(1).mean(1)
    rec = torch.tensor([r["metrics"]["psnr"] for r in zoo.records])
    assert torch.allclose(psnr(mse), rec, atol=1e-3)


# --------------------------------------------------------------------------- resume
def _stop_after_first_chunk(index):
    raise KeyboardInterrupt("simulated kill after the first chunk")


@pytest.mark.parametrize("preset", ["digits-mlp", "digits-inr"])
def test_kill_and_resume_equals_uninterrupted(preset, tmp_path):
    kw = dict(size="small", progress=False, chunk_size=2)
    ref = build_zoo(preset, tmp_path / "ref", **kw)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        build_zoo(preset, out, on_chunk_done=_stop_after_first_chunk, **kw)
    partial = _manifest(out)
    assert 0 < len(partial) < len(_manifest(ref))
    build_zoo(preset, out, **kw)  # the same command again finishes the zoo
    a, b = _manifest(ref), _manifest(out)
    assert set(a) == set(b)
    for k in a:
        for field in ("run", "seed", "task", "epoch", "hparams", "metrics"):
            assert a[k][field] == b[k][field], (k, field)
    wa, wb = _weights_by_id(ref), _weights_by_id(out)
    for k in a:
        assert torch.equal(wa[k], wb[k]), k
    # finished zoo: a third run appends nothing
    build_zoo(preset, out, **kw)
    assert len(_manifest(out)) == len(a)


def test_resume_after_kill_mid_chunk_appends_only_missing_epochs(tmp_path, monkeypatch):
    kw = dict(size="small", progress=False, chunk_size=3)
    ref = build_zoo("digits-mlp", tmp_path / "ref", **kw)
    real_append = ZooWriter.append
    calls = {"n": 0}

    def flaky_append(self, ws, records):
        calls["n"] += 1
        if calls["n"] == 2:  # the chunk's epoch 0 is on disk, epoch 1 is not
            raise KeyboardInterrupt("simulated kill inside a chunk")
        return real_append(self, ws, records)

    out = tmp_path / "killed"
    monkeypatch.setattr(ZooWriter, "append", flaky_append)
    with pytest.raises(KeyboardInterrupt):
        build_zoo("digits-mlp", out, **kw)
    monkeypatch.setattr(ZooWriter, "append", real_append)
    first = _manifest(out)
    assert first and all(r["epoch"] == 0 for r in first.values())
    build_zoo("digits-mlp", out, **kw)
    a, b = _manifest(ref), _manifest(out)
    assert set(a) == set(b)
    wa, wb = _weights_by_id(ref), _weights_by_id(out)
    assert all(torch.equal(wa[k], wb[k]) for k in a)
    assert all(a[k]["metrics"] == b[k]["metrics"] for k in a)


# --------------------------------------------------------------------------- exact vectorization
def _digits_data():
    t = get_task("digits")
    return t, ClassifierData(t.x_train, t.y_train, t.x_test, t.y_test)


HP = dict(
    optimizer=["sgd", "sgd", "adam", "adamw", "adam"],
    lr=torch.tensor([0.05, 0.01, 1e-3, 3e-3, 1e-2]),
    weight_decay=torch.tensor([1e-3, 0.0, 1e-2, 1e-1, 0.0]),
    momentum=torch.tensor([0.9, 0.5, 0.0, 0.0, 0.0]),
)


def test_vectorized_equals_plain_torch_per_model():
    """M networks trained together == each trained alone with nn.Module + torch.optim
    (same init, same data order): per-network lr, weight decay, momentum, optimizer."""
    task, data = _digits_data()
    spec = family_spec("mlp", hidden=[16], activation="tanh")
    M = 5
    init = init_weight_space(spec, M, generator=torch.Generator().manual_seed(0))
    seeds = torch.arange(M) + 10
    bs = 64
    out = train_classifiers(init, data, seeds=seeds, epochs=1, batch_size=bs, **HP)
    member = torch.ones(1, len(task.y_train), dtype=torch.bool)
    for m in range(M):
        mod = build_family("mlp", hidden=[16], activation="tanh")
        mod.load_state_dict(init[m].to_state_dicts()[0])
        kind, lr, wd = HP["optimizer"][m], HP["lr"][m].item(), HP["weight_decay"][m].item()
        if kind == "sgd":
            opt = torch.optim.SGD(mod.parameters(), lr=lr, momentum=HP["momentum"][m].item(), weight_decay=wd)
        else:
            opt = (torch.optim.Adam if kind == "adam" else torch.optim.AdamW)(mod.parameters(), lr=lr, weight_decay=wd)
        order = epoch_order(seeds[m:m + 1], 1, member)[0]
        for s in range(len(order) // bs):
            idx = order[s * bs:(s + 1) * bs]
            loss = torch.nn.functional.cross_entropy(mod(task.x_train[idx]), task.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ref = WeightSpace.from_module(mod, spec)
        moved = (ref.flatten() - init[m].flatten()).abs().max().item()
        err = (ref.flatten() - out[m].flatten()).abs().max().item()
        assert moved > 1e-3 and err < 1e-5 * max(1.0, moved), (kind, err, moved)


def test_vectorized_equals_alone_with_dropout_and_subsets():
    """Per-network dropout rates, tasks (class subsets of different sizes) and data
    orders: training inside a chunk gives bit-identical weights to training alone."""
    task, data = _digits_data()
    spec = family_spec("mlp", hidden=[16], activation="relu", num_classes=10)
    M = 5
    init = init_weight_space(spec, M, generator=torch.Generator().manual_seed(1))
    seeds = torch.arange(M) * 7 + 3
    y = task.y_train.expand(M, -1).clone()
    y[1, task.y_train >= 5] = -1  # network 1 sees only digits 0-4 (fewer batches per epoch)
    y[3, task.y_train % 2 == 1] = -1
    pooled = ClassifierData(task.x_train, y, task.x_test, task.y_test.expand(M, -1))
    dropout = torch.tensor([0.5, 0.0, 0.2, 0.5, 0.1])
    hp = dict(HP, dropout=dropout)
    out = train_classifiers(init, pooled, seeds=seeds, epochs=2, batch_size=64, **hp)
    for m in range(M):
        one = {k: (v[m:m + 1] if isinstance(v, torch.Tensor) else [v[m]]) for k, v in hp.items()}
        alone = ClassifierData(task.x_train, y[m:m + 1], task.x_test, task.y_test[None])
        o = train_classifiers(init[m], alone, seeds=seeds[m:m + 1], epochs=2, batch_size=64, **one)
        assert torch.allclose(o.flatten(), out[m].flatten(), atol=1e-6, rtol=0), m
    # dropout really acts: without it network 0 ends elsewhere
    no_drop = train_classifiers(init[0], ClassifierData(task.x_train, y[:1], task.x_test, task.y_test[None]),
                                seeds=seeds[:1], epochs=2, batch_size=64,
                                **{k: (v[:1] if isinstance(v, torch.Tensor) else [v[0]]) for k, v in HP.items()})
    assert (no_drop.flatten() - out[0].flatten()).abs().max() > 1e-3


def test_dropout_sampler_rate_and_independence():
    seeds = torch.arange(4)
    p = torch.tensor([0.0, 0.25, 0.5, 0.75])
    drop = DropoutSampler(seeds, p)
    h = torch.ones(4, 64, 100)
    y = drop(h, 0)
    zero_frac = (y == 0).float().mean(dim=(1, 2))
    assert torch.allclose(zero_frac, p, atol=0.02)
    kept = y[1][y[1] != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.75))
    # a network's mask depends on its seed and the step, not on its neighbours
    alone = DropoutSampler(seeds[2:3], p[2:3])(h[2:3], 0)
    assert torch.equal(alone[0], y[2])
    drop.step = 1
    assert not torch.equal(drop(h, 0)[2], y[2])


def test_optimizer_inactive_networks_are_untouched():
    p = torch.randn(3, 4, 5)
    opt = VectorizedOptimizer([p], kind=["adam", "adam", "sgd"], lr=torch.tensor([0.1, 0.1, 0.1]), momentum=0.9)
    g = torch.randn(3, 4, 5)
    opt.step([g])
    before = p.clone()
    state = [s.clone() for seg in opt.state[0] for s in seg]
    opt.step([g], torch.tensor([True, False, False]))
    assert not torch.equal(p[0], before[0])
    assert torch.equal(p[1:], before[1:])
    after = [s for seg in opt.state[0] for s in seg]
    assert torch.equal(after[0][1], state[0][1]) and torch.equal(after[2], state[2])  # moments of 1, buf of 2
    assert opt.t.tolist() == [2.0, 1.0, 1.0]


def test_fit_inrs_early_stop_and_divergence_guard():
    spec = family_spec("siren", hidden=[16, 16], w0=10.0)
    task = get_task("digits-inr")
    tgt = task.targets_train[:4]
    init = init_weight_space(spec, 4, generator=torch.Generator().manual_seed(0))
    lr = torch.tensor([1e-3, 1e-3, 1e-3, 1e4])  # the last one blows up
    ws, m = fit_inrs(init, task.coords, tgt, lr=lr, steps=400, stop_psnr=25.0)
    assert all(torch.isfinite(t).all() for t in ws.tensors)
    ok = ~m["diverged"]
    assert bool(ok[:3].all())
    stopped = m["steps"][:3] < 400
    assert bool(stopped.any())
    assert bool((m["psnr"][:3][stopped] >= 25.0).all())
    # a stopped INR is frozen: training it alone for exactly its steps gives the same weights
    k = int(torch.nonzero(stopped)[0])
    alone, _ = fit_inrs(init[k], task.coords, tgt[k:k + 1], lr=1e-3, steps=int(m["steps"][k]))
    assert torch.allclose(alone.flatten(), ws[k].flatten(), atol=1e-6)


def test_preset_validation_errors():
    with pytest.raises(WeightSpaceError, match="unknown zoo preset"):
        load_preset("no-such-zoo")
    with pytest.raises(WeightSpaceError, match="unknown key"):
        load_preset("digits-mlp", overrides={"epoch": 3})
    with pytest.raises(WeightSpaceError, match="dropout"):
        load_preset("digits-mlp", overrides={"family_kwargs": {"dropout": 0.5}})
    with pytest.raises(WeightSpaceError, match="size"):
        load_preset("digits-mlp", size="huge")


def test_main_accepts_hydra_config(tmp_path, capsys):
    from omegaconf import OmegaConf

    zoo_cfg = OmegaConf.load(str(resources.files("configs") / "zoo_build" / "zoo" / "digits-tasks.yaml"))
    cfg = OmegaConf.create({"zoo": zoo_cfg, "out": str(tmp_path / "z"), "size": "small", "device": "cpu",
                            "seed": 0, "progress": False})
    from wspace.commands.zoo_build import main as zoo_build_main

    out = zoo_build_main(cfg)
    assert len(Zoo.open(out)) == len(plan_runs(load_preset("digits-tasks", "small"))) * 2
    assert "zoo written to" in capsys.readouterr().out


@pytest.mark.parametrize("family,kwargs,x_shape", [
    ("mlp", dict(in_features=64, hidden=[16, 16], num_classes=10), (5, 64)),
    ("small_cnn", dict(in_channels=1, num_classes=10, channels=[4, 4, 4]), (5, 1, 8, 8)),
])
def test_train_forward_is_the_functional_interpreter(family, kwargs, x_shape):
    """Without dropout, the training forward equals the library's forward (it steps the
    same interpreter, keeping convolution chains grouped); the grouped layout changes
    nothing against stepping the canonical one."""
    from wspace import functional
    from datasets_zoo.train_vectorized import train_forward

    spec = family_spec(family, **kwargs)
    ws = init_weight_space(spec, 6, generator=torch.Generator().manual_seed(0))
    x = torch.randn(*x_shape, generator=torch.Generator().manual_seed(1))
    xb = torch.randn(6, *x_shape, generator=torch.Generator().manual_seed(2))
    for inp in (x, xb):
        out = train_forward(spec, ws.tensors, inp)
        torch.testing.assert_close(out, functional.forward(spec, ws.tensors, inp), rtol=1e-5, atol=1e-6)
        canonical = functional.Activations(inp, inp.dim() == spec.input_dims + 2, B=6)
        functional.run_ops(spec.program, ws.tensors, canonical)
        assert torch.equal(out, canonical.to("bnc"))
