"""The encoder contract (wspace.nn.Encoder / EquivariantEncoder), checked on every encoder class.

Invariant encoders: ``Cls(spec, out_features, **options)``, ``forward(ws) -> [B, k]`` equal to
``head(features(ws))``, ``features(ws) -> [B, d]``; invariant to the library's own random
permutations (``wspace.symmetry.random_permutation`` + ``permute``) as their ``symmetry``
says, and not more: an uncoupled permutation (one weight's rows without the next layer's
columns) changes the output. Equivariant encoders: ``Cls(spec, **options)(ws) -> WeightSpace``,
equivariant to those permutations and not to uncoupled ones. Configs with ``_target_``
build them (``build_encoder`` / ``build_equivariant``), and a user's encoder (one class +
one YAML) trains through ``wspace train``.
"""
from __future__ import annotations

import inspect
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from nets import make
from torch import nn

import wspace.nn as wnn
from wspace import WeightSpace, WeightSpaceError
from wspace.nn import (
    DWSNet, Encoder, EquivariantDWSNet, EquivariantEncoder, EquivariantNeuralGraphEncoder, EquivariantNFN,
    EquivariantUNF, FlatMLP, NeuralGraphEncoder, NFN, StatNN, UNF, build_encoder, build_equivariant,
)
from wspace.symmetry import permute, random_permutation

pytestmark = pytest.mark.usefixtures("one_thread")

B = 3
FAMILIES = ["mlp", "cnn2d", "res_mlp"]
# (class, small options): every invariant encoder of wspace.nn
INVARIANT = {
    "UNF": (UNF, dict(hidden=4, layers=2, head_hidden=8)),
    "NFN-hnp": (NFN, dict(mode="hnp", hidden=4, layers=2, head_hidden=8)),
    "NFN-np": (NFN, dict(mode="np", hidden=4, layers=2, head_hidden=8)),
    "DWSNet": (DWSNet, dict(hidden=4, layers=2, head_hidden=8)),
    "NeuralGraphEncoder": (NeuralGraphEncoder, dict(hidden=8, layers=2, head_hidden=8)),
    "FlatMLP": (FlatMLP, dict(hidden=8, layers=2)),
    "StatNN": (StatNN, dict(hidden=8, layers=2)),
}
EQUIVARIANT = {
    "EquivariantUNF": (EquivariantUNF, dict(hidden=4, layers=2)),
    "EquivariantNFN-hnp": (EquivariantNFN, dict(mode="hnp", hidden=4, layers=2)),
    "EquivariantNFN-np": (EquivariantNFN, dict(mode="np", hidden=4, layers=2)),
    "EquivariantDWSNet": (EquivariantDWSNet, dict(hidden=4, layers=2)),
    "EquivariantNeuralGraphEncoder": (EquivariantNeuralGraphEncoder, dict(hidden=8, layers=2)),
}
CHAIN_ONLY = {DWSNet, EquivariantDWSNet}


@lru_cache(maxsize=None)
def _ws(family: str) -> WeightSpace:
    return WeightSpace.from_modules(make(family, B, seed=2)[0]).to(torch.float64)


def _diff(a, b) -> float:
    if isinstance(a, WeightSpace):
        return max((x - y).abs().max().item() for x, y in zip(a.tensors, b.tensors))
    return (a - b).abs().max().item()


def _cases(table: dict) -> list:
    return [pytest.param(name, fam, id=f"{name}-{fam}") for name in table for fam in FAMILIES
            if not (table[name][0] in CHAIN_ONLY and fam.startswith("res_"))]


def _build(table: dict, name: str, spec, *args):
    cls, options = table[name]
    torch.manual_seed(0)
    return cls(spec, *args, **options).double()


def _uncoupled(ws: WeightSpace) -> WeightSpace:
    """Permute the first layer's output neurons (its weight rows and bias) without the next
    layer's input columns: not a symmetry of the networks."""
    first = ws.spec.layers[0]
    n = ws.tensors[first.weight].shape[1]
    perm = torch.roll(torch.arange(n), 1)
    ts = list(ws.tensors)
    ts[first.weight] = ts[first.weight][:, perm]
    if first.bias is not None:
        ts[first.bias] = ts[first.bias][:, perm]
    return WeightSpace(ws.spec, ts)


# ------------------------------------------------------------------ coverage
SHARED_BASES = {wnn.FeatureEncoder, wnn.EquivariantFeatureEncoder}  # bases of UNF / NFN / DWSNet, not encoders


def _exported(base: type) -> set[type]:
    """The concrete encoder classes ``wspace.nn`` exports."""
    return {v for v in vars(wnn).values()
            if isinstance(v, type) and issubclass(v, base) and v is not base and v not in SHARED_BASES}


