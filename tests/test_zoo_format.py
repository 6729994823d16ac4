"""Native zoo format: round trip, resume after a kill, laziness, bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from datasets_zoo.format import reader as zreader
from datasets_zoo.format import ZooWriter
from datasets_zoo.zoo import Zoo
from tests import nets
from wspace import WeightSpace, WeightSpaceError
from wspace.io import load_weight_space, save_safetensors


def _records(prefix: str, n: int, epoch0: int = 0) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "run": f"{prefix}-run{i % 2}", "seed": i, "task": "digits", "epoch": epoch0 + i,
         "hparams": {"lr": 0.01 * (i + 1), "act": "relu"}, "metrics": {"test_acc": 0.1 * i, "loss": 1.0 / (i + 1)},
         "note": f"extra-{i}"}
        for i in range(n)
    ]


@pytest.fixture
def two_spec_zoo(tmp_path):
    mlps, x_mlp = nets.make("mlp", 5, seed=1)
    cnns, x_cnn = nets.make("cnn2d", 3, seed=2)
    ws_mlp = WeightSpace.from_modules(mlps)
    ws_cnn = WeightSpace.from_modules(cnns)
    path = tmp_path / "zoo"
    recs = [_records("a", 3), _records("c", 3), _records("b", 2, epoch0=10)]
    with ZooWriter(path, meta={"tasks": {"digits": {"classes": list(range(10))}}}) as w:
        w.append(ws_mlp[0:3], recs[0])
        w.append(ws_cnn, recs[1])
        w.append(ws_mlp[3:5], recs[2])
    return path, ws_mlp, ws_cnn, x_mlp, x_cnn, recs


def _same(a: WeightSpace, b: WeightSpace) -> bool:
    return a.spec == b.spec and all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))


# --------------------------------------------------------------------------- round trip
def test_round_trip_two_specs(two_spec_zoo):
    path, ws_mlp, ws_cnn, x_mlp, x_cnn, recs = two_spec_zoo
    zoo = Zoo.open(path)
    assert zoo.format == "native" and len(zoo) == 8
    assert zoo.spec_ids == ["spec-0", "spec-1"]
    assert zoo.tasks == {"digits": {"classes": list(range(10))}}
    # records come back exactly, in append order, with the writer's fields added
    expected = recs[0] + recs[1] + recs[2]
    got = zoo.records
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    for r, e in zip(got, expected):
        assert {k: r[k] for k in e} == e
    assert [r["spec_id"] for r in got] == ["spec-0"] * 3 + ["spec-1"] * 3 + ["spec-0"] * 2
    assert [r["shard"] for r in got] == ["shard-00000.safetensors"] * 3 + ["shard-00001.safetensors"] * 3 + \
        ["shard-00002.safetensors"] * 2
    # weights equal, across shards, in the requested order
    mlp = zoo.filter(spec_id="spec-0")
    assert mlp.spec == ws_mlp.spec
    assert _same(mlp.weights(), ws_mlp)
    picked = mlp.weights([4, 0, 3])
    assert _same(picked, WeightSpace.cat([ws_mlp[4], ws_mlp[0], ws_mlp[3]]))
    torch.testing.assert_close(picked(x_mlp), WeightSpace.cat([ws_mlp[4], ws_mlp[0], ws_mlp[3]])(x_mlp))
    cnn = zoo.filter(spec_id="spec-1")
    assert _same(cnn.weights(slice(None)), ws_cnn)
    torch.testing.assert_close(cnn.weights(np.array([2]))(x_cnn), ws_cnn[2](x_cnn))
    # a shard is self-describing: the core reader loads it alone
    assert _same(load_weight_space(path / "shards" / "shard-00001.safetensors"), ws_cnn)


def test_mixed_specs_are_named(two_spec_zoo):
    path, *_ = two_spec_zoo
    zoo = Zoo.open(path)
    with pytest.raises(WeightSpaceError, match="spec-0.*spec-1"):
        zoo.spec
    with pytest.raises(WeightSpaceError, match="mix architectures"):
        zoo.weights([0, 3])
    assert set(zoo.specs) == {"spec-0", "spec-1"}


def test_filter_select_column(two_spec_zoo):
    path, ws_mlp, *_ = two_spec_zoo
    zoo = Zoo.open(path)
    assert [r["id"] for r in zoo.filter(test_acc=(0.15, None)).records] == ["a2", "c2"]
    assert [r["id"] for r in zoo.filter(epoch=[0, 11], spec_id="spec-0").records] == ["a0", "b1"]
    assert [r["id"] for r in zoo.filter(act="relu", where=lambda r: r["id"].startswith("b")).records] == ["b0", "b1"]
    assert len(zoo.filter(lr=lambda v: v > 0.025)) == 2
    with pytest.raises(WeightSpaceError, match="no checkpoint has a field 'tset_acc'"):
        zoo.filter(tset_acc=(0, 1))
    sub = zoo.select([6, 7])
    assert _same(sub.weights(), ws_mlp[3:5])
    np.testing.assert_allclose(zoo.column("test_acc"), [0.0, 0.1, 0.2, 0.0, 0.1, 0.2, 0.0, 0.1])
    assert list(zoo.column("act")) == ["relu"] * 8
    assert zoo.record(-1)["id"] == "b1"


# --------------------------------------------------------------------------- resume
def test_resume_done_ids_and_duplicates(two_spec_zoo):
    path, ws_mlp, ws_cnn, *_ = two_spec_zoo
    with ZooWriter(path) as w:
        assert w.done_ids == {"a0", "a1", "a2", "c0", "c1", "c2", "b0", "b1"}
        assert len(w) == 8 and set(w.specs) == {"spec-0", "spec-1"}
        with pytest.raises(WeightSpaceError, match="duplicate checkpoint id"):
            w.append(ws_mlp[0:1], [{"id": "a0"}])
        with pytest.raises(WeightSpaceError, match="duplicate checkpoint id"):
            w.append(ws_mlp[0:2], [{"id": "new"}, {"id": "new"}])
        w.append(ws_cnn[0:1], [{"id": "c9", "epoch": 9}])
    zoo = Zoo.open(path)
    assert len(zoo) == 9 and zoo.records[-1]["spec_id"] == "spec-1"  # an existing spec is reused
    assert sorted(p.name for p in (path / "shards").iterdir()) == [f"shard-0000{i}.safetensors" for i in range(4)]
    assert _same(zoo.weights([8]), ws_cnn[0])


def test_orphan_shard_is_ignored_then_removed(two_spec_zoo):
    path, ws_mlp, *_ = two_spec_zoo
    # a kill after the shard was written but before its manifest rows were appended
    orphan = path / "shards" / "shard-00003.safetensors"
    save_safetensors(orphan, {k: t[:1] + 100 for k, t in ws_mlp.state_dict().items()})
    (path / "shards" / ".shard-00004.safetensors.abc.tmp").write_bytes(b"partial")
    zoo = Zoo.open(path)
    assert len(zoo) == 8  # readers never look at unlisted shards
    with ZooWriter(path) as w:
        assert not orphan.exists() and not list((path / "shards").glob("*.tmp"))
        w.append(ws_mlp[4:5], [{"id": "z0"}])  # reuses the freed shard name, with new content
    zoo = Zoo.open(path)
    assert zoo.records[-1]["shard"] == "shard-00003.safetensors"
    assert _same(zoo.weights([8]), ws_mlp[4])


def test_torn_manifest_line_is_dropped(two_spec_zoo):
    path, ws_mlp, *_ = two_spec_zoo
    manifest = path / "manifest.jsonl"
    healthy = manifest.read_bytes()
    with open(manifest, "ab") as f:
        f.write(b'{"id": "half", "run": "r", "spec_id": "spe')  # killed mid-line
    with pytest.warns(UserWarning, match="torn last line"):
        zoo = Zoo.open(path)
    assert len(zoo) == 8
    with ZooWriter(path) as w:
        assert "half" not in w.done_ids and len(w.done_ids) == 8
        assert manifest.read_bytes() == healthy
        w.append(ws_mlp[0:1], [{"id": "half"}])
    assert Zoo.open(path).records[-1]["id"] == "half"


def test_partial_block_is_rolled_back(two_spec_zoo):
    path, ws_mlp, *_ = two_spec_zoo
    manifest = path / "manifest.jsonl"
    lines = manifest.read_bytes().split(b"\n")
    # the last block (shard 2, rows b0, b1) was only partly appended: b0 and half of b1
    manifest.write_bytes(b"\n".join(lines[:7]) + b"\n" + lines[7][:20])
    with pytest.warns(UserWarning, match="torn"):
        zoo = Zoo.open(path)  # readers keep complete rows of a complete shard
    assert [r["id"] for r in zoo.records][-1] == "b0"
    with ZooWriter(path) as w:  # the writer rolls the whole block back so the builder redoes it
        assert w.done_ids == {"a0", "a1", "a2", "c0", "c1", "c2"}
        assert not (path / "shards" / "shard-00002.safetensors").exists()
        w.append(ws_mlp[3:5], _records("b", 2, epoch0=10))
    zoo = Zoo.open(path)
    assert [r["id"] for r in zoo.records][-2:] == ["b0", "b1"]
    assert _same(zoo.filter(spec_id="spec-0").weights([3, 4]), ws_mlp[3:5])


def test_second_writer_is_refused(tmp_path):
    with ZooWriter(tmp_path / "z"):
        with pytest.raises(WeightSpaceError, match="another ZooWriter"):
            ZooWriter(tmp_path / "z")
    ZooWriter(tmp_path / "z").close()  # released on close


def test_writer_validates_inputs(tmp_path):
    mods, _ = nets.make("mlp", 2)
    ws = WeightSpace.from_modules(mods)
    with ZooWriter(tmp_path / "z", meta={"a": 1}) as w:
        with pytest.raises(WeightSpaceError, match="2 networks"):
            w.append(ws, [{"id": "x"}])
        with pytest.raises(WeightSpaceError, match="no 'id'"):
            w.append(ws, [{"id": "x"}, {"run": 1}])
        with pytest.raises(WeightSpaceError, match="reserved"):
            w.append(ws, [{"id": "x", "shard": 1}, {"id": "y"}])
        with pytest.raises(WeightSpaceError, match="not JSON-serializable"):
            w.append(ws, [{"id": "x", "metrics": {"f": object()}}, {"id": "y"}])
        bad = ws.clone()
        bad.tensors[1][1, 0] = float("nan")
        with pytest.raises(WeightSpaceError, match=r"non-finite weights in record\(s\) \['y'\]"):
            w.append(bad, [{"id": "x"}, {"id": "y"}])
        assert len(w) == 0 and not list((tmp_path / "z" / "shards").iterdir())
        w.append(ws, [{"id": "x", "metrics": {"acc": torch.tensor(0.5)}}, {"id": "y", "epoch": np.int64(3)}])
    with ZooWriter(tmp_path / "z", meta={"b": 2}) as w:  # meta merges on resume
        assert w.meta == {"a": 1, "b": 2}
    zoo = Zoo.open(tmp_path / "z")
    assert zoo.records[0]["metrics"] == {"acc": 0.5} and zoo.records[1]["epoch"] == 3


# --------------------------------------------------------------------------- laziness
def test_open_reads_no_weights_and_reads_group_by_shard(tmp_path, monkeypatch):
    spec_mods, x = nets.make("mlp_nobias", 1)
    base = WeightSpace.from_modules(spec_mods)
    n_shards, per = 25, 40  # 1,000 checkpoints
    with ZooWriter(tmp_path / "z") as w:
        for s in range(n_shards):
            ws = WeightSpace(base.spec, [t.repeat(per, *([1] * (t.dim() - 1))) for t in base.tensors])
            ws = ws * (torch.arange(per, dtype=torch.float32) + s * per)  # network k scaled by k
            w.append(ws, [{"id": f"m{s * per + i}", "epoch": i % 5, "metrics": {"k": s * per + i}}
                          for i in range(per)])
    opened, reads = [], []

    class SpyReader(zreader.ShardReader):
        def __init__(self, path, spec):
            opened.append(path.name)
            super().__init__(path, spec)

        def gather(self, rows, out, pos):
            reads.append((self.path.name, len(rows)))
            return super().gather(rows, out, pos)

    def no_memmap(*a, **k):
        raise AssertionError("a shard was mapped")

    monkeypatch.setattr(zreader, "ShardReader", SpyReader)
    monkeypatch.setattr(zreader.np, "memmap", no_memmap)
    zoo = Zoo.open(tmp_path / "z")
    assert len(zoo) == 1000
    sub = zoo.filter(epoch=0, k=(0, 600))
    assert len(sub) == 121 and sub.spec == base.spec and len(sub.records) == 121
    _ = zoo.column("k")
    assert opened == [] and reads == []  # nothing but zoo.json and the manifest was read
    monkeypatch.undo()
    monkeypatch.setattr(zreader, "ShardReader", SpyReader)
    wanted = [999, 3, 41, 5, 998, 40]  # shards 24, 0, 1, 0, 24, 1
    got = zoo.weights(wanted)
    assert sorted(opened) == ["shard-00000.safetensors", "shard-00001.safetensors", "shard-00024.safetensors"]
    assert sorted(reads) == [("shard-00000.safetensors", 2), ("shard-00001.safetensors", 2),
                             ("shard-00024.safetensors", 2)]  # one gather per shard
    expected = WeightSpace.cat([base * float(k) for k in wanted])
    assert _same(got, expected)
    zoo.weights([0, 1])
    assert len(opened) == 3  # the open shard is cached


# --------------------------------------------------------------------------- bad inputs
def test_missing_shard_names_the_file(two_spec_zoo):
    path, *_ = two_spec_zoo
    (path / "shards" / "shard-00001.safetensors").unlink()
    with pytest.raises(WeightSpaceError, match=r"shard-00001\.safetensors.*missing"):
        Zoo.open(path)
    with pytest.raises(WeightSpaceError, match=r"shard-00001\.safetensors.*missing"):
        ZooWriter(path)


def test_truncated_shard_names_the_file(two_spec_zoo):
    path, *_ = two_spec_zoo
    shard = path / "shards" / "shard-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 50])
    zoo = Zoo.open(path)
    zoo.weights([0])  # other shards still read
    with pytest.raises(WeightSpaceError, match=r"shard-00002\.safetensors.*truncated"):
        zoo.weights([7])


def test_nan_weights_name_the_file(two_spec_zoo):
    path, ws_mlp, *_ = two_spec_zoo
    shard = path / "shards" / "shard-00000.safetensors"
    tensors = {k: t[0:3].clone() for k, t in ws_mlp.state_dict().items()}
    tensors["4.bias"][1] = float("nan")
    save_safetensors(shard, tensors)
    with pytest.raises(WeightSpaceError, match=r"shard-00000\.safetensors.*4\.bias.*non-finite"):
        Zoo.open(path).weights([1])


def test_bad_manifest_and_zoo_json(two_spec_zoo):
    path, *_ = two_spec_zoo
    manifest = path / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    with pytest.raises(WeightSpaceError, match=r"manifest\.jsonl.*line 2"):
        Zoo.open(path)
    manifest.write_text("".join(lines))
    row = json.loads(lines[0])
    row["row"] = 17  # a row index beyond its shard
    manifest.write_text(json.dumps(row) + "\n" + "".join(lines[1:]))
    with pytest.raises(WeightSpaceError, match=r"shard-00000\.safetensors.*out of range"):
        Zoo.open(path).weights([0])
    manifest.write_text("".join(lines))
    doc = json.loads((path / "zoo.json").read_text())
    doc["format_version"] = 99
    (path / "zoo.json").write_text(json.dumps(doc))
    with pytest.raises(WeightSpaceError, match=r"zoo\.json.*version 99"):
        Zoo.open(path)


def test_copy_of_zoo_is_readable(two_spec_zoo, tmp_path):
    path, ws_mlp, *_ = two_spec_zoo
    moved = tmp_path / "elsewhere"
    shutil.copytree(path, moved)  # paths in the manifest are relative
    assert _same(Zoo.open(moved).filter(spec_id="spec-0").weights(), ws_mlp)


def test_one_dtype_per_spec(tmp_path):
    mods, x = nets.make("mlp", 2)
    ws = WeightSpace.from_modules(mods)
    with ZooWriter(tmp_path / "z") as w:
        w.append(ws[0:1], [{"id": "a"}])
        w.append(ws[1:2].to(torch.float64), [{"id": "b"}])  # stored as the spec's first dtype
    zoo = Zoo.open(tmp_path / "z")
    got = zoo.weights([1, 0])
    assert got.dtype == torch.float32 and _same(got, WeightSpace.cat([ws[1], ws[0]]))
    assert json.loads((tmp_path / "z" / "zoo.json").read_text())["specs"][0]["dtype"] == "float32"


def test_most_common_spec_id_counts_the_view_and_breaks_ties_in_zoo_order(two_spec_zoo):
    zoo = Zoo.open(two_spec_zoo[0])  # 5 x spec-0, 3 x spec-1
    assert zoo.most_common_spec_id() == "spec-0"
    assert zoo.select([3, 4, 5, 0]).most_common_spec_id() == "spec-1"  # 3 vs 1 in this view
    assert zoo.select([5, 0]).most_common_spec_id() == "spec-0"  # a tie: the first in zoo order
    assert zoo.select([5, 6, 0, 3]).most_common_spec_id() == "spec-0"  # 2 vs 2
    assert zoo.filter(spec_id="spec-1").most_common_spec_id() == "spec-1"
    assert zoo.select([]).most_common_spec_id() is None
