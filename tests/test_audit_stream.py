"""The audit streams its training set: chunked results equal whole-set results, a zoo on
disk is never read whole, and the running reductions keep the first of equal keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets_zoo import Zoo, ZooWriter, get_task
from datasets_zoo.train_vectorized import ClassifierData, train_classifiers
from wspace import WeightSpace, WeightSpaceError
from wspace.audit import AlignedIndex, Exclusion, Population, audit, exhaustive_nearest_aligned
from wspace.audit.search import ShortlistSearch
from wspace.audit.running import RunningBest, RunningGroupTopK, RunningTopK
from wspace.families import family_spec, init_weight_space
from wspace.symmetry import canonical_frame, permute, random_permutation

TASK = "digits:0-1-2"
FAST = dict(n_baseline=4, noise_scales=(0.05, 0.4), max_reference=12, probe_size=64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def trained():
    """8 runs x 3 checkpoints of an MLP 64-12-12-3 (the zoo) and 3 fresh networks."""
    task = get_task(TASK)
    spec = family_spec("mlp", in_features=64, hidden=[12, 12], num_classes=3)
    snaps = {}
    train_classifiers(init_weight_space(spec, 11, generator=_gen(1)),
                      ClassifierData(task.x_train, task.y_train, task.x_test, task.y_test),
                      seeds=torch.arange(11), optimizer="adam", lr=3e-3, epochs=3, batch_size=32, save_epochs=(1, 2, 3),
                      on_save=lambda e, ws, m: snaps.__setitem__(e, ws))
    zoo = WeightSpace.cat([snaps[e][:8] for e in (1, 2, 3)])
    return zoo, [i % 8 for i in range(len(zoo))], snaps[3][8:]


def _write(path, ws: WeightSpace, runs=None, shard: int = 7) -> Zoo:
    with ZooWriter(path, {"tasks": {}}) as w:
        for s in range(0, len(ws), shard):
            w.append(ws[s:s + shard], [{"id": f"n{i}", **({"run": f"r{runs[i]}"} if runs else {})}
                                       for i in range(s, min(s + shard, len(ws)))])
    return Zoo.open(path)


class CountingZoo:
    """A zoo that records how many rows each ``weights()`` call reads."""

    def __init__(self, zoo: Zoo):
        self.zoo, self.reads = zoo, []
        self.spec, self.records, self.path = zoo.spec, zoo.records, zoo.path

    def __len__(self) -> int:
        return len(self.zoo)

    def weights(self, indices=None):
        ws = self.zoo.weights(indices)
        self.reads.append(len(ws))
        return ws


def test_running_reductions_equal_whole_set():
    v = torch.randint(0, 6, (5, 23), generator=_gen(0)).double()  # many ties
    v[1] = float("inf")  # a query with no allowed key
    top, best, worst = RunningTopK(5, 4), RunningBest(5), RunningBest(5, largest=True)
    for s in range(0, 23, 6):
        block = v[:, s:s + 6]
        top.update(block, s)
        m, a = block.min(1)
        best.update(m, torch.where(torch.isfinite(m), a + s, torch.full_like(a, -1)))
        M, A = block.max(1)
        worst.update(M, torch.where(torch.isfinite(M), A + s, torch.full_like(A, -1)))
    fin = torch.isfinite(v[:, 0])
    assert torch.equal(best.index[fin], v[fin].argmin(1)) and torch.equal(worst.index[fin], v[fin].argmax(1))
    assert best.index[1] == -1 and worst.index[1] == -1 and top.filled[1] == 0
    ref = v.sort(dim=1, stable=True)
    assert torch.equal(top.value[fin], ref.values[fin, :4])  # which of equal values is kept is unspecified
    assert torch.equal(v[fin].gather(1, top.index[fin]), top.value[fin])


def test_group_top_k_keeps_the_best_key_of_distinct_groups():
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 0, 1])
    v = torch.tensor([[0.1, 0.2, 0.3, 0.9, 0.5, 0.7, 0.6, 0.8, 2.0, 0.05, 0.4],
                      [float("inf")] * 10 + [1.0]])
    for step in (11, 3, 1):
        top = RunningGroupTopK(2, 3, groups)
        for s in range(0, 11, step):
            top.update(v[:, s:s + step], s)
        assert top.index[0].tolist() == [9, 10, 6]  # group 0 via key 9, group 1 via 10, group 2 via 6
        assert top.group[0].tolist() == [0, 1, 2]
        assert top.index[1].tolist() == [10, -1, -1]


def test_population_chunks_and_rows_match_the_weights(trained, tmp_path):
    zoo, runs, _ = trained
    disk = _write(tmp_path / "z", zoo, runs)
    for src in (zoo, disk):
        pop = Population(src, chunk_rows=5)
        got = WeightSpace.cat([c for _, c in pop.chunks()])
        assert [s for s, _ in pop.chunks()] == list(range(0, len(zoo), 5))
        assert torch.equal(got.flatten(), zoo.flatten())
        idx = torch.tensor([17, 3, 3, 0, 23])
        assert torch.equal(pop.rows(idx).flatten(), zoo.flatten()[idx])
    with pytest.raises(WeightSpaceError, match="out of range"):
        Population(zoo).rows([len(zoo)])
    bad = zoo.map(lambda t: t.clone())
    bad.tensors[0][9, 0] = float("nan")
    with pytest.raises(WeightSpaceError, match="training network at row 9 has non-finite"):
        list(Population(bad).chunks(4))
    with pytest.raises(WeightSpaceError, match="empty"):
        Population(zoo[:0])


@pytest.mark.parametrize("exact", [False, True])
def test_chunked_search_equals_one_chunk(trained, exact, monkeypatch):
    zoo, runs, novel = trained
    g = _gen(3)
    queries = WeightSpace.cat([permute(zoo[:3], random_permutation(zoo.spec, 3, g)), novel])
    excl = Exclusion(torch.tensor([0, -1, -1, 5, -1, -1]), torch.tensor([0, -1, -1, 5, -1, -1]),
                     torch.tensor(runs))
    refills = []
    original = ShortlistSearch._refill
    monkeypatch.setattr(ShortlistSearch, "_refill", lambda self, *a: refills.append(1) or original(self, *a))
    res = {}
    for rows in (len(zoo), 4):
        index = AlignedIndex(zoo, groups=runs, chunk_rows=rows)
        res[rows] = index.query(queries, k=2, keep=3, exact=exact, exclude=excl)
    a, b = res[len(zoo)], res[4]
    for f in ("index", "distance", "neighbors", "neighbor_distance", "evaluated", "certified"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    if exact:  # branch and bound over streamed keys (k=2 of 24, refilled bounds) = exhaustive
        index = AlignedIndex(zoo, chunk_rows=5)
        d_ex, i_ex = exhaustive_nearest_aligned(index, queries, exclude=excl)
        assert b.certified.all() and refills  # the kept bounds ran out: another pass refilled them
        assert torch.allclose(b.distance, d_ex, atol=1e-9) and torch.equal(b.index, i_ex)
    # excluded: the copy of row 0 may not match row 0 nor any checkpoint of its run
    assert int(b.index[0]) % 8 != 0 and int(b.index[1]) == 1 and float(b.distance[1]) < 1e-5


def test_streamed_audit_of_a_zoo_equals_in_memory_and_never_reads_it_whole(trained, tmp_path):
    zoo, runs, novel = trained
    gen = WeightSpace.cat([permute(zoo[:2], random_permutation(zoo.spec, 2, _gen(5))), novel])
    task = get_task(TASK)
    mem = audit(gen, zoo, task=task, runs=runs, **FAST)
    disk = CountingZoo(_write(tmp_path / "z", zoo, runs))
    streamed = audit(gen, disk, task=task, chunk_rows=5, **FAST)
    assert disk.reads and max(disk.reads) <= 5  # every read is one chunk, never the zoo
    assert streamed.verdicts == mem.verdicts
    for key in ("aligned_distance", "raw_distance", "hull_distance", "accuracy", "max_agreement", "nearest_index"):
        assert np.allclose(streamed.metrics[key], mem.metrics[key], atol=1e-6), key
    assert np.allclose(streamed.cross_run["aligned_distance"], mem.cross_run["aligned_distance"], atol=1e-6)
    assert streamed.verdicts[:2] == ["replica", "replica"]
    with pytest.raises(WeightSpaceError, match="chunk_rows"):
        audit(gen, zoo, chunk_rows=0)


def test_signed_frame_transform_is_applied_per_chunk(trained):
    """An index over sign-canonical keys (the audit's frame) finds a tanh copy at distance 0."""
    spec = family_spec("mlp", in_features=6, hidden=[5, 4], num_classes=3, activation="tanh")
    keys = init_weight_space(spec, 9, generator=_gen(2))
    copy = canonical_frame(permute(keys[4:5], random_permutation(spec, 1, _gen(3))))[0]
    index = AlignedIndex(keys, transform=lambda ws: canonical_frame(ws)[0], chunk_rows=2)
    res = index.query(copy, k=3)
    assert int(res.index[0]) == 4 and float(res.distance[0]) < 1e-5
