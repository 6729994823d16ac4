"""Native zoo read paths (row runs, per-shard gathers, one gather over many shards), the
NaN / infinity check on every path, and ``ZooDataset.loader``'s batched loading."""
import numpy as np
import pytest
import torch

from datasets_zoo import Zoo, ZooWriter
from datasets_zoo import format as zfmt
from wspace.families import family_spec
from wspace import WeightSpace
from wspace.errors import WeightSpaceError
from wspace.io import load_safetensors, save_safetensors

N_SHARDS, PER = 12, 10


@pytest.fixture()
def zoo_dir(tmp_path):
    """120 small MLPs in 12 shards of 10; network k's weights are its id-seeded init."""
    spec = family_spec("mlp", hidden=[8], in_features=6, num_classes=3)
    g = torch.Generator().manual_seed(0)
    ws = WeightSpace.init(spec, N_SHARDS * PER, generator=g)
    with ZooWriter(tmp_path / "z") as w:
        for s in range(N_SHARDS):
            part = ws[s * PER:(s + 1) * PER]
            w.append(part, [{"id": f"m{s * PER + i}", "run": s * PER + i} for i in range(PER)])
    return tmp_path / "z", ws


def _reads(zoo, idx, few_shards):
    src = zoo.source
    old = src.few_shards
    src.few_shards = few_shards
    try:
        return zoo.weights(idx)
    finally:
        src.few_shards = old


ORDERS = {
    "runs": np.arange(10, 70),  # whole and partial shards, in order: preadv runs
    "reversed": np.arange(69, 9, -1),
    "shuffled": np.random.default_rng(0).permutation(120),
    "duplicates": np.array([5, 5, 117, 3, 5, 64, 64, 0]),
    "one": np.array([77]),
}


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("few_shards", [0, 100])  # 0: one gather over all shards' maps; 100: one per shard
def test_every_read_path_returns_the_requested_rows(zoo_dir, order, few_shards):
    path, ws = zoo_dir
    idx = ORDERS[order]
    got = _reads(Zoo.open(path), idx, few_shards)
    assert len(got) == len(idx)
    for a, b in zip(got.tensors, ws.tensors):
        assert a.is_contiguous() and a.dtype == b.dtype
        torch.testing.assert_close(a, b[torch.from_numpy(idx)], rtol=0, atol=0)


def test_batch_over_more_shards_than_the_reader_cache(zoo_dir):
    path, ws = zoo_dir
    zoo = Zoo.open(path)
    zoo.source.max_open_shards = 2
    idx = np.random.default_rng(1).permutation(120)[:50]
    for few in (0, 100):
        got = _reads(zoo, idx, few)
        for a, b in zip(got.tensors, ws.tensors):
            torch.testing.assert_close(a, b[torch.from_numpy(idx)], rtol=0, atol=0)
    got = zoo.weights(np.arange(120))  # runs through 12 shards with a cache of 2
    assert all(torch.equal(a, b) for a, b in zip(got.tensors, ws.tensors))
    assert len(zoo.source._readers) <= 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_row_raises_naming_file_tensor_and_checkpoint(zoo_dir, bad):
    path, _ = zoo_dir
    shard = path / "shards" / "shard-00003.safetensors"  # rows m30..m39
    tensors, meta = load_safetensors(shard, check=False)
    key = list(tensors)[2]
    tensors[key][4].view(-1)[1] = bad  # row 4 of shard 3 = checkpoint m34
    save_safetensors(shard, tensors, meta)
    zoo = Zoo.open(path)
    zoo.weights(np.arange(30, 34))  # the healthy rows of that shard still load
    zoo.weights([39, 12, 31])
    pattern = rf"shard-00003\.safetensors.*{key}.*non-finite.*'m34'"
    for idx in ([34], np.arange(30, 40), [100, 34, 7], np.random.default_rng(2).permutation(120)):
        for few in (0, 100):
            with pytest.raises(WeightSpaceError, match=pattern):
                _reads(zoo, np.asarray(idx), few)
    with pytest.raises(WeightSpaceError, match=pattern):  # a failed read is not remembered as checked
        zoo.weights([34])


