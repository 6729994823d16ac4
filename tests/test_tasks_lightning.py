"""wspace.tasks: data module, the three Lightning tasks, resume, metrics and `wspace train`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets_zoo.build import build_zoo  # noqa: E402
from wspace.commands import cli  # noqa: E402
from wspace.config import compose_config, group_options  # noqa: E402
from wspace.errors import WeightSpaceError  # noqa: E402
from wspace.nn import Encoder, build_encoder  # noqa: E402
from datasets_zoo import ZooDataModule  # noqa: E402
from wspace.commands.train import fit  # noqa: E402
from wspace.tasks import (  # noqa: E402
    GeneralizationPrediction, InrClassification, InrEditing, dilate, kendall_tau, r2_score,
)

QUIET = {"enable_progress_bar": False, "log_every_n_steps": 1}
SMALL = {"hidden": 8}  # every encoder config takes `hidden`: tiny models, fast tests

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def zoos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoos")
    return {
        "inr": build_zoo("digits-inr", root / "inr", size="small", progress=False),
        "cnn": build_zoo("digits-cnn", root / "cnn", size="small", progress=False,
                         overrides={"search": {"runs": 12}}),  # two specs (relu / tanh), 6 runs each
        "mlp": build_zoo("digits-mlp", root / "mlp", size="small", progress=False,
                         overrides={"search": {"limit": 10, "space": {"width": [16], "activation": ["relu"]}}}),
    }


# --------------------------------------------------------------------------- metrics
def test_kendall_tau_and_r2_match_scipy_and_sklearn():
    from scipy.stats import kendalltau
    from sklearn.metrics import r2_score as sk_r2

    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    p = y + rng.normal(scale=0.7, size=50)
    p[:10] = np.round(p[:10])  # ties
    assert kendall_tau(torch.tensor(p), torch.tensor(y)) == pytest.approx(kendalltau(p, y).statistic, abs=1e-12)
    assert r2_score(torch.tensor(p), torch.tensor(y)) == pytest.approx(sk_r2(y, p), abs=1e-12)
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0  # constant predictions: no ranking (NaN in scipy)
    assert r2_score([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(0.0)  # the mean predictor
    assert r2_score([1.0, 2.0], [1.0, 2.0]) == 1.0


def test_dilate_grows_a_pixel_into_a_cross_and_square():
    img = -torch.ones(1, 1, 5, 5)
    img[0, 0, 2, 2] = 1.0
    d = dilate(img, 3)
    assert d[0, 0].eq(1.0).sum() == 9 and d[0, 0, 1:4, 1:4].eq(1.0).all() and d[0, 0, 0].eq(-1.0).all()
    with pytest.raises(WeightSpaceError):
        dilate(img, 2)


# --------------------------------------------------------------------------- data module
def test_datamodule_splits_stats_and_hooks(zoos):
    seen = {"transform": 0, "collate": 0}

    def transform(ws):
        seen["transform"] += len(ws)
        return ws * 0.0  # visible: train batches become zeros

    dm = ZooDataModule(zoos["inr"], target="class", batch_size=4, transform=transform)
    assert dm.split_by == "split" and dm.num_classes == 10  # predefined split (by source image), task's classes
    images = {s: {r["image"] for r in getattr(dm, s).records} for s in ("train", "val", "test")}
    assert not (images["train"] & images["val"]) and not (images["train"] & images["test"])
    ws, y = next(iter(dm.train_dataloader()))
    assert len(ws) == 4 and y.dtype == torch.long and seen["transform"] == 4
    assert all(t.abs().sum() == 0 for t in ws.tensors)
    vws, _ = next(iter(dm.val_dataloader()))  # val: normalized with the train stats, never transformed
    raw = dm.zoo.weights(dm.val.indices[: len(vws)])
    expect = dm.stats.normalize(raw)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(vws.tensors, expect.tensors))
    assert seen["transform"] == 4
    # train stats only: recompute on the train split
    tr = dm.zoo.weights(dm.train.indices)
    assert torch.allclose(dm.stats.mean.float()[0], tr.tensors[0].double().mean().float(), atol=1e-6)

    cnn = ZooDataModule(zoos["cnn"], target="test_acc")  # two architectures: the most common one
    assert cnn.split_by == "run" and cnn.spec_id in cnn.zoo.spec_ids and len(cnn.zoo.spec_ids) == 1
    runs = {s: {r["run"] for r in getattr(cnn, s).records} for s in ("train", "val", "test")}
    assert not (runs["train"] & runs["val"]) and not (runs["train"] & runs["test"]) and not (runs["val"] & runs["test"])
    mean, std = cnn.target_stats()
    assert mean == pytest.approx(float(cnn.train.targets.double().mean())) and std > 0


def test_collate_hook_sees_train_batches_only(zoos, tmp_path):
    import lightning as L

    calls = []

    def collate(batch):
        ws, y = batch
        calls.append(len(ws))
        return ws, y

    dm = ZooDataModule(zoos["inr"], target="class", batch_size=4, collate=collate)
    module = InrClassification.from_datamodule(dm, encoder="statnn", encoder_kwargs=SMALL)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    assert calls == [4, 4]  # two train steps; sanity check, validation and test untouched


def test_bad_zoo_path_and_bad_choices_raise(zoos, tmp_path):
    with pytest.raises(WeightSpaceError, match="does not exist"):
        ZooDataModule(tmp_path / "nope", target="class")
    with pytest.raises(WeightSpaceError, match="does not exist"):
        fit("generalization", "statnn", tmp_path / "nope", tmp_path / "out")
    with pytest.raises(WeightSpaceError, match="no architecture"):
        ZooDataModule(zoos["cnn"], target="test_acc", spec_id="spec-9")
    with pytest.raises(WeightSpaceError, match="no equivariant"):
        fit("inr_editing", "flat_mlp", zoos["inr"], tmp_path / "e", trainer=QUIET)
    with pytest.raises(WeightSpaceError, match="INR"):
        fit("inr_editing", "unf", zoos["cnn"], tmp_path / "e2", trainer=QUIET)


# --------------------------------------------------------------------------- tasks
def _split_outputs(module, dm):
    module.eval()
    outs, ys = [], []
    with torch.no_grad():
        for ws, y in dm.test_dataloader():
            outs.append(module(ws))
            ys.append(y)
    return torch.cat(outs), torch.cat(ys)


@pytest.mark.parametrize("encoder", ["statnn", "dwsnet"])
def test_inr_classification_trains_and_reports_test_accuracy(zoos, tmp_path, encoder):
    m = fit("inr_classification", encoder, zoos["inr"], tmp_path, trainer={**QUIET, "max_epochs": 3},
            encoder_kwargs=SMALL, batch_size=4)
    assert m["global_step"] == 9 and m["epochs"] == 3  # 10 train INRs / batch 4 -> 3 steps per epoch
    assert 0.0 <= m["test/acc"] <= 1.0 and np.isfinite(m["test/loss"])
    assert json.loads((tmp_path / "metrics.json").read_text())["test/acc"] == m["test/acc"]
    assert list((tmp_path / "logs").glob("version_0/metrics.csv"))
    # the reported number is the best checkpoint's accuracy on the test split (checkpoint loads weights_only)
    best = InrClassification.load_from_checkpoint(m["best_checkpoint"], weights_only=True)
    logits, y = _split_outputs(best, ZooDataModule(zoos["inr"], target="class"))
    assert m["test/acc"] == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
    assert m["test/loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)


@pytest.mark.parametrize("zoo,encoder", [("mlp", "flat_mlp"), ("cnn", "nfn_np")])
def test_generalization_reports_kendall_tau_and_r2(zoos, tmp_path, zoo, encoder):
    m = fit("generalization", encoder, zoos[zoo], tmp_path, trainer={**QUIET, "max_epochs": 2},
            encoder_kwargs=SMALL, batch_size=8)
    for k in ("test/kendall_tau", "test/r2", "test/mse", "test/loss"):
        assert np.isfinite(m[k]), k
    best = GeneralizationPrediction.load_from_checkpoint(m["best_checkpoint"], weights_only=True)
    pred, y = _split_outputs(best, ZooDataModule(zoos[zoo], target="test_acc"))
    assert m["test/kendall_tau"] == pytest.approx(kendall_tau(pred, y), abs=1e-6)
    assert m["test/r2"] == pytest.approx(r2_score(pred, y), rel=1e-4, abs=1e-5)
    assert m["test/mse"] == pytest.approx(float(((pred.double() - y.double()) ** 2).mean()), rel=1e-4)


@pytest.mark.parametrize("encoder", ["unf", "nfn_hnp"])
def test_inr_editing_learns_through_renders_and_reports_identity_baseline(zoos, tmp_path, encoder):
    m = fit("inr_editing", encoder, zoos["inr"], tmp_path, trainer={**QUIET, "max_epochs": 2},
            encoder_kwargs=SMALL, batch_size=5)
    assert np.isfinite(m["test/mse"]) and m["test/mse"] > 0
    # identity baseline, recomputed by hand: render each test INR, dilate, compare
    from datasets_zoo import Zoo
    from wspace.coordinates import coordinate_grid

    dm = ZooDataModule(Zoo.open(zoos["inr"]), target=None)
    raw = dm.zoo.weights(dm.test.indices)
    img = raw(coordinate_grid(16)).reshape(len(raw), 1, 16, 16)
    base = float(((img - torch.nn.functional.max_pool2d(img, 3, 1, 1)) ** 2).mean())
    assert m["test/identity_mse"] == pytest.approx(base, rel=1e-4)
    # the edit is a residual: with gamma = 0 the model renders exactly the input
    model = InrEditing.load_from_checkpoint(m["best_checkpoint"], weights_only=True)
    ws, _ = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        model.encoder.gamma.zero_()
        assert torch.allclose(model.render(model(ws)), model.render(ws), atol=1e-5)
        assert torch.allclose(model.render(ws), img[: len(ws)], atol=1e-4)


def test_interrupted_training_resumes_from_last_checkpoint(zoos, tmp_path):
    kw = dict(encoder_kwargs=SMALL, batch_size=4)
    m1 = fit("generalization", "statnn", zoos["mlp"], tmp_path, trainer={**QUIET, "max_epochs": 2}, patience=100, **kw)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file() and m1["resumed_from"] is None
    ck = torch.load(last, weights_only=True)  # our checkpoints are plain data
    assert ck["global_step"] == m1["global_step"] and ck["epoch"] == 1
    steps_per_epoch = m1["global_step"] // 2
    # more epochs is another setting: the rerun refuses (naming it) until resume=force says to continue
    with pytest.raises(WeightSpaceError, match=r"trainer\.max_epochs: 2 -> 4.*resume=force"):
        fit("generalization", "statnn", zoos["mlp"], tmp_path, trainer={**QUIET, "max_epochs": 4}, patience=100, **kw)
    m2 = fit("generalization", "statnn", zoos["mlp"], tmp_path, trainer={**QUIET, "max_epochs": 4}, patience=100,
             overrides=["resume=force"], **kw)
    assert m2["resumed_from"] == str(last) and m2["forced"] == ["trainer.max_epochs: 2 -> 4"]
    assert m2["global_step"] == 4 * steps_per_epoch and m2["epochs"] == 4
    assert (tmp_path / "logs" / "version_1" / "metrics.csv").is_file()
    # resume=false starts over
    m3 = fit("generalization", "statnn", zoos["mlp"], tmp_path, trainer={**QUIET, "max_epochs": 1}, patience=100,
             overrides=["resume=false"], **kw)
    assert m3["resumed_from"] is None and m3["global_step"] == steps_per_epoch


# --------------------------------------------------------------------------- CLI
def test_cli_train_smoke_run_writes_metrics(zoos, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "task=generalization", "encoder=statnn", f"zoo={zoos['cnn']}", f"out={out}",
                   "trainer=debug", "encoder.hidden=8"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "generalization" and m["global_step"] == 1 and np.isfinite(m["test/mse"])
    assert "outputs in" in capsys.readouterr().out


def test_cli_train_bad_zoo_and_missing_encoder_fail_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "task=inr_classification", "encoder=unf", f"zoo={tmp_path / 'missing'}",
                  f"out={tmp_path / 'o'}", "trainer=debug"])
    assert e.value.code == 1 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "task=inr_classification", f"zoo={tmp_path}", f"out={tmp_path / 'o'}", "trainer=debug"])
    assert e.value.code == 1 and "encoder=<name>" in capsys.readouterr().err


def test_task_configs_name_their_module_and_generate_means_a_generator(tmp_path, capsys):
    from wspace.commands.train import task_class
    from wspace.tasks import WeightSpaceTask

    for name in group_options("train", "task"):
        task = compose_config("train", [f"task={name}"]).task
        if name == "generate":  # generator training: no task module, wspace train dispatches on generator=
            assert "_target_" not in task and task.name == "generate"
            with pytest.raises(WeightSpaceError, match="generator=<name>"):
                task_class(task)
            continue
        assert issubclass(task_class(task), WeightSpaceTask) and task.name == name
    cfg = compose_config("train", ["generator=d2nwg"])  # the generator configs select task generate
    assert cfg.task.name == "generate" and cfg.generator is not None
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "task=generate", f"zoo={tmp_path}", f"out={tmp_path / 'o'}"])
    assert e.value.code == 1 and "generator=<name>" in capsys.readouterr().err
    with pytest.raises(WeightSpaceError, match="not a wspace.tasks.WeightSpaceTask"):
        task_class({"_target_": "torch.nn.Linear"})


def test_bad_task_option_is_a_clear_error(zoos, tmp_path):
    with pytest.raises(WeightSpaceError, match=r"inr_classification.*has no option .label_smothing."):
        fit("inr_classification", "statnn", zoos["inr"], tmp_path, trainer=QUIET, label_smothing=0.1)


def test_cli_help_lists_tasks_and_encoders(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for name in ("inr_classification", "generalization", "inr_editing", "nfn_hnp", "nfn_np", "dwsnet", "statnn",
                 "flat_mlp", "unf", "graph", "debug"):
        assert name in text


def test_every_encoder_config_builds(zoos):
    dm = ZooDataModule(zoos["inr"], target="class")
    options = group_options("train", "encoder")
    assert set(options) >= {"unf", "nfn_np", "nfn_hnp", "dwsnet", "flat_mlp", "statnn", "graph"}
    ws, _ = next(iter(dm.val_dataloader()))
    for name in options:
        enc = compose_config("train", ["task=inr_classification", f"encoder={name}"]).encoder
        model = build_encoder(enc, dm.spec, 10)
        assert isinstance(model, Encoder) and type(model).__module__.startswith("wspace.nn")
        assert model(ws).shape == (len(ws), 10)


def test_graph_encoder_trains(zoos, tmp_path):
    m = fit("generalization", "graph", zoos["cnn"], tmp_path, overrides=["trainer=debug"])
    assert np.isfinite(m["test/mse"])


def test_fit_with_aligned_mixup_trains_on_soft_labels(zoos, tmp_path):
    """``augment`` installs a Mixup batch hook: training sees soft labels, evaluation hard ones."""
    from wspace.augment import MixUp, MixUpCollate

    seen = []

    def augment(dm):
        mix = MixUpCollate(MixUp(align="weight_matching", generator=0), num_classes=dm.num_classes, generator=0)

        def collate(batch):
            out = mix(batch)
            seen.append(out[1])
            return out
        return None, collate

    m = fit("inr_classification", "statnn", zoos["inr"], tmp_path, trainer={**QUIET, "max_epochs": 2},
            encoder_kwargs=SMALL, batch_size=4, augment=augment)
    assert seen and all(y.is_floating_point() and y.shape[1] == 10 for y in seen)
    assert all(torch.allclose(y.sum(1), torch.ones(len(y))) for y in seen)
    assert 0.0 <= m["test/acc"] <= 1.0


def test_encoder_config_reads_the_encoder_option():
    from wspace.commands.train import encoder_config

    config = encoder_config("nfn_hnp")
    assert config == {"_target_": "wspace.nn.NFN", "mode": "hnp", "hidden": 32, "layers": 3, "head_hidden": 128,
                      "head_layers": 2}
    with pytest.raises(WeightSpaceError, match="unknown encoder 'nfn'.*nfn_hnp.*unf"):
        encoder_config("nfn")


# --------------------------------------------------------------------------- schedule
def test_cosine_schedule_follows_the_step_or_time_budget(zoos, monkeypatch):
    """The cosine decay tracks whichever budget is nearer its end: steps, or ``max_time``."""
    import types

    from lightning.pytorch.callbacks import Timer

    from wspace.tasks.base import cosine_factor

    assert cosine_factor(0.0) == 1.0 and cosine_factor(1.0) == 0.0 and cosine_factor(0.5) == pytest.approx(0.5)
    dm = ZooDataModule(zoos["inr"], target="class")
    module = InrClassification.from_datamodule(dm, encoder="statnn", lr=1e-2, scheduler="cosine")
    timer = Timer(duration={"seconds": 100})
    clock = {"t": 0.0}
    monkeypatch.setattr("lightning.pytorch.callbacks.timer.time.monotonic", lambda: clock["t"])
    timer._start_time["train"] = 0.0
    fake = types.SimpleNamespace(estimated_stepping_batches=1000, global_step=100, callbacks=[timer])
    monkeypatch.setattr(module, "_trainer", fake)
    opt_cfg = module.configure_optimizers()
    sched, opt = opt_cfg["lr_scheduler"]["scheduler"], opt_cfg["optimizer"]
    clock["t"] = 25.0  # time is the nearer budget: 25% vs 10% of the steps
    sched.step()
    assert module.training_progress() == pytest.approx(0.25)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * cosine_factor(0.25))
    fake.global_step = 600  # now the steps are
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * cosine_factor(0.6))
    clock["t"] = 250.0  # past the budget: clamped at the end of the decay
    sched.step()
    assert module.training_progress() == 1.0 and opt.param_groups[0]["lr"] == pytest.approx(0.0)
    # without any finite budget the rate stays constant
    fake.estimated_stepping_batches, fake.callbacks = float("inf"), []
    assert module.training_progress() == 0.0


def test_time_budget_alone_decays_the_rate_to_zero(zoos, tmp_path):
    """A run ended by ``max_time`` (no useful step budget) ends with a fully decayed rate."""
    import lightning as L

    dm = ZooDataModule(zoos["inr"], target="class", batch_size=2)
    module = InrClassification.from_datamodule(dm, encoder="statnn", encoder_kwargs=SMALL, lr=1e-2, scheduler="cosine")
    trainer = L.Trainer(max_epochs=10**6, max_time={"seconds": 2}, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, datamodule=dm)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert trainer.global_step > 5 and lr < 0.05 * 1e-2


# --------------------------------------------------------------------------- augment=<recipe>
@pytest.mark.parametrize("name", group_options("train", "augment"))
def test_every_augment_config_builds_its_recipe(zoos, name):
    """Each ``configs/train/augment`` option installs that recipe's train-only hooks."""

    from wspace.commands.train import build

    cfg = compose_config("train", ["task=inr_classification", "encoder=statnn", f"augment={name}",
                                   f"zoo={zoos['inr']}", "out=unused"])
    dm, _ = build(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    mixes = "mixup" in name or name == "combo"
    signs, phases = ("mixup_aligned_signs", "mixup_aligned_phases", "symmetry_inr_mixup", "symmetry_mixup"), \
        ("mixup_aligned_phases", "symmetry_inr_mixup", "symmetry_mixup")
    assert (dm.collate is not None) == mixes
    ws, y = dm.collate(batch) if mixes else batch  # Lightning applies it to train batches
    if mixes:
        mix = dm.collate.mixup
        assert mix.align == {"mixup_naive": None, "mixup_random_perm": "random"}.get(name, "weight_matching")
        assert mix.canonical_signs == (name in signs) and mix.canonical_phases == (name in phases)
        assert (mix.stats is dm.stats) == (name in signs)  # sign flips and shifts act on raw weights
    assert (dm.train.transform is not None) == (name not in ("none",) and not name.startswith("mixup"))
    if mixes and name != "mixup_weights_only":
        assert y.is_floating_point() and torch.allclose(y.sum(1), torch.ones(len(y)))
    else:  # hard labels (weights-only Mixup keeps the dominant network's label, one-hot)
        assert (not y.is_floating_point()) or torch.all((y == 0) | (y == 1))
    ws_val, y_val = next(iter(dm.val_dataloader()))  # evaluation is never augmented
    assert not y_val.is_floating_point()


def test_cli_train_with_augment_option_runs(zoos, tmp_path, capsys):
    rc = cli.main(["train", "task=inr_classification", "encoder=statnn", f"zoo={zoos['inr']}", f"out={tmp_path}",
                   "augment=combo", "trainer=debug", "encoder.hidden=8"])
    assert rc == 0 and json.loads((tmp_path / "metrics.json").read_text())["test/acc"] >= 0.0
    assert "augment" in (tmp_path / "config.yaml").read_text()


def test_unknown_augment_recipe_is_a_clear_error():
    from wspace.commands.train import augment_from_config

    with pytest.raises(WeightSpaceError, match="unknown augmentation recipe 'mixupp'.*mixup_aligned"):
        augment_from_config("mixupp")
    with pytest.raises(WeightSpaceError, match="_target_"):
        augment_from_config({"name": "mixup_aligned"})  # the old spelling: no _target_
