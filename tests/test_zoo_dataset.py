"""ZooDataset: leak-free splits, train-only statistics, batched loading (dense and graph)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader as GraphLoader

from datasets_zoo.dataset import ZooDataset, collate_dense
from datasets_zoo.format import ZooWriter
from datasets_zoo.zoo import Zoo
from tests import nets
from wspace import WeightSpace, WeightSpaceError
from wspace.graph import from_graph

N_RUNS, N_EPOCHS = 10, 4


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory):
    """10 runs x 4 epochs of a small MLP; run r's weights are shifted by r, so statistics
    depend on which runs they see."""
    path = tmp_path_factory.mktemp("ds") / "zoo"
    mods, _ = nets.make("mlp_nobias", N_RUNS * N_EPOCHS, seed=11)
    ws = WeightSpace.from_modules(mods)
    shift = torch.arange(N_RUNS * N_EPOCHS) // N_EPOCHS
    ws = WeightSpace(ws.spec, [t + shift.reshape(-1, *([1] * (t.dim() - 1))).float() for t in ws.tensors])
    recs = []
    for i in range(N_RUNS * N_EPOCHS):
        r, e = divmod(i, N_EPOCHS)
        recs.append({"id": f"r{r}e{e}", "run": f"run{r}", "seed": r, "task": f"task{r % 5}", "epoch": e,
                     "label": r % 3, "image": f"img{r // 2}", "hparams": {"lr": 0.1 * r},
                     "metrics": {"test_acc": 0.05 * r + 0.01 * e}})
    with ZooWriter(path) as w:  # several shards, so batches cross shard boundaries
        for s in range(0, len(recs), 12):
            w.append(ws[s:s + 12], recs[s:s + 12])
    return path, ws


def _runs(ds: ZooDataset) -> set:
    return {r["run"] for r in ds.records}


@pytest.mark.parametrize("split_by", ["run", "task", "image"])
def test_splits_are_disjoint_by_group_and_deterministic(zoo_path, split_by):
    zoo = Zoo.open(zoo_path[0])
    parts = {s: zoo.dataset(split=s, split_by=split_by, seed=3) for s in ("train", "val", "test")}
    ids = [set(r["id"] for r in d.records) for d in parts.values()]
    assert sum(map(len, ids)) == len(zoo) and set.union(*ids) == {r["id"] for r in zoo.records}
    groups = [{r[split_by] for r in d.records} for d in parts.values()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert all(len(d) > 0 for d in parts.values())
    # every epoch of a run lands in the same split (never split by epoch)
    for d in parts.values():
        for run in _runs(d):
            assert sum(r["run"] == run for r in d.records) == N_EPOCHS
    again = zoo.dataset(split="train", split_by=split_by, seed=3)
    np.testing.assert_array_equal(again.indices, parts["train"].indices)


def test_split_fractions_seeds_and_predefined(zoo_path):
    zoo = Zoo.open(zoo_path[0])
    tr = zoo.dataset("train", split_by="run", seed=0)
    assert len(_runs(tr)) == 8 and len(_runs(zoo.dataset("val", split_by="run"))) == 1
    seeds = {tuple(sorted(_runs(zoo.dataset("test", split_by="run", seed=s)))) for s in range(6)}
    assert len(seeds) > 1  # the seed changes the partition
    half = zoo.dataset("train", split_by="run", fractions=(0.5, 0.0, 0.5))
    assert len(_runs(half)) == 5 and len(zoo.dataset("val", split_by="run", fractions=(0.5, 0.0, 0.5))) == 0
    with pytest.raises(WeightSpaceError, match="fractions"):
        zoo.dataset("train", fractions=(0.5, 0.2, 0.2))
    with pytest.raises(WeightSpaceError, match="no 'colour' to split by"):
        zoo.dataset("train", split_by="colour")
    # 'auto' means run here; with a split field on every record it uses that split
    np.testing.assert_array_equal(zoo.dataset("train").indices, tr.indices)
    by_label = ZooDataset(zoo.filter(epoch=0), split="val", split_by="label")
    assert len({r["label"] for r in by_label.records}) == 1  # any record field groups


def test_predefined_split_is_used_by_auto(tmp_path):
    mods, _ = nets.make("mlp", 6)
    names = ["train", "training", "val", "test", "testing", "validation"]
    with ZooWriter(tmp_path / "z") as w:
        w.append(WeightSpace.from_modules(mods), [{"id": f"m{i}", "run": "same", "split": s} for i, s in
                                                  enumerate(names)])
    zoo = Zoo.open(tmp_path / "z")
    got = {s: [r["id"] for r in zoo.dataset(s).records] for s in ("train", "val", "test")}
    assert got == {"train": ["m0", "m1"], "val": ["m2", "m5"], "test": ["m3", "m4"]}
    assert zoo.dataset("train").split_by == "split"
    assert len(zoo.dataset("train", split_by="run", fractions=(1.0, 0.0, 0.0))) == 6


def test_stats_come_from_train_only(zoo_path):
    zoo = Zoo.open(zoo_path[0])
    val = zoo.dataset("val", split_by="run", seed=1)
    train = zoo.dataset("train", split_by="run", seed=1)
    w = zoo.weights(train.indices)
    expected_mean = torch.stack([t.double().mean() for t in w.tensors])
    expected_std = torch.stack([t.double().std(unbiased=False) for t in w.tensors])
    torch.testing.assert_close(val.stats.mean, expected_mean)  # the val dataset reports train statistics
    torch.testing.assert_close(val.stats.std, expected_std)
    torch.testing.assert_close(train.stats.mean, expected_mean)
    everything = zoo.weights()
    assert not torch.allclose(val.stats.mean, torch.stack([t.double().mean() for t in everything.tensors]))
    # normalize / denormalize
    ws = zoo.weights(train.indices)
    z = train.stats.normalize(ws)
    for t in z.tensors:
        assert abs(float(t.double().mean())) < 1e-5 and abs(float(t.double().std(unbiased=False)) - 1) < 1e-4
    back = train.stats.denormalize(z)
    for a, b in zip(back.tensors, ws.tensors):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Zoo.splits shares one partition and one set of statistics
    parts = zoo.splits(split_by="run", seed=1, normalize=True)
    assert parts["test"].stats is parts["train"].stats
    np.testing.assert_array_equal(parts["val"].indices, val.indices)


def test_dense_loader_batches(zoo_path, zoo_reads):
    path, ws_all = zoo_path
    zoo = Zoo.open(path)
    ds = zoo.dataset("train", target="test_acc", split_by="run")
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False, collate_fn=collate_dense)
    seen = 0
    for ws, y in loader:
        assert isinstance(ws, WeightSpace) and ws.spec == zoo.spec and y.dtype == torch.float32
        idx = ds.indices[seen:seen + len(ws)]
        for a, b in zip(ws.tensors, ws_all.tensors):
            torch.testing.assert_close(a, b[torch.from_numpy(idx)])
        expected = torch.tensor([zoo.records[i]["metrics"]["test_acc"] for i in idx], dtype=torch.float32)
        torch.testing.assert_close(y, expected)
        seen += len(ws)
    assert seen == len(ds) == 32
    assert zoo_reads == [8, 8, 8, 8]  # one batched zoo read per batch, not one per network
    ws1, y1 = ds[3]
    assert len(ws1) == 1 and y1.shape == ()
    assert isinstance(next(iter(ds.loader(batch_size=4)))[0], WeightSpace)


def test_targets_transform_and_normalize(zoo_path):
    zoo = Zoo.open(zoo_path[0])
    ds = zoo.dataset("test", target="class", split_by="run")
    assert ds.targets.dtype == torch.long
    assert ds.targets.tolist() == [r["label"] for r in ds.records]
    custom = zoo.dataset("test", target=lambda r: r["epoch"] * 2.0, split_by="run")
    assert custom.targets.tolist() == [2.0 * r["epoch"] for r in custom.records]
    lr = zoo.dataset("test", target="lr", split_by="run")  # hparams are targets too
    torch.testing.assert_close(lr.targets, torch.tensor([r["hparams"]["lr"] for r in lr.records],
                                                        dtype=torch.float32))
    with pytest.raises(WeightSpaceError, match="no target 'accuracy'"):
        zoo.dataset("test", target="accuracy")
    # any recorded metric of the split, in dataset order, whatever the target is
    torch.testing.assert_close(ds.record_values("lr"), lr.targets)
    assert ds.record_values(lambda r: r["epoch"]).tolist() == [r["epoch"] for r in ds.records]
    with pytest.raises(WeightSpaceError, match="has no target 'accuracy'"):
        ds.record_values("accuracy")
    flip = zoo.dataset("test", split_by="run", normalize=True, transform=lambda ws: ws * -1.0)
    plain = zoo.dataset("test", split_by="run")
    a, _ = collate_dense(flip.__getitems__([0, 1]))
    b, _ = collate_dense(plain.__getitems__([0, 1]))
    for x, y in zip(a.tensors, flip.stats.normalize(b).tensors):
        torch.testing.assert_close(x, -y)


def test_graph_items_and_pyg_loader(zoo_path):
    zoo = Zoo.open(zoo_path[0])
    ds = zoo.dataset("train", target="class", representation="graph", split_by="run")
    loader = GraphLoader(ds, batch_size=5, shuffle=False)
    batch = next(iter(loader))
    assert batch.num_graphs == 5 and batch.y.tolist() == ds.targets[:5].tolist()
    back = from_graph(batch, zoo.spec)
    expected = zoo.weights(ds.indices[:5])
    for a, b in zip(back.tensors, expected.tensors):
        torch.testing.assert_close(a, b)
    assert ds[0].y.shape == (1,)
    assert next(iter(ds.loader(batch_size=3))).num_graphs == 3


def test_dataset_needs_one_architecture(tmp_path):
    a, _ = nets.make("mlp", 2)
    b, _ = nets.make("siren", 2)
    with ZooWriter(tmp_path / "z") as w:
        w.append(WeightSpace.from_modules(a), [{"id": "a0", "run": "a"}, {"id": "a1", "run": "a"}])
        w.append(WeightSpace.from_modules(b), [{"id": "b0", "run": "b"}, {"id": "b1", "run": "c"}])
    zoo = Zoo.open(tmp_path / "z")
    with pytest.raises(WeightSpaceError, match="spec-0.*spec-1"):
        zoo.dataset("train")
    assert len(zoo.filter(spec_id="spec-1").dataset("train", fractions=(0.5, 0.0, 0.5))) == 1
