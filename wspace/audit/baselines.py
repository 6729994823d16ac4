"""Trivial weight generators that any learned generator must beat (Zeng et al. 2025).

Each takes the training networks (a :class:`~wspace.WeightSpace`) and returns new ones:

* :func:`noise_baseline`: training checkpoints plus Gaussian noise (a replica with a
  controllable distance); :func:`noise_grid` runs it at several scales.
* :func:`aligned_average`: the average of ``k`` training checkpoints after permuting
  them onto a common reference (p-diff's "average" baseline, made symmetry-aware);
  :func:`average_baseline` draws many such averages.
* :func:`gaussian_baseline`: a per-parameter Gaussian fitted to the zoo (p-diff's
  "gaussian" baseline), optionally in an aligned frame.
* :func:`interpolation_baseline`: ``(1 - a) x_i + a P(x_j)`` for random pairs, ``x_j``
  permuted onto ``x_i`` first (linear mode connectivity).

Noise scales are relative by default: ``scale`` times the root-mean-square of each
parameter tensor over the training networks, so one grid fits every architecture.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from wspace.align import weight_matching, weight_matching_to_reference
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.symmetry import permute

__all__ = [
    "DEFAULT_NOISE_SCALES",
    "noise_baseline",
    "noise_grid",
    "aligned_average",
    "average_baseline",
    "gaussian_baseline",
    "fit_gaussian",
    "sample_gaussian",
    "interpolation_baseline",
]

DEFAULT_NOISE_SCALES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def _check(ws: WeightSpace, n: int | None = None, what: str = "baseline") -> None:
    if not isinstance(ws, WeightSpace):
        raise WeightSpaceError(f"the {what} needs a WeightSpace of training networks, got {type(ws).__name__}")
    if len(ws) == 0:
        raise WeightSpaceError(f"the {what} needs at least one training network")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise WeightSpaceError(f"the {what} needs a positive number of samples, got {n!r}")


def _pick(n: int, high: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randint(high, (n,), generator=generator)


def noise_baseline(
    ws: WeightSpace, n: int, scale: float, *, relative: bool = True, generator: torch.Generator | None = None,
    return_index: bool = False,
) -> WeightSpace | tuple[WeightSpace, torch.Tensor]:
    """``n`` random training checkpoints plus ``N(0, sigma^2)`` noise per parameter.

    ``sigma = scale * rms(tensor over the training networks)`` when ``relative``, else
    ``scale``. With ``return_index`` also the index of the checkpoint each one copies.
    """
    _check(ws, n, "noise baseline")
    idx = _pick(n, len(ws), generator)
    out = []
    for t in ws.tensors:
        t = t.detach()
        sigma = scale * float(t.double().pow(2).mean().sqrt()) if relative else scale
        out.append(t[idx] + sigma * torch.randn((n, *t.shape[1:]), generator=generator, dtype=t.dtype))
    res = WeightSpace(ws.spec, out)
    return (res, idx) if return_index else res


def noise_grid(
    ws: WeightSpace, n: int, scales: Sequence[float] = DEFAULT_NOISE_SCALES, *, relative: bool = True,
    generator: torch.Generator | None = None,
) -> dict[float, WeightSpace]:
    """:func:`noise_baseline` at every scale of ``scales`` (``n`` networks each)."""
    return {float(s): noise_baseline(ws, n, float(s), relative=relative, generator=generator) for s in scales}


def aligned_average(
    ws: WeightSpace, k: int | None = None, reference: WeightSpace | None = None,
    generator: torch.Generator | None = None, *, iterations: int = 2, **match_kwargs: Any,
) -> WeightSpace:
    """The average of ``k`` training checkpoints after permuting them onto a common reference (B = 1).

    The checkpoints are the first ``k`` of ``ws`` (all when ``k`` is None), or ``k``
    drawn at random when a ``generator`` is given. They are aligned onto ``reference``
    (default: the first of them) and averaged; each further iteration re-aligns them
    onto that average (a better template than any single member) and averages again.
    ``match_kwargs`` go to :func:`wspace.align.weight_matching` (e.g. ``max_iter``).

    Raises:
        WeightSpaceError: ``k`` out of range or a reference of another architecture.
    """
    _check(ws, None, "aligned average")
    members = ws.detach()
    if k is not None:
        if not isinstance(k, int) or not 1 <= k <= len(ws):
            raise WeightSpaceError(f"k must be an integer in 1..{len(ws)} (the training networks), got {k!r}")
        idx = torch.randperm(len(ws), generator=generator)[:k] if generator is not None else torch.arange(k)
        members = members.map(lambda t: t[idx])
    if reference is None:
        reference = members[0]
    elif not reference.spec.same_space(ws.spec):
        raise WeightSpaceError(f"the reference ({reference.spec.describe()}) is not of the training networks' "
                               f"architecture ({ws.spec.describe()})")
    elif len(reference) != 1:
        raise WeightSpaceError(f"the reference must be one network, got a batch of {len(reference)}")
    template = reference.detach()
    for _ in range(max(1, int(iterations))):
        P = weight_matching_to_reference(members, template, generator=generator, **match_kwargs)
        template = permute(members, P).map(lambda t: t.mean(0, keepdim=True))
    return template


def average_baseline(
    ws: WeightSpace, n: int, k: int = 16, *, generator: torch.Generator | None = None
) -> WeightSpace:
    """``n`` aligned averages, each of ``k`` random checkpoints aligned onto the first of them
    (one batched weight-matching call for all ``n * k`` pairs)."""
    _check(ws, n, "average baseline")
    k = max(1, min(int(k), len(ws)))
    idx = torch.stack([torch.randperm(len(ws), generator=generator)[:k] for _ in range(n)])  # [n, k]
    members = ws.detach().map(lambda t: t[idx.reshape(-1)])
    refs = ws.detach().map(lambda t: t[idx[:, 0].repeat_interleave(k)])
    P = weight_matching(refs, members, generator=generator)
    aligned = permute(members, P)
    return aligned.map(lambda t: t.reshape(n, k, *t.shape[1:]).mean(1))


def fit_gaussian(ws: WeightSpace, *, aligned: bool = False, generator: torch.Generator | None = None
                 ) -> tuple[WeightSpace, WeightSpace]:
    """Per-parameter mean and std (population std) of the zoo ``ws``: two networks (B = 1), float64.

    ``aligned=True`` fits after permuting the zoo onto its first network (a tighter,
    symmetry-aware fit).
    """
    _check(ws, 1, "gaussian fit")
    src = ws.detach()
    if aligned and len(src) > 1:
        src = permute(src, weight_matching_to_reference(src, src[0], generator=generator))
    mean = src.map(lambda t: t.double().mean(0, keepdim=True))
    std = src.map(lambda t: t.double().std(0, unbiased=False, keepdim=True))
    return mean, std


def sample_gaussian(mean: WeightSpace, std: WeightSpace, n: int, *, generator: torch.Generator | None = None,
                    dtype: torch.dtype | None = None) -> WeightSpace:
    """``n`` draws of independent ``N(mean, std^2)`` per parameter (``mean`` / ``std``: B = 1
    each, as :func:`fit_gaussian` returns); drawn in float64, returned in ``dtype``
    (default: ``mean``'s)."""
    out = []
    for m, s in zip(mean.tensors, std.tensors):
        noise = torch.randn((n, *m.shape[1:]), generator=generator, dtype=torch.float64).to(m.device)
        out.append((m[0].double() + s[0].double() * noise).to(dtype or m.dtype))
    return WeightSpace(mean.spec, out)


def gaussian_baseline(
    ws: WeightSpace, n: int, *, aligned: bool = False, generator: torch.Generator | None = None
) -> WeightSpace:
    """``n`` draws of an independent Gaussian per parameter with the zoo's mean and std
    (:func:`fit_gaussian`, then :func:`sample_gaussian`).

    ``aligned=True`` fits the Gaussian after permuting the zoo onto its first network
    (a tighter, symmetry-aware fit).
    """
    _check(ws, n, "gaussian baseline")
    mean, std = fit_gaussian(ws, aligned=aligned, generator=generator)
    return sample_gaussian(mean, std, n, generator=generator, dtype=ws.dtype)


def interpolation_baseline(
    ws: WeightSpace, n: int, *, alpha: float | None = 0.5, runs: Sequence | None = None,
    generator: torch.Generator | None = None, return_pairs: bool = False,
) -> WeightSpace | tuple[WeightSpace, torch.Tensor, torch.Tensor]:
    """``n`` interpolations ``(1 - a) x_i + a P(x_j)`` of random pairs ``i != j``.

    ``x_j`` is permuted onto ``x_i`` by weight matching first. ``alpha`` fixes ``a``
    (default: midpoints); ``None`` draws ``a ~ U(0, 1)``. With ``runs`` (one label per
    network) the two networks of a pair come from different runs where possible.
    With ``return_pairs`` also the pairs ``[n, 2]`` and the ``a`` used ``[n]``.
    """
    _check(ws, n, "interpolation baseline")
    if len(ws) < 2:
        raise WeightSpaceError("the interpolation baseline needs at least two training networks")
    i = _pick(n, len(ws), generator)
    j = (i + 1 + _pick(n, len(ws) - 1, generator)) % len(ws)
    if runs is not None:
        labels = list(runs)
        if len(labels) != len(ws):
            raise WeightSpaceError(f"runs has {len(labels)} labels for {len(ws)} networks")
        code_of: dict = {}
        codes = torch.tensor([code_of.setdefault(str(r), len(code_of)) for r in labels])
        for _ in range(8):  # redraw partners from the same run (vectorized over pairs)
            same = codes[i] == codes[j]
            if not same.any():
                break
            j = torch.where(same, (i + 1 + _pick(n, len(ws) - 1, generator)) % len(ws), j)
    a = (torch.rand(n, generator=generator, dtype=torch.float64) if alpha is None
         else torch.full((n,), float(alpha), dtype=torch.float64))
    xi, xj = ws.detach().map(lambda t: t[i]), ws.detach().map(lambda t: t[j])
    xj = permute(xj, weight_matching(xi, xj, generator=generator))
    out = WeightSpace(ws.spec, [((1 - a.view(-1, *[1] * (ti.dim() - 1))) * ti.double()
                                 + a.view(-1, *[1] * (tj.dim() - 1)) * tj.double()).to(ti.dtype)
                                for ti, tj in zip(xi.tensors, xj.tensors)])
    return (out, torch.stack([i, j], 1), a) if return_pairs else out
