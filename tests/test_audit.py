"""Memorization audit (wspace.audit) and weight baselines (wspace.audit.baselines), with planted answers.

A small zoo of independently trained MLPs (64-16-16-5 on digits 0-4, 10 runs x 2
checkpoints) is trained in-test in about a second; networks trained the same way
from seeds outside the zoo are the planted "novel" answers.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from datasets_zoo import Zoo, ZooWriter, get_task
from wspace.families import family_spec, init_weight_space
from datasets_zoo.train_vectorized import ClassifierData, train_classifiers
from wspace.audit.baselines import (aligned_average, average_baseline, gaussian_baseline, interpolation_baseline,
                                  noise_baseline)
from wspace import GlobalAvgPool, WeightSpace, WeightSpaceError, spec_from_module
from wspace.align import align
from wspace.audit import AlignedIndex, audit, exhaustive_nearest_aligned
from wspace.audit.search import Exclusion
from wspace.audit.behaviour import Behaviour, max_agreement, max_error_iou, min_divergence
from wspace.audit.geometry import gram, hull_distance, segment_distance
from wspace.audit.invariants import lower_bound
from wspace.symmetry import permute, random_permutation

TASK = "digits:0-1-2-3-4"
RUNS, NOVEL = 10, 4
FAST = dict(n_baseline=6, noise_scales=(0.05, 0.4), max_reference=20, probe_size=128)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def population():
    """Zoo checkpoints (epochs 3 and 4 of 10 runs), their run labels, 4 novel networks."""
    torch.manual_seed(0)
    task = get_task(TASK)
    spec = family_spec("mlp", in_features=64, hidden=[16, 16], num_classes=5)
    M = RUNS + NOVEL
    snaps = {}
    train_classifiers(init_weight_space(spec, M, generator=_gen(1)),
                      ClassifierData(task.x_train, task.y_train, task.x_test, task.y_test),
                      seeds=torch.arange(M), optimizer="adam", lr=3e-3, epochs=4, batch_size=32, save_epochs=(3, 4),
                      on_save=lambda e, ws, m: snaps.__setitem__(e, ws))
    zoo = WeightSpace.cat([snaps[3][:RUNS], snaps[4][:RUNS]])
    runs = list(range(RUNS)) * 2
    return zoo, runs, snaps[4][RUNS:]


def _planted(zoo: WeightSpace, novel: WeightSpace) -> tuple[WeightSpace, list[str]]:
    g = _gen(7)
    copies = zoo[0:2]
    permuted = permute(zoo[2:4], random_permutation(zoo.spec, 2, g))
    noisy = zoo[4:6].map(lambda t: t + 0.003 * torch.randn(t.shape, generator=g))
    a, b = zoo[10:12], zoo[13:15]  # epoch-4 checkpoints of runs 0,1 and 3,4
    mids = (a + align(b, a)) * 0.5
    ws = WeightSpace.cat([copies, permuted, noisy, mids, novel])
    return ws, ["replica"] * 6 + ["interpolation"] * 2 + ["novel"] * len(novel)


def _expect_novel(expected: list[str], r) -> list[str]:
    """The planted answers, where an independent model closer than the novel threshold (or
    agreeing more than any independent one: the rule's ~5% of independent solutions, here
    with a 20-model spread) reads as a near-copy."""
    m, th = r.metrics, r.thresholds
    out = list(expected)
    for i, e in enumerate(expected):
        if e == "novel" and (m["aligned_distance"][i] < th.novel or m["max_agreement"][i] > th.agreement):
            out[i] = "near-copy"
    assert out.count("novel") >= expected.count("novel") - 1
    return out


def test_planted_verdicts(population):
    zoo, runs, novel = population
    gen, expected = _planted(zoo, novel)
    r = audit(gen, zoo, task=get_task(TASK), runs=runs, **FAST)
    assert r.verdicts == _expect_novel(expected, r)
    assert r.thresholds.calibrated and r.thresholds.source == "runs"
    m = r.metrics
    spread = r.thresholds.spread_median
    # permuted copies: far apart raw, identical after alignment
    assert np.all(m["raw_distance"][2:4] > 0.5 * spread)
    assert np.all(m["aligned_distance"][:4] < 1e-4)
    assert list(m["nearest_index"][:4]) == [0, 1, 2, 3]
    # noise well below the spread is measured at its own size
    assert np.all(m["aligned_distance"][4:6] < 0.1 * spread)
    # midpoints: half-way from their endpoints, on the segment between them
    assert np.all(m["aligned_distance"][6:8] > r.thresholds.replica)
    assert np.all(m["segment_distance"][6:8] < 1e-3 * m["aligned_distance"][6:8])
    assert np.allclose(m["segment_t"][6:8], 0.5, atol=1e-3)
    # novel networks: about as far as independent runs are from each other, nowhere near a segment
    assert np.all(m["aligned_distance"][8:] > 0.8 * r.thresholds.spread_quantile)
    assert np.all(m["hull_distance"][8:] > 0.5 * m["aligned_distance"][8:])
    # behaviour: copies behave identically, novel ones do not agree perfectly on the noisy probe
    assert np.allclose(m["max_error_iou"][:4], 1.0) and np.allclose(m["max_agreement"][:4], 1.0)
    assert np.allclose(m["min_divergence"][:4], 0.0, atol=1e-5)
    assert np.all(m["max_agreement"][8:] < 1.0) and np.all(m["min_divergence"][8:] > 1e-3)
    assert set(r.summary["fractions"]) == {"replica", "interpolation", "near-copy", "novel", "novel, non-functional"}
    assert r.summary["answer"].startswith("Of 12 generated networks, 6 are replicas")
    assert abs(r.summary["fractions"]["replica"] - 6 / 12) < 1e-9
    # the baselines were audited too: small noise is a replica
    assert r.baselines["noise@0.05"]["verdicts"].count("replica") == 6
    assert "aligned_distance" in r.frontier


def test_accuracy_matches_direct_evaluation(population):
    zoo, runs, novel = population
    task = get_task(TASK)
    r = audit(novel, zoo, task=task, runs=runs, baselines=False, max_reference=4, probe_size=64)
    direct = (novel(task.x_test).argmax(-1) == task.y_test).float().mean(1).double().numpy()
    assert np.allclose(r.metrics["accuracy"], direct)


def test_prefilter_equals_exhaustive(population):
    zoo, runs, novel = population
    gen, _ = _planted(zoo, novel)
    index = AlignedIndex(zoo)
    d_ex, i_ex = exhaustive_nearest_aligned(index, gen)
    exact = index.query(gen, k=4, exact=True)
    assert exact.certified.all()
    assert torch.allclose(exact.distance, d_ex, rtol=1e-9, atol=1e-9)
    assert torch.equal(exact.index, i_ex)
    short = index.query(gen, k=8)  # the default mode: a shortlist of 8 of 20
    assert torch.allclose(short.distance, d_ex, rtol=1e-9, atol=1e-9)
    assert short.certified[:4].all()  # exact copies: the invariant bound certifies them
    assert int(short.evaluated.sum()) < len(gen) * len(zoo)
    # the invariant lower bound never exceeds the aligned distance of any pair
    prep = index.prepare(gen)
    qpos, kidx = torch.arange(len(gen)).repeat_interleave(len(zoo)), torch.arange(len(zoo)).repeat(len(gen))
    d_all, _ = index.match_pairs(prep, qpos, kidx)
    assert (lower_bound(gen, zoo).reshape(-1) <= d_all + 1e-9).all()


def test_search_on_cnns_and_exclusion():
    cnn = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(), GlobalAvgPool(), nn.Linear(8, 3))
    keys = WeightSpace.init(spec_from_module(cnn), 8, generator=_gen(3))
    queries = WeightSpace.cat([permute(keys[:3], random_permutation(keys.spec, 3, _gen(4))),
                               WeightSpace.init(keys.spec, 3, generator=_gen(5))])
    index = AlignedIndex(keys)
    res = index.query(queries, k=3, exact=True)
    d_ex, i_ex = exhaustive_nearest_aligned(index, queries)
    assert torch.allclose(res.distance, d_ex, atol=1e-9) and torch.equal(res.index, i_ex)
    assert torch.all(res.distance[:3] < 1e-5) and res.index[:3].tolist() == [0, 1, 2]
    # excluding each copy's source: the nearest is then another network, farther away
    src = torch.tensor([0, 1, 2, -1, -1, -1])
    excl = Exclusion(src)
    res2 = index.query(queries, k=3, exact=True, exclude=excl)
    assert torch.all(res2.distance[:3] > 0.1) and all(int(res2.index[i]) != i for i in range(3))
    assert (lower_bound(queries, keys).min(1).values <= res.distance + 1e-9).all()


def test_spec_mismatch_is_a_clear_error(population):
    zoo, runs, _ = population
    other = init_weight_space(family_spec("mlp", in_features=64, hidden=[16, 8], num_classes=5), 3, generator=_gen(0))
    with pytest.raises(WeightSpaceError, match="different architectures.*16.*8"):
        audit(other, zoo, runs=runs)
    with pytest.raises(WeightSpaceError, match="different architectures"):
        audit(zoo[:2], zoo, reference=other)
    with pytest.raises(WeightSpaceError, match="5 classes|outputs"):
        audit(zoo[:2], zoo, task=get_task("digits:0-1-2"), runs=runs, baselines=False)


def test_single_run_zoo_is_not_calibrated_and_reference_calibrates(population):
    zoo, _, novel = population
    single = audit(novel, zoo, runs=[0] * len(zoo), **FAST)
    assert not single.thresholds.calibrated and single.thresholds.source == "noise"
    assert "cannot be calibrated" in single.thresholds.note and "cannot be calibrated" in single.table()
    # the most conservative rule: novel only beyond the noise that breaks the networks (the grid's largest scale)
    top = single.baselines["noise@0.4"]["metrics"]["aligned_distance"]
    assert single.thresholds.novel == pytest.approx(float(np.median(top)))
    for v, d in zip(single.verdicts, single.metrics["aligned_distance"]):
        assert not v.startswith("novel") or d >= single.thresholds.novel
    assert single.thresholds.replica > 0 and len(single.verdicts) == len(novel)
    # a reference population of independently trained models calibrates it
    # (the generated networks here are the previous epoch of two runs: one epoch of training apart)
    ref = audit(zoo[:2], zoo[10:], reference=novel, runs=[0] * 10, **FAST)
    assert ref.thresholds.calibrated and ref.thresholds.source == "reference"
    assert ref.thresholds.spread_n == len(novel)
    # independent models are novel, but those below the novel quantile of their own spread
    below = int(np.sum(ref.reference["aligned_distance"] < ref.thresholds.novel))
    assert below <= int(np.ceil(0.05 * len(novel))) and ref.reference_verdicts.count("novel") == len(novel) - below
    assert ref.verdicts == ["replica", "replica"]


def test_baselines(population):
    zoo, runs, _ = population
    g = _gen(11)
    # noise: the distance to the source checkpoint is sigma * sqrt(D) with sigma relative to each tensor's rms
    n, idx = noise_baseline(zoo, 32, 0.1, generator=g, return_index=True)
    d = (n.flatten() - zoo.flatten()[idx]).norm(dim=1)
    rms = torch.cat([t.pow(2).mean().sqrt().expand(t[0].numel()) for t in zoo.tensors])
    assert torch.allclose(d.mean(), 0.1 * rms.norm(), rtol=0.05)
    # aligned average of permuted copies of one network is that network
    one = zoo[3]
    copies = WeightSpace.cat([one, permute(WeightSpace.cat([one] * 4), random_permutation(one.spec, 4, g))])
    avg = aligned_average(copies)
    assert torch.allclose(avg.flatten(), one.flatten(), atol=1e-5)
    assert len(aligned_average(zoo, k=5, generator=g)) == 1
    with pytest.raises(WeightSpaceError):
        aligned_average(zoo, k=0)
    assert len(average_baseline(zoo, 3, k=4, generator=g)) == 3
    # per-parameter gaussian: mean and std of many draws match the zoo's
    gs = gaussian_baseline(zoo, 4000, generator=g)
    assert torch.allclose(gs.flatten().mean(0), zoo.flatten().mean(0), atol=0.1 * zoo.flatten().std(0).max())
    assert torch.allclose(gs.flatten().std(0), zoo.flatten().std(0, unbiased=False), rtol=0.1, atol=1e-6)
    # interpolating a network with its own permuted copy gives that network (up to permutation: same function)
    pair = WeightSpace.cat([one, permute(one, random_permutation(one.spec, 1, g))])
    x = get_task(TASK).x_test
    mixed = interpolation_baseline(pair, 3, alpha=None, generator=g)
    assert torch.allclose(mixed(x), one(x).expand(3, -1, -1), atol=1e-4)
    _, pairs, a = interpolation_baseline(zoo, 50, alpha=None, runs=runs, generator=g, return_pairs=True)
    assert all(runs[i] != runs[j] for i, j in pairs.tolist()) and float(a.min()) >= 0 and float(a.max()) <= 1


def test_behaviour_similarity_by_hand():
    def beh(errors, pred, logits):
        logp = torch.log_softmax(torch.tensor(logits, dtype=torch.float32), -1)
        e = torch.tensor(errors, dtype=torch.bool)
        return Behaviour(e, 1 - e.float().mean(1), torch.tensor(pred), logp)

    q = beh([[1, 1, 0, 0], [0, 0, 0, 0]], [[0, 1, 1]] * 2, [[[2.0, 0.0]] * 3, [[0.0, 1.0]] * 3])
    t = beh([[1, 0, 1, 0], [0, 0, 0, 0]], [[0, 1, 0], [1, 1, 1]], [[[2.0, 0.0]] * 3, [[1.0, 0.0]] * 3])
    iou, idx = max_error_iou(q, t)
    assert np.allclose(iou.numpy(), [1 / 3, 1.0]) and idx.tolist() == [0, 1]  # two error-free models: identical
    agr, _ = max_agreement(q, t)
    assert np.allclose(agr.numpy(), [2 / 3, 2 / 3])
    div, didx = min_divergence(q, t)
    assert div[0] < 1e-6 and didx[0] == 0
    p, r = torch.softmax(torch.tensor([0.0, 1.0]), 0), torch.softmax(torch.tensor([1.0, 0.0]), 0)
    sym = 0.5 * ((p * (p / r).log()).sum() + (r * (r / p).log()).sum())
    assert abs(float(div[1]) - min(float(sym), 0.5 * float(
        (p * (p / torch.softmax(torch.tensor([2.0, 0.0]), 0)).log()).sum()
        + (torch.softmax(torch.tensor([2.0, 0.0]), 0) * (torch.softmax(torch.tensor([2.0, 0.0]), 0) / p).log()).sum()
    ))) < 1e-5


def test_segment_and_hull_geometry():
    a = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[1.0, 0.0, 1.0], [0.5, 0.5, 0.0], [5.0, 0.0, 0.0]], dtype=torch.float64)
    nb = a.unsqueeze(0).expand(3, -1, -1)
    valid = torch.ones(3, 3, dtype=torch.bool)
    G = gram(nb, q, valid)
    seg, t = segment_distance(G, valid)
    hull, lam = hull_distance(G, valid)
    assert torch.allclose(seg, torch.tensor([1.0, 0.5, 3.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(hull, torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(lam.sum(1), torch.ones(3, dtype=torch.float64)) and (lam >= 0).all()
    # the centroid of a triangle: inside the hull, off every edge
    c = a.mean(0, keepdim=True)
    Gc = gram(a.unsqueeze(0), c, torch.ones(1, 3, dtype=torch.bool))
    assert float(hull_distance(Gc, torch.ones(1, 3, dtype=torch.bool))[0]) < 1e-6
    assert float(segment_distance(Gc, torch.ones(1, 3, dtype=torch.bool))[0]) > 0.4


def _write(path, ws: WeightSpace, runs: list, prefix: str) -> None:
    with ZooWriter(path, {"tasks": {}}) as w:
        w.append(ws, [{"id": f"{prefix}-{i}", "run": r, "task": TASK, "epoch": 0} for i, r in enumerate(runs)])


def test_cli_writes_report(population, tmp_path, capsys):
    from wspace.commands import cli

    zoo, runs, novel = population
    gen, expected = _planted(zoo, novel)
    _write(tmp_path / "zoo", zoo, runs, "train")
    _write(tmp_path / "gen", gen, [None] * len(gen), "gen")
    out = tmp_path / "audit"
    args = [f"generated={tmp_path / 'gen'}", f"zoo={tmp_path / 'zoo'}", f"task={TASK}", f"out={out}",
            "+n_baseline=4", "+max_reference=20", "+probe_size=128"]
    assert cli.main(["audit", *args]) == 0
    printed = capsys.readouterr().out
    assert "generated" in printed and "thresholds (runs)" in printed
    doc = json.loads((out / "audit.json").read_text())
    th, m = doc["thresholds"], doc["metrics"]
    for i, (v, e) in enumerate(zip(doc["verdicts"], expected)):
        close = e == "novel" and (m["aligned_distance"][i] < th["novel"] or m["max_agreement"][i] > th["agreement"])
        assert v == ("near-copy" if close else e), (i, v, e)
    assert doc["nearest_id"][:4] == ["train-0", "train-1", "train-2", "train-3"]
    for name in ("report.html", "nearest_distance_hist.png", "accuracy_vs_similarity.png", "frontier.png"):
        assert (out / name).stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    # the answer in words first, then one example per verdict beside its nearest training model
    assert html.index("Of 12 generated networks") < html.index("One example per verdict") < html.index("<h2>Summary")
    table = html[html.index("One example per verdict"):html.index("<h2>Summary")]
    for v in set(doc["verdicts"]):
        assert f"<td>{v}</td>" in table
    assert "train-0" in table or "train-" in table
    # a generated zoo of another architecture: one clean error line, exit code 1
    other = init_weight_space(family_spec("mlp", in_features=64, hidden=[8], num_classes=5), 2, generator=_gen(0))
    _write(tmp_path / "other", other, [0, 1], "o")
    with pytest.raises(SystemExit) as e:
        cli.main(["audit", f"generated={tmp_path / 'other'}", f"zoo={tmp_path / 'zoo'}", f"out={out}"])
    assert e.value.code == 1
    assert "different architectures" in capsys.readouterr().err
    assert Zoo.open(tmp_path / "gen").spec.same_space(zoo.spec)
    # a training zoo of two architectures: an error naming them and architecture=; with it, the audit runs
    with ZooWriter(tmp_path / "mixed", {"tasks": {}}) as w:
        w.append(zoo, [{"id": f"m-{i}", "run": r, "task": TASK, "epoch": 0, "architecture": "mlp-16-16"}
                       for i, r in enumerate(runs)])
        w.append(other, [{"id": f"o-{i}", "run": 100 + i, "task": TASK, "epoch": 0, "architecture": "mlp-8"}
                         for i in range(2)])
    base = [f"generated={tmp_path / 'gen'}", f"zoo={tmp_path / 'mixed'}", f"out={tmp_path / 'mixed-audit'}",
            "+n_baseline=4", "+max_reference=20", "+probe_size=64"]
    with pytest.raises(SystemExit) as e:
        cli.main(["audit", *base])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "2 architectures" in err and "'mlp-8'" in err and "architecture=" in err
    assert cli.main(["audit", *base, "architecture=mlp-16-16"]) == 0
    doc = json.loads((tmp_path / "mixed-audit" / "audit.json").read_text())
    assert doc["info"]["n_training"] == len(zoo)


def test_verdict_rule_every_branch():
    """``label``: replica, interpolation, near-copy by distance or by agreement, novel and
    novel-but-non-functional, each from the thresholds the rule states."""
    from wspace.audit.calibrate import calibrate, label

    spread = np.linspace(8.0, 12.0, 101)  # independent solutions: 8 .. 12 apart
    th = calibrate(spread, "runs", agreement_spread=np.linspace(0.80, 0.90, 101), functional=0.6,
                   novel_quantile=0.1)
    assert th.replica == pytest.approx(0.25 * np.quantile(spread, 0.05))
    assert th.novel == pytest.approx(np.quantile(spread, 0.1)) and th.agreement == pytest.approx(0.90)
    d = np.array([0.5, 5.0, 5.0, 10.0, 10.0, 10.0, 10.0])
    h = np.array([0.5, 0.1, 5.0, 9.0, 9.0, 9.0, 9.0])
    acc = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.3, np.nan])
    agr = np.array([1.0, 0.99, 0.99, 0.95, 0.89, 0.5, np.nan])
    assert label(d, h, th, acc, agr) == ["replica", "interpolation", "near-copy", "near-copy", "novel",
                                         "novel, non-functional", "novel"]
    # without a task only distances decide
    assert label(d, h, th) == ["replica", "interpolation", "near-copy", "novel", "novel", "novel", "novel"]
    # >= 90% of the independent solutions themselves pass
    assert np.mean([v == "novel" for v in label(spread, spread, th)]) >= 0.9
    assert "near-copy if neither and d_nearest < the 0.1-quantile" in th.rule and "non-functional" in th.rule
    with pytest.raises(ValueError, match="novel_quantile"):
        calibrate(spread, "runs", novel_quantile=0.7)


def test_trivial_baselines_are_never_novel_while_closer_than_independent_solutions(population):
    """Noise at every scale, aligned averages, interpolations and the per-parameter
    Gaussian: none is labelled novel while nearer to the zoo than the novel threshold; the
    broken ones far away read as non-functional; the planted independent models are novel."""
    zoo, runs, novel = population
    r = audit(novel, zoo, task=get_task(TASK), runs=runs, n_baseline=12, max_reference=20, probe_size=128,
              noise_scales=(0.02, 0.1, 0.2, 0.4, 0.8, 1.6))
    th = r.thresholds
    assert th.calibrated and th.functional is not None and th.agreement is not None
    assert r.verdicts.count("novel") >= len(novel) - 1  # ~5% of independent models read as near-copies
    for name, b in r.baselines.items():
        m = b["metrics"]
        for v, d, a, acc in zip(b["verdicts"], m["aligned_distance"], m["max_agreement"], m["accuracy"]):
            if d < th.novel or a > th.agreement:
                assert not v.startswith("novel"), (name, v, d, th.novel)
            if v.startswith("novel") and acc < th.functional:
                assert v == "novel, non-functional", (name, v, acc)
    g = r.baselines["gaussian"]
    assert set(g["verdicts"]) <= {"near-copy", "novel, non-functional"}, g["verdicts"]
    small = r.baselines["noise@0.1"]["verdicts"]
    assert set(small) <= {"replica", "near-copy"}


def test_answer_says_when_function_was_not_measured():
    from wspace.audit.report import answer

    v = ["replica", "novel", "novel, non-functional", "near-copy"]
    assert answer(v).endswith("and 2 novel: 1 functional, 1 non-functional.")
    assert answer(["novel"] * 3, function_measured=False).endswith(
        "and 3 novel (their function was not measured: no task given).")
