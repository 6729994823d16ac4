"""Public zoo formats: each fixture is written in the format's exact layout by a torch
network, read back through ``Zoo.open`` and must compute the same outputs."""
from __future__ import annotations

import csv
import gzip
import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from datasets_zoo.adapters import detect_format
from datasets_zoo.zoo import Zoo
from tests import nets
from wspace import WeightSpace, WeightSpaceError, spec_from_module
from wspace.io import save_safetensors, save_weight_space
from wspace.symmetry import permute, random_permutation


def _perturb(module: nn.Module, gen: torch.Generator, scale: float = 0.1) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return module.eval()


# =========================================================================== Model Zoos
class ZooCNN(nn.Module):
    """Upstream ``def_net.CNN`` (CNN-s): a ModuleList run in order, 28x28 inputs."""

    def __init__(self, channels_in=1, nlin="tanh", dropout=0.0):
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU}[nlin]
        m = [nn.Conv2d(channels_in, 8, 5), nn.MaxPool2d(2, 2), act()]
        if dropout > 0:
            m.append(nn.Dropout(dropout))
        m += [nn.Conv2d(8, 6, 5), nn.MaxPool2d(2, 2), act()]
        if dropout > 0:
            m.append(nn.Dropout(dropout))
        m += [nn.Conv2d(6, 4, 2), act(), nn.Flatten(), nn.Linear(36, 20), act()]
        if dropout > 0:
            m.append(nn.Dropout(dropout))
        m.append(nn.Linear(20, 10))
        self.module_list = nn.ModuleList(m)

    def forward(self, x):
        for layer in self.module_list:
            x = layer(x)
        return x


def _write_model_zoos(root, trials):
    """``trials``: list of (config, [module per epoch]) -> ray-tune experiment tree."""
    exp = root / "tune_zoo_mnist_uniform"
    exp.mkdir(parents=True)
    (exp / "config.json").write_text(json.dumps(trials[0][0]))
    for t, (config, per_epoch) in enumerate(trials):
        trial = exp / f"NN_tune_trainable_{t:05d}_{t}_seed={config['seed']}_2022-01-01"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps(config))
        lines = []
        for e, model in enumerate(per_epoch):
            ck = trial / f"checkpoint_{e:06d}"
            ck.mkdir()
            torch.save(model.state_dict(), ck / "checkpoints")
            torch.save({"state": {}, "param_groups": []}, ck / "optimizer")
            lines.append(json.dumps({"train_loss": 2.0 - e, "train_acc": 0.5 + 0.1 * e, "test_loss": 2.1 - e,
                                     "test_acc": 0.4 + 0.1 * e + 0.01 * t, "training_iteration": e,
                                     "trial_id": f"t{t}", "time_total_s": 1.5, "config": config}))
        (trial / "result.json").write_text("\n".join(lines) + "\n")
    return exp


def _mz_config(seed, nlin="tanh", dropout=0.0):
    return {"model::type": "CNN", "model::channels_in": 1, "model::nlin": nlin, "model::dropout": dropout,
            "model::init_type": "uniform", "optim::optimizer": "adam", "optim::lr": 3e-4, "seed": seed,
            "training::epochs_train": 2}


