"""The audit measures distances up to every symmetry of the spec: a training network
transformed by any mix of permutations, sign flips, SIREN phase shifts and positive
rescalings is a replica at distance ~0, for MLPs, CNNs, SIRENs and residual nets; with
``symmetries="permutations"`` the same copies are far (the canonical frame is what finds them)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nets import FAMILIES
from test_symmetry_canonical import _population, transformed
from wspace.audit import audit
from wspace.errors import WeightSpaceError


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_symmetry_transformed_copies_are_replicas(name):
    zoo, _ = _population(name, n=6, seed=1)
    zoo = zoo.to(torch.float32)
    copies = transformed(zoo.map(lambda t: t[:3]), seed=9)
    kw = dict(runs=list(range(6)), baselines=False, shortlist=6, max_reference=6)
    r = audit(copies, zoo, **kw)
    scale = float(np.median(r.thresholds.spread_median))
    assert r.verdicts == ["replica"] * 3, (name, r.metrics["aligned_distance"], r.thresholds.replica)
    assert np.all(r.metrics["aligned_distance"] < 1e-4 * scale)
    assert list(r.metrics["nearest_index"]) == [0, 1, 2]
    perm_only = audit(copies, zoo, symmetries="permutations", **kw)
    assert np.all(perm_only.metrics["aligned_distance"] > 1e-2 * scale)  # scales / signs / phases left over
    assert r.info["settings"]["symmetries"] == "all"


def test_options_are_checked():
    zoo, _ = _population("mlp", n=3)
    with pytest.raises(WeightSpaceError, match="symmetries"):
        audit(zoo, zoo, symmetries="scales")
    with pytest.raises(WeightSpaceError, match="novel_quantile"):
        audit(zoo, zoo, novel_quantile=0.9)