def test_every_exported_encoder_is_checked_here():
    assert _exported(Encoder) == {cls for cls, _ in INVARIANT.values()}
    assert _exported(EquivariantEncoder) == {cls for cls, _ in EQUIVARIANT.values()}
    for cls, _ in INVARIANT.values():
        assert cls.symmetry in wnn.SYMMETRIES
        assert cls.equivariant is None or issubclass(cls.equivariant, EquivariantEncoder)
        params = inspect.signature(cls).parameters
        assert list(params)[:2] == ["spec", "out_features"], cls  # one constructor shape
        assert set(cls.invariant_only_options) <= set(params), cls
    for cls, _ in EQUIVARIANT.values():
        assert list(inspect.signature(cls).parameters)[0] == "spec"
        assert {"residual", "residual_init"} <= set(inspect.signature(cls).parameters)


# ------------------------------------------------------------------ invariant encoders
@pytest.mark.parametrize("name,family", _cases(INVARIANT))
def test_invariant_contract(name, family):
    ws = _ws(family)
    enc = _build(INVARIANT, name, ws.spec, 5).eval()
    assert isinstance(enc, Encoder) and enc.out_features == 5
    y, z = enc(ws), enc.features(ws)
    assert isinstance(y, torch.Tensor) and y.shape == (B, 5) and torch.isfinite(y).all()
    assert isinstance(z, torch.Tensor) and z.dim() == 2 and z.shape[0] == B
    assert torch.equal(enc.head(z), y)  # forward = head(features)
    assert _diff(y[0], y[1]) > 1e-6  # different networks, different outputs
    with pytest.raises(WeightSpaceError, match="expected a WeightSpace"):
        enc(torch.zeros(B, 4))

    p = random_permutation(ws.spec, B, generator=torch.Generator().manual_seed(5))
    wp = permute(ws, p)
    unc = _uncoupled(ws)
    if enc.symmetry == "none":
        assert _diff(enc(wp), y) > 1e-6
    else:
        assert _diff(enc.features(wp), z) < 1e-10 and _diff(enc(wp), y) < 1e-10
    if enc.symmetry == "tensor_entries":  # per-tensor statistics cannot see any reordering ...
        assert _diff(enc(unc), y) < 1e-10
        moved = WeightSpace(ws.spec, [t * (1.5 if i == 0 else 1.0) for i, t in enumerate(ws.tensors)])
        assert _diff(enc(moved), y) > 1e-6  # ... but they see the values
    else:  # a layer that is too symmetric is a bug: an uncoupled permutation must show
        assert _diff(enc(unc), y) > 1e-6


@pytest.mark.parametrize("name", list(INVARIANT))
def test_equivariant_counterpart_is_built_from_the_invariant_options(name):
    cls, options = INVARIANT[name]
    ws = _ws("mlp")
    config = {"_target_": f"{cls.__module__}.{cls.__qualname__}", **options}
    enc = build_encoder(config, ws.spec, 2)
    assert type(enc) is cls
    if cls.equivariant is None:
        with pytest.raises(WeightSpaceError, match="no equivariant"):
            build_equivariant(config, ws.spec)
        return
    eq, dropped = build_equivariant(config, ws.spec, residual=True)
    assert type(eq) is cls.equivariant and eq.residual
    assert set(dropped) == set(options) & set(cls.invariant_only_options) and "head_hidden" in dropped
    assert isinstance(eq(ws.to(torch.float32)), WeightSpace)


# ------------------------------------------------------------------ equivariant encoders
@pytest.mark.parametrize("name,family", _cases(EQUIVARIANT))
def test_equivariant_contract(name, family):
    ws = _ws(family)
    enc = _build(EQUIVARIANT, name, ws.spec).eval()
    assert isinstance(enc, EquivariantEncoder) and not enc.residual and enc.gamma is None
    out = enc(ws)
    assert isinstance(out, WeightSpace) and out.spec == ws.spec
    assert all(a.shape == b.shape for a, b in zip(out.tensors, ws.tensors))
    p = random_permutation(ws.spec, B, generator=torch.Generator().manual_seed(6))
    assert _diff(enc(permute(ws, p)), permute(out, p)) < 1e-10
    assert _diff(enc(_uncoupled(ws)), _uncoupled(out)) > 1e-6
    with pytest.raises(WeightSpaceError, match="expected|WeightSpace"):
        enc(torch.zeros(B, 4))
    # the editing parametrization: ws + gamma * f(ws), same f
    cls, options = EQUIVARIANT[name]
    torch.manual_seed(0)
    res = cls(ws.spec, residual=True, residual_init=0.5, **options).double().eval()
    assert _diff(res(ws), ws + enc(ws) * 0.5) < 1e-10