def test_model_zoos_ray_tree(tmp_path):
    gen = torch.Generator().manual_seed(0)
    trials = []
    for t in range(3):
        torch.manual_seed(t)
        trials.append((_mz_config(seed=t + 1), [_perturb(ZooCNN(), gen) for _ in range(3)]))
    exp = _write_model_zoos(tmp_path, trials)
    assert detect_format(tmp_path) == "model_zoos"
    zoo = Zoo.open(tmp_path)
    assert len(zoo) == 9 and zoo.spec.num_params == 2464  # CNN-s, grey-scale
    x = torch.randn(7, 1, 28, 28, generator=gen)
    ws = zoo.weights()
    ref = torch.stack([m(x) for _, ms in trials for m in ms]).detach()
    torch.testing.assert_close(ws(x), ref, rtol=1e-5, atol=1e-5)
    rec = zoo.filter(seed=2, epoch=1).records
    assert len(rec) == 1
    r = rec[0]
    assert r["task"] == "tune_zoo_mnist_uniform" and r["run"].startswith("tune_zoo_mnist_uniform/NN_tune")
    assert r["metrics"]["test_acc"] == pytest.approx(0.51) and r["metrics"]["ggap"] == pytest.approx(0.6 - 0.51)
    assert "time_total_s" not in r["metrics"] and r["hparams"]["model::nlin"] == "tanh"
    # opened at the experiment level too; the spatial flatten keeps fixed channels
    assert len(Zoo.open(exp)) == 9
    spec = zoo.spec
    conv3 = spec.params[spec.keys.index("module_list.6.weight")]
    fc1 = spec.params[spec.keys.index("module_list.9.weight")]
    assert conv3.axes[0] is None and fc1.axes[1] is None and fc1.shape == (20, 36)
    # symmetries that remain still preserve the function
    perm = random_permutation(spec, 9, generator=gen)
    torch.testing.assert_close(permute(ws, perm)(x), ws(x), rtol=1e-4, atol=1e-5)
    # build_module rebuilds the same network
    m = spec.build_module()
    m.load_state_dict(ws.to_state_dicts()[4])
    torch.testing.assert_close(m(x), ref[4], rtol=1e-5, atol=1e-5)


def test_model_zoos_hyperparameter_grid_gives_one_spec_per_architecture(tmp_path):
    gen = torch.Generator().manual_seed(1)
    trials = [(_mz_config(1, "tanh"), [_perturb(ZooCNN(nlin="tanh"), gen)]),
              (_mz_config(2, "relu", dropout=0.5), [_perturb(ZooCNN(nlin="relu", dropout=0.5), gen) for _ in range(2)])]
    _write_model_zoos(tmp_path, trials)
    zoo = Zoo.open(tmp_path)
    with pytest.raises(WeightSpaceError, match="2 architectures"):
        zoo.spec
    relu = zoo.filter(**{"model::nlin": "relu"})
    assert "module_list.4.weight" in relu.spec.keys  # dropout shifts the upstream indices
    x = torch.randn(5, 1, 28, 28, generator=gen)
    torch.testing.assert_close(relu.weights()(x), torch.stack([m(x) for m in trials[1][1]]).detach(),
                               rtol=1e-5, atol=1e-5)


def test_model_zoos_mlp_without_config_and_bad_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(2)
    mlp = _perturb(nn.Sequential(OrderedDict(module_list=nn.ModuleList(
        [nn.Linear(4, 6), nn.LeakyReLU(), nn.Linear(6, 3)]))), gen)
    trial = tmp_path / "trial_0"
    (trial / "checkpoint_1").mkdir(parents=True)
    torch.save(mlp.state_dict(), trial / "checkpoint_1" / "checkpoints")
    (trial / "result.json").write_text(json.dumps({"training_iteration": 1, "test_acc": 0.3}) + "\n{\"torn")
    zoo = Zoo.open(tmp_path)
    x = torch.randn(3, 4, generator=gen)
    ref = mlp.module_list[2](F.leaky_relu(mlp.module_list[0](x)))  # upstream default nlin: leakyrelu
    torch.testing.assert_close(zoo.weights()(x)[0], ref.detach())
    assert zoo.records[0]["metrics"] == {"test_acc": 0.3}
    # a checkpoint holding pickled objects is refused, never unpickled
    torch.save({"module_list.0.weight": torch.zeros(6, 4), "evil": _Evil()}, trial / "checkpoint_1" / "checkpoints")
    with pytest.raises(WeightSpaceError, match=r"checkpoint_1/checkpoints"):
        Zoo.open(tmp_path, format="model_zoos").weights()


class _Evil:
    pass