def test_overflowing_sum_of_finite_weights_is_not_an_error(tmp_path):
    spec = family_spec("mlp", hidden=[8], in_features=6, num_classes=3)
    ws = WeightSpace.init(spec, 4, generator=torch.Generator().manual_seed(0))
    ws = WeightSpace(spec, [torch.full_like(t, 3e38) for t in ws.tensors])  # finite; any sum overflows
    with ZooWriter(tmp_path / "z") as w:
        w.append(ws, [{"id": f"m{i}"} for i in range(4)])
    got = Zoo.open(tmp_path / "z").weights([3, 0, 2])
    assert all(bool((t == 3e38).all()) for t in got.tensors)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes_on_every_path(tmp_path, dtype):
    spec = family_spec("mlp", hidden=[8], in_features=6, num_classes=3)
    ws = WeightSpace.init(spec, 40, generator=torch.Generator().manual_seed(0)).to(dtype)
    with ZooWriter(tmp_path / "z") as w:
        for s in range(4):
            w.append(ws[s * 10:(s + 1) * 10], [{"id": f"m{s * 10 + i}"} for i in range(10)])
    zoo = Zoo.open(tmp_path / "z")
    for idx in (np.arange(5, 25), np.random.default_rng(0).permutation(40)):
        for few in (0, 100):
            got = _reads(zoo, idx, few)
            for a, b in zip(got.tensors, ws.tensors):
                assert a.dtype == dtype
                assert torch.equal(a, b[torch.from_numpy(idx)])


def test_loader_reads_each_batch_once_in_sampler_order(zoo_dir, zoo_reads):
    path, ws = zoo_dir
    zoo = Zoo.open(path)
    ds = zoo.dataset("train", target="run", split_by="run")
    loader = ds.loader(batch_size=16, generator=torch.Generator().manual_seed(0))  # train: shuffled
    seen = []
    for batch, y in loader:
        assert isinstance(batch, WeightSpace) and y.dtype == torch.float32
        rows = y.long()  # run == position in the zoo
        for a, b in zip(batch.tensors, ws.tensors):
            torch.testing.assert_close(a, b[rows], rtol=0, atol=0)
        seen += rows.tolist()
    assert sorted(seen) == sorted(ds.indices.tolist()) and seen != sorted(seen)
    assert zoo_reads == [16] * (len(ds) // 16) + ([len(ds) % 16] if len(ds) % 16 else [])
    assert sum(len(b) for b, _ in ds.loader(batch_size=16, drop_last=True)) == len(ds) // 16 * 16
    order = list(range(len(ds)))[::-1]
    first, _ = next(iter(ds.loader(batch_size=8, sampler=order)))
    for a, b in zip(first.tensors, ws.tensors):
        torch.testing.assert_close(a, b[torch.from_numpy(ds.indices[order[:8]])], rtol=0, atol=0)


def test_reader_row_index_check_and_shard_dtype_mismatch(zoo_dir):
    path, _ = zoo_dir
    shard = path / "shards" / "shard-00001.safetensors"
    tensors, meta = load_safetensors(shard)
    save_safetensors(shard, {k: v[:5] for k, v in tensors.items()}, meta)  # rows 5..9 now missing
    zoo = Zoo.open(path)
    zoo.weights([0, 25])
    with pytest.raises(WeightSpaceError, match=r"shard-00001\.safetensors.*out of range"):
        zoo.weights([11])
    save_safetensors(shard, {k: v.double() for k, v in tensors.items()}, meta)
    with pytest.raises(WeightSpaceError, match=r"shard-00001\.safetensors.*F64"):
        Zoo.open(path).weights([0, 11])


def test_reader_pickles_without_open_files(zoo_dir):
    import pickle

    path, ws = zoo_dir
    zoo = Zoo.open(path)
    zoo.weights(np.random.default_rng(0).permutation(120))  # maps every shard
    clone = pickle.loads(pickle.dumps(zoo.source))
    assert len(clone._readers) == 0
    assert isinstance(zfmt.NativeSource, type)
    got = Zoo(clone).weights([3, 99])
    assert torch.equal(got.tensors[0], ws.tensors[0][[3, 99]])