# ------------------------------------------------------------------ configs
def test_config_errors_name_the_problem():
    spec = _ws("mlp").spec
    with pytest.raises(WeightSpaceError, match="_target_"):
        build_encoder({"hidden": 8}, spec, 2)
    with pytest.raises(WeightSpaceError, match="'torch.nn.Linear' is not a wspace.nn.encoder.Encoder subclass"):
        build_encoder({"_target_": "torch.nn.Linear"}, spec, 2)
    with pytest.raises(WeightSpaceError, match="'wspace.nn.Nope' does not name an importable class"):
        build_encoder({"_target_": "wspace.nn.Nope"}, spec, 2)
    with pytest.raises(WeightSpaceError, match=r"UNF: bad options \['hiden'\]"):
        build_encoder({"_target_": "wspace.nn.UNF", "hiden": 8}, spec, 2)
    with pytest.raises(WeightSpaceError, match="positive integer"):  # the encoder's own errors pass through
        build_encoder({"_target_": "wspace.nn.UNF", "hidden": 0}, spec, 2)
    with pytest.raises(WeightSpaceError, match="no equivariant.*UNF"):
        build_equivariant({"_target_": "wspace.nn.StatNN"}, spec)
    eq, dropped = build_equivariant({"_target_": "wspace.nn.EquivariantUNF", "hidden": 4}, spec)
    assert type(eq) is EquivariantUNF and dropped == []


def test_task_validates_the_encoder_target_and_keeps_a_primitive_config():
    from wspace.tasks import InrClassification

    spec = _ws("mlp").spec
    with pytest.raises(WeightSpaceError, match="not a wspace.nn.encoder.Encoder subclass"):
        InrClassification(spec, 3, encoder={"_target_": "torch.nn.Linear"})
    with pytest.raises(WeightSpaceError, match="unknown encoder 'unff'.*unf"):
        InrClassification(spec, 3, encoder="unff")
    task = InrClassification(spec, 3, encoder="nfn_np", encoder_kwargs={"hidden": 4})
    assert isinstance(task.encoder, NFN) and task.encoder.mode == "np"
    assert task.hparams.encoder == {"_target_": "wspace.nn.NFN", "mode": "np", "io_embed": True, "hidden": 4,
                                    "layers": 3, "head_hidden": 128, "head_layers": 2}
    assert json.loads(json.dumps(dict(task.hparams)))  # plain data (checkpoints load with weights_only)


# ------------------------------------------------------------------ a user's encoder
class TinyEncoder(Encoder):
    """A user's encoder (one class): per-tensor mean and std, scaled, -> linear head."""

    symmetry = "tensor_entries"

    def __init__(self, spec, out_features: int, *, scale: float = 1.0):
        super().__init__(spec, out_features)
        self.scale = float(scale)
        self.head = nn.Linear(2 * len(spec.params), out_features)

    def features(self, ws: WeightSpace) -> torch.Tensor:
        self.check_input(ws)
        flat = [t.reshape(len(ws), -1) for t in ws.tensors]
        return self.scale * torch.cat([torch.stack([f.mean(1), f.std(1, correction=0)], 1) for f in flat], 1)


TINY = f"{TinyEncoder.__module__}.{TinyEncoder.__qualname__}"


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datasets_zoo.build import build_zoo

    return build_zoo("digits-inr", tmp_path_factory.mktemp("zoo") / "inr", size="small", progress=False)


def test_user_encoder_from_one_class_and_one_yaml_trains(inr_zoo, tmp_path):
    """One file (the class above) + one YAML with its ``_target_`` (in the user's own config
    folder, on hydra's search path): ``wspace train`` builds, trains and reloads it."""
    from wspace.commands.train import build, fit
    from wspace.config import compose_config
    from wspace.tasks import InrClassification

    folder = tmp_path / "my_configs" / "encoder"
    folder.mkdir(parents=True)
    (folder / "tiny.yaml").write_text(f"_target_: {TINY}\nscale: 2.0\n")
    search = f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]"
    cfg = compose_config("train", [search, "task=inr_classification", "encoder=tiny", f"zoo={inr_zoo}",
                                   f"out={tmp_path / 'unused'}"])
    _, module = build(cfg)
    assert type(module.encoder) is TinyEncoder and module.encoder.scale == 2.0

    quiet = {"enable_progress_bar": False, "max_epochs": 1}
    m = fit("inr_classification", "tiny", inr_zoo, tmp_path / "run", trainer=quiet, overrides=[search], batch_size=4)
    assert m["encoder"] == {"_target_": TINY, "scale": 2.0} and 0.0 <= m["test/acc"] <= 1.0
    best = InrClassification.load_from_checkpoint(m["best_checkpoint"], weights_only=True)
    assert type(best.encoder) is TinyEncoder and best.encoder.scale == 2.0
    # a config mapping works without any YAML file
    m2 = fit("inr_classification", {"_target_": TINY}, inr_zoo, tmp_path / "run2", trainer=quiet, batch_size=4,
             encoder_kwargs={"scale": 0.5})
    assert m2["encoder"] == {"_target_": TINY, "scale": 0.5}