# =========================================================================== Small CNN Zoo
def _small_cnn(act: str) -> nn.Sequential:
    a = {"relu": nn.ReLU, "tanh": nn.Tanh}[act]
    return nn.Sequential(nn.Conv2d(1, 16, 3, stride=2), a(), nn.Conv2d(16, 16, 3, stride=2), a(),
                         nn.Conv2d(16, 16, 3, stride=2), a(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


_TF_NAMES = ["sequential/conv2d", "sequential/conv2d_1", "sequential/conv2d_2", "sequential/dense"]


def _write_small_cnn_zoo(root, models, acts, gz=True, nan_row=None):
    root.mkdir(parents=True, exist_ok=True)
    layout, rows, col = [], [], 0
    for name, layer in zip(_TF_NAMES, [m for m in models[0] if isinstance(m, (nn.Conv2d, nn.Linear))]):
        kshape = (tuple(layer.weight.shape[2:]) + (layer.weight.shape[1], layer.weight.shape[0])
                  if layer.weight.dim() == 4 else (layer.weight.shape[1], layer.weight.shape[0]))
        for var, shape in ((f"{name}/bias:0", (layer.bias.shape[0],)), (f"{name}/kernel:0", kshape)):
            n = math.prod(shape)
            layout.append({"varname": var, "start_idx": col, "end_idx": col + n, "shape": str(shape)})
            col += n
    for m in models:
        parts = []
        for layer in (l for l in m if isinstance(l, (nn.Conv2d, nn.Linear))):
            w = layer.weight.detach().numpy()
            k = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T  # PyTorch -> TF: OIHW -> HWIO, [out,in] -> [in,out]
            parts += [layer.bias.detach().numpy().ravel(), k.ravel()]
        rows.append(np.concatenate(parts))
    weights = np.stack(rows).astype(np.float32)
    if nan_row is not None:
        weights[nan_row, 200] = np.nan
    np.save(root / "weights.npy", weights)
    with open(root / "layout.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["varname", "start_idx", "end_idx", "shape"])
        w.writeheader()
        w.writerows(layout)
    fields = ["config.activation", "config.dataset", "config.dropout", "config.learning_rate", "config.random_seed",
              "modeldir", "step", "test_accuracy", "test_loss", "train_accuracy", "train_loss"]
    opener = (lambda p: gzip.open(p, "wt", newline="")) if gz else (lambda p: open(p, "w", newline=""))
    with opener(root / ("metrics.csv.gz" if gz else "metrics.csv")) as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, a in enumerate(acts):
            w.writerow({"config.activation": a, "config.dataset": "mnist", "config.dropout": 0.0,
                        "config.learning_rate": 0.01 * (i + 1), "config.random_seed": 42,
                        "modeldir": f"/tmp/run{i // 2}", "step": 86 if i % 2 else 0, "test_accuracy": 0.1 * i,
                        "test_loss": 1.0, "train_accuracy": 0.1 * i + 0.05, "train_loss": 0.9})
    return weights


@pytest.mark.parametrize("gz", [True, False])
def test_small_cnn_zoo(tmp_path, gz):
    gen = torch.Generator().manual_seed(3)
    acts = ["relu", "relu", "tanh", "relu", "tanh"]
    models = []
    for i, a in enumerate(acts):
        torch.manual_seed(10 + i)
        models.append(_perturb(_small_cnn(a), gen))
    root = tmp_path / "mnist"
    _write_small_cnn_zoo(root, models, acts, gz=gz)
    assert detect_format(root) == "small_cnn_zoo"
    zoo = Zoo.open(root)
    assert len(zoo) == 5 and set(zoo.spec_ids) == {"cnn-relu", "cnn-tanh"}
    x = torch.rand(6, 1, 28, 28, generator=gen) * 2 - 1
    for act in ("relu", "tanh"):
        view = zoo.filter(activation=act)
        assert view.spec.num_params == 4970
        idx = [i for i, a in enumerate(acts) if a == act]
        ref = torch.stack([models[i](x) for i in idx]).detach()
        torch.testing.assert_close(view.weights()(x), ref, rtol=1e-5, atol=1e-5)
    # requested order is kept even when reading the memory map in sorted order
    relu = zoo.filter(activation="relu")
    torch.testing.assert_close(relu.weights([2, 0])(x), torch.stack([models[3](x), models[0](x)]).detach(),
                               rtol=1e-5, atol=1e-5)
    r = zoo.records[3]
    assert r["run"] == "/tmp/run1" and r["epoch"] == 86 and r["task"] == "mnist" and r["seed"] == 42
    assert r["metrics"]["test_acc"] == pytest.approx(0.3) and r["hparams"]["learning_rate"] == pytest.approx(0.04)
    assert len(zoo.filter(epoch=86)) == 2


def test_small_cnn_zoo_bad_inputs(tmp_path):
    gen = torch.Generator().manual_seed(4)
    models = [_perturb(_small_cnn("relu"), gen) for _ in range(3)]
    root = tmp_path / "z"
    weights = _write_small_cnn_zoo(root, models, ["relu"] * 3, nan_row=1)
    zoo = Zoo.open(root)
    zoo.weights([0, 2])
    with pytest.raises(WeightSpaceError, match=r"weights\.npy.*non-finite weights in row 1"):
        zoo.weights([1])
    # unknown layout strings name layout.csv
    text = (root / "layout.csv").read_text()
    (root / "layout.csv").write_text(text.replace("sequential/dense/kernel:0", "sequential/dense/gamma:0"))
    with pytest.raises(WeightSpaceError, match=r"layout\.csv.*unknown layout variable 'sequential/dense/gamma:0'"):
        Zoo.open(root)
    (root / "layout.csv").write_text(text.replace('"(16, 10)"', '"__import__(\'os\')"'))
    with pytest.raises(WeightSpaceError, match=r"layout\.csv.*unknown shape string"):
        Zoo.open(root)
    (root / "layout.csv").write_text(text)
    # a truncated matrix names weights.npy
    raw = (root / "weights.npy").read_bytes()
    (root / "weights.npy").write_bytes(raw[: len(raw) - 4000])
    with pytest.raises(WeightSpaceError, match=r"weights\.npy"):
        Zoo.open(root)
    np.save(root / "weights.npy", weights[:2])
    with pytest.raises(WeightSpaceError, match=r"metrics\.csv\.gz.*3 metric rows"):
        Zoo.open(root)


# =========================================================================== DWSNets
class _Sine(nn.Module):
    def __init__(self, w0=30.0):
        super().__init__()
        self.w0 = w0

    def forward(self, x):
        return torch.sin(self.w0 * x)


class _SirenLayer(nn.Module):
    """Upstream ``nn/inr.py: Siren``: weight and bias held directly, sine inside."""

    def __init__(self, dim_in, dim_out, w0=30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim_out, dim_in).uniform_(-1 / dim_in, 1 / dim_in))
        self.bias = nn.Parameter(torch.zeros(dim_out))
        self.activation = _Sine(w0)

    def forward(self, x):
        return self.activation(F.linear(x, self.weight, self.bias))


class DWSINR(nn.Module):
    """Upstream ``nn/inr.py: INR`` (2 -> 32 -> 32 -> 1, output + 0.5)."""

    def __init__(self):
        super().__init__()
        self.seq = nn.Sequential(_SirenLayer(2, 32), _SirenLayer(32, 32), nn.Linear(32, 1))

    def forward(self, x):
        return self.seq(x) + 0.5


def test_dwsnets_folder_with_splits(tmp_path):
    gen = torch.Generator().manual_seed(5)
    root = tmp_path / "mnist-inrs"
    inrs, split = {}, {"train": {"path": [], "label": []}, "val": {"path": [], "label": []},
                       "test": {"path": [], "label": []}}
    for i, (subset, label, s) in enumerate([("training", 3, "train"), ("training", 7, "train"),
                                            ("training", 3, "val"), ("testing", 1, "test"), ("testing", 0, "test")]):
        torch.manual_seed(20 + i)
        inr = _perturb(DWSINR(), gen, 0.05)
        f = root / f"mnist_png_{subset}_{label}_{100 + i}" / "checkpoints" / "model_final.pth"
        f.parent.mkdir(parents=True)
        torch.save(inr.state_dict(), f)
        inrs[f"mnist_png_{subset}_{label}_{100 + i}/checkpoints/model_final"] = inr
        # upstream writes absolute paths from the authors' machine
        split[s]["path"].append(f"/home/someone/data/mnist-inrs/{f.relative_to(root).as_posix()}")
        split[s]["label"].append(str(label))
    (root / "mnist_splits.json").write_text(json.dumps(split))
    assert detect_format(root) == "dwsnets"
    zoo = Zoo.open(root)
    assert len(zoo) == 5 and zoo.spec.num_params == 1185 and zoo.spec.activations == ("sine",)
    assert zoo.meta["output_offset"] == 0.5
    x = torch.rand(50, 2, generator=gen) * 2 - 1
    ws = zoo.weights()
    ref = torch.stack([inrs[r["id"]](x) for r in zoo.records]).detach()
    torch.testing.assert_close(ws(x) + zoo.meta["output_offset"], ref, rtol=1e-5, atol=1e-5)
    assert [(r["split"], r["label"]) for r in zoo.records] == [("train", 3), ("train", 7), ("val", 3), ("test", 1),
                                                              ("test", 0)]
    assert zoo.records[3]["image"] == "mnist_png_testing_1_103"
    # sine symmetries (sign flips) and permutations preserve the INR
    perm = random_permutation(zoo.spec, 5, generator=gen)
    torch.testing.assert_close(permute(ws, perm)(x), ws(x), rtol=1e-4, atol=1e-5)
    # without the splits file: every .pth, labels from the folder names
    (root / "mnist_splits.json").unlink()
    assert detect_format(root) == "dwsnets"
    zoo2 = Zoo.open(root)
    assert sorted(r["label"] for r in zoo2.records) == [0, 1, 3, 3, 7] and "split" not in zoo2.records[0]
    # w0 override changes the evaluated function
    other = Zoo.open(root, w0=10.0).weights([0])
    assert not torch.allclose(other(x), zoo2.weights([0])(x))


def test_dwsnets_missing_file_in_splits(tmp_path):
    root = tmp_path / "inrs"
    f = root / "mnist_png_training_1_0" / "model.pth"
    f.parent.mkdir(parents=True)
    torch.save(DWSINR().state_dict(), f)
    (root / "splits.json").write_text(json.dumps({"train": {"path": [str(f), "/x/mnist_png_training_2_5/model.pth"],
                                                            "label": [1, 2]}}))
    with pytest.raises(WeightSpaceError, match=r"mnist_png_training_2_5/model\.pth.*does not exist"):
        Zoo.open(root)


# =========================================================================== NFN SIREN
class _NFNSineLayer(nn.Module):
    def __init__(self, i, o, w0=30.0):
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(i, o)

    def forward(self, x):
        return torch.sin(self.w0 * self.linear(x))


class NFNSiren(nn.Module):
    """Upstream ``experiments/siren_utils.Siren`` (MNIST config, outermost linear)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(_NFNSineLayer(2, 32), _NFNSineLayer(32, 32), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x)


def test_nfn_siren_folder(tmp_path):
    gen = torch.Generator().manual_seed(6)
    root = tmp_path / "siren_mnist_wts"
    nets_by_id = {}
    for idx, label in enumerate([4, 0, 4, 9, 2, 7]):
        for prefix in ("randinit_smaller", "randinit_smaller_aug0"):
            torch.manual_seed(idx * 2 + len(prefix))
            m = _perturb(NFNSiren(), gen, 0.05)
            f = root / f"{prefix}_{label}s" / f"net{idx}.pth"
            f.parent.mkdir(parents=True, exist_ok=True)
            torch.save(m.state_dict(), f)
            nets_by_id[f"{prefix}_{label}s/net{idx}"] = m
    assert detect_format(root) == "nfn"
    zoo = Zoo.open(root, split_points=(3, 5))
    assert len(zoo) == 6 and [r["image"] for r in zoo.records] == list(range(6))
    assert [r["label"] for r in zoo.records] == [4, 0, 4, 9, 2, 7]
    assert [r["split"] for r in zoo.records] == ["train"] * 3 + ["val"] * 2 + ["test"]
    x = torch.rand(40, 2, generator=gen) * 2 - 1
    ref = torch.stack([nets_by_id[r["id"]](x) for r in zoo.records]).detach()
    torch.testing.assert_close(zoo.weights()(x), ref, rtol=1e-5, atol=1e-5)
    both = Zoo.open(root, prefix=None, split_points=(3, 5))
    assert len(both) == 12 and {r["view"] for r in both.records} == {"randinit_smaller", "randinit_smaller_aug0"}
    ref = torch.stack([nets_by_id[r["id"]](x) for r in both.records]).detach()
    torch.testing.assert_close(both.weights()(x), ref, rtol=1e-5, atol=1e-5)


# =========================================================================== plain folders
def test_plain_folder_with_metadata(tmp_path):
    mods, x = nets.make("mlp", 5, seed=7)
    root = tmp_path / "ckpts"
    root.mkdir()
    for i, m in enumerate(mods[:4]):
        save_safetensors(root / f"model_{i}.safetensors", m.state_dict(), {"epoch": str(i), "note": "hi"})
    torch.save(mods[4].state_dict(), root / "model_4.pt")
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "test_acc", "split", "metrics.loss"])
        for i in range(5):
            ext = "pt" if i == 4 else "safetensors"
            w.writerow([f"model_{i}.{ext}", 0.2 * i, "train" if i < 3 else "test", 1.0 - 0.1 * i])
    assert detect_format(root) == "plain"
    zoo = Zoo.open(root)
    assert [r["id"] for r in zoo.records] == [f"model_{i}" for i in range(5)]
    torch.testing.assert_close(zoo.weights()(x), torch.stack([m(x) for m in mods]).detach())
    r = zoo.records[2]
    assert r["epoch"] == 2 and r["note"] == "hi" and r["test_acc"] == pytest.approx(0.4)
    assert r["metrics"] == {"loss": pytest.approx(0.8)} and r["split"] == "train"
    assert [x["id"] for x in zoo.filter(test_acc=(0.5, None)).records] == ["model_3", "model_4"]
    # a single file opens as a one-checkpoint zoo
    assert len(Zoo.open(root / "model_4.pt")) == 1


def test_plain_folder_id_column_json_and_stacked(tmp_path):
    mods, x = nets.make("siren", 4, seed=8)
    root = tmp_path / "sirens"
    save_weight_space(WeightSpace.from_modules(mods[:3]), root / "batch.safetensors")
    save_safetensors(root / "extra.safetensors", mods[3].state_dict())
    (root / "index.json").write_text(json.dumps([{"id": "batch#1", "label": 5}, {"id": "extra", "label": 2}]))
    zoo = Zoo.open(root)
    assert [r["id"] for r in zoo.records] == ["batch#0", "batch#1", "batch#2", "extra"]
    assert zoo.spec.activations == ("sine",)  # from the stacked file's spec
    torch.testing.assert_close(zoo.weights([3, 1])(x), torch.stack([mods[3](x), mods[1](x)]).detach())
    assert [r.get("label") for r in zoo.records] == [None, 5, None, 2]


def test_plain_folder_inference_options_and_errors(tmp_path):
    mods, x = nets.make("siren", 2, seed=9)
    root = tmp_path / "a"
    root.mkdir()
    for i, m in enumerate(mods):
        torch.save(m.state_dict(), root / f"{i}.pth")
    relu = Zoo.open(root)  # default activation: relu (documented)
    assert relu.spec.activations == ("relu",)
    sine = Zoo.open(root, activation="sine", w0=30.0)
    torch.testing.assert_close(sine.weights()(x), torch.stack([m(x) for m in mods]).detach())
    assert Zoo.open(root, spec=spec_from_module(mods[0])).spec == spec_from_module(mods[0])
    # a conv state_dict cannot be inferred
    cnn, _ = nets.make("cnn2d", 1)
    croot = tmp_path / "c"
    croot.mkdir()
    save_safetensors(croot / "c.safetensors", cnn[0].state_dict())
    with pytest.raises(WeightSpaceError, match=r"c\.safetensors.*pass spec="):
        Zoo.open(croot)
    assert Zoo.open(croot, spec=spec_from_module(cnn[0])).spec.num_params == spec_from_module(cnn[0]).num_params


def test_plain_folder_mixed_architectures_name_both_files(tmp_path):
    a, _ = nets.make("mlp", 1)
    b, _ = nets.make("mlp_nobias", 1)
    root = tmp_path / "mixed"
    root.mkdir()
    save_safetensors(root / "a.safetensors", a[0].state_dict())
    save_safetensors(root / "b.safetensors", b[0].state_dict())
    with pytest.raises(WeightSpaceError) as e:
        Zoo.open(root)
    assert "a.safetensors" in str(e.value) and "b.safetensors" in str(e.value)
    # .pt files are compared when read; both files are named there too
    (root / "b.safetensors").unlink()
    torch.save(b[0].state_dict(), root / "b.pt")
    zoo = Zoo.open(root)
    with pytest.raises(WeightSpaceError) as e:
        zoo.weights()
    assert "a.safetensors" in str(e.value) and "b.pt" in str(e.value)


def test_plain_folder_bad_files(tmp_path):
    mods, _ = nets.make("mlp", 2)
    root = tmp_path / "p"
    root.mkdir()
    save_safetensors(root / "m0.safetensors", mods[0].state_dict())
    save_safetensors(root / "m1.safetensors", mods[1].state_dict())
    (root / "metadata.csv").write_text("file,test_acc\nm0.safetensors,0.5\nm7.safetensors,0.2\n")
    with pytest.raises(WeightSpaceError, match=r"m7\.safetensors.*does not exist"):
        Zoo.open(root)
    (root / "metadata.csv").unlink()
    sd = {k: v.clone() for k, v in mods[1].state_dict().items()}
    sd["2.weight"][0, 0] = float("nan")
    save_safetensors(root / "m1.safetensors", sd)
    zoo = Zoo.open(root)
    zoo.weights([0])
    with pytest.raises(WeightSpaceError, match=r"m1\.safetensors.*2\.weight.*non-finite"):
        zoo.weights([1])
    raw = (root / "m1.safetensors").read_bytes()
    (root / "m1.safetensors").write_bytes(raw[:-100])
    with pytest.raises(WeightSpaceError, match=r"m1\.safetensors.*truncated"):
        Zoo.open(root)
    torch.save({"0.weight": torch.zeros(32, 2), "obj": _Evil()}, root / "m1.pt")
    (root / "m1.safetensors").unlink()
    with pytest.raises(WeightSpaceError, match=r"m1\.pt.*refused"):
        Zoo.open(root).weights([1])


def test_detect_format_unknown(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WeightSpaceError, match="no zoo format recognized"):
        Zoo.open(tmp_path)
    with pytest.raises(WeightSpaceError, match="unknown zoo format"):
        Zoo.open(tmp_path, format="hdf5")


def test_unknown_reader_option_is_refused(tmp_path):
    mods, _ = nets.make("mlp", 1)
    save_safetensors(tmp_path / "m.safetensors", mods[0].state_dict())
    with pytest.raises(WeightSpaceError, match="does not take that option"):
        Zoo.open(tmp_path, actvation="tanh")


# --------------------------------------------------------------------------- formats chosen by config
def test_formats_come_from_configs_in_detection_order():
    from importlib import resources

    from datasets_zoo import adapters
    from datasets_zoo.adapters import zoo_formats

    assert list(adapters.FORMATS) == ["native", "small_cnn_zoo", "model_zoos", "nfn", "dwsnets", "plain"]
    names = sorted(f.name[:-5] for f in (resources.files("configs") / "zoo_format").iterdir()
                   if f.name.endswith(".yaml"))
    assert sorted(zoo_formats()) == names
    for name, (detect, open_) in adapters.FORMATS.items():
        assert callable(detect) and callable(open_)
        assert detect.__module__ == open_.__module__ == f"datasets_zoo.adapters.{name}"
    assert [n for n, f in zoo_formats().items() if f.single_file] == ["plain"]


def test_a_format_is_one_module_and_one_config():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from datasets_zoo.adapters import ZooFormat, nfn

    fmt = instantiate(OmegaConf.create({
        "_target_": "datasets_zoo.adapters.registry.ZooFormat", "name": "nfn_copy", "order": 45,
        "detect": "datasets_zoo.adapters.nfn.detect", "open": "datasets_zoo.adapters.nfn.open_source"}))
    assert isinstance(fmt, ZooFormat) and fmt.detect is nfn.detect and fmt.open is nfn.open_source
    assert fmt.order == 45 and fmt.single_file is False
    with pytest.raises(WeightSpaceError, match="nfn_copy"):
        ZooFormat("nfn_copy", 45, "datasets_zoo.adapters.nfn.no_such_function", nfn.open_source)


def test_unknown_format_and_empty_folder_are_named(tmp_path):
    (tmp_path / "net.pt").write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightSpaceError, match="unknown zoo format 'nope'"):
        Zoo.open(tmp_path, format="nope")
    with pytest.raises(WeightSpaceError, match="no zoo format recognized"):
        detect_format(empty)
