"""Is a network close to a segment, or to the convex hull, of its nearest training networks?

Given a query ``q`` and its ``K`` nearest training networks, each already permuted onto
``q`` (``a_1..a_K``), with ``v_i = a_i - q``:

* segment distance: ``min over i<j, t in [0, 1] of ‖v_i + t (v_j - v_i)‖`` (closed form);
* hull distance: ``min over the simplex of ‖sum_i l_i v_i‖`` (projected gradient on the
  ``K x K`` Gram matrix, batched over queries).

An interpolation of training networks lies on (or near) such a segment / hull while
being far from each endpoint; an independent solution is about as far from the hull
as from its nearest neighbour.
"""
from __future__ import annotations

import torch

__all__ = ["gram", "segment_distance", "hull_distance", "project_simplex"]


def gram(neighbors: torch.Tensor, query: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[Q, K, K]`` Gram matrix of ``v_i = a_i - q`` (float64); invalid neighbours get 0 rows."""
    v = (neighbors.double() - query.double().unsqueeze(1)) * valid.unsqueeze(2)
    return v @ v.transpose(1, 2)


def segment_distance(G: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to the best segment between two valid neighbours: ``(distance [Q], t [Q])``.

    ``t`` is the position on the best segment (0 or 1 = an endpoint). Queries with fewer
    than two valid neighbours get the distance to their nearest one.
    """
    Q, K, _ = G.shape
    diag = G.diagonal(dim1=1, dim2=2)  # ‖v_i‖^2
    # ‖v_i + t (v_j - v_i)‖^2 = a + 2 t b + t^2 c
    a = diag.unsqueeze(2).expand(Q, K, K)
    b = G - a
    c = diag.unsqueeze(2) + diag.unsqueeze(1) - 2 * G
    t = torch.where(c > 0, -b / c.clamp_min(1e-300), torch.zeros_like(c)).clamp(0.0, 1.0)
    d2 = (a + 2 * t * b + t * t * c).clamp_min(0.0)
    pair = valid.unsqueeze(2) & valid.unsqueeze(1) & ~torch.eye(K, dtype=torch.bool).unsqueeze(0)
    d2 = d2.masked_fill(~pair, float("inf"))
    best, arg = d2.reshape(Q, -1).min(1)
    tt = t.reshape(Q, -1).gather(1, arg.unsqueeze(1)).squeeze(1)
    # fewer than two neighbours: the nearest one itself
    solo = diag.masked_fill(~valid, float("inf")).min(1).values
    return torch.where(torch.isinf(best), solo, best).sqrt(), torch.where(torch.isinf(best), torch.zeros_like(tt), tt)


def project_simplex(v: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` ``[Q, K]`` onto the simplex over its valid entries."""
    big = torch.where(valid, v, torch.full_like(v, -1e30))
    u, _ = big.sort(dim=1, descending=True)
    css = u.cumsum(1) - 1.0
    ind = torch.arange(1, v.shape[1] + 1, dtype=v.dtype)
    cond = (u - css / ind > 0) & (u > -1e29)
    rho = cond.long().cumsum(1).argmax(1)  # last True position
    theta = css.gather(1, rho.unsqueeze(1)) / (rho + 1).unsqueeze(1).to(v.dtype)
    return torch.where(valid, (v - theta).clamp_min(0.0), torch.zeros_like(v))


def hull_distance(G: torch.Tensor, valid: torch.Tensor, iters: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to the convex hull of the valid neighbours: ``(distance [Q], weights [Q, K])``.

    Accelerated projected gradient (FISTA) on ``l^T G l`` over the simplex.
    """
    Q, K, _ = G.shape
    n_valid = valid.sum(1).clamp_min(1).to(G.dtype)
    lam = valid.to(G.dtype) / n_valid.unsqueeze(1)
    y, t = lam.clone(), 1.0
    L = 2 * G.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-300)  # >= Lipschitz constant of the gradient
    for _ in range(iters):
        grad = 2 * (G @ y.unsqueeze(2)).squeeze(2)
        new = project_simplex(y - grad / L.unsqueeze(1), valid)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = new + ((t - 1) / t_new) * (new - lam)
        lam, t = new, t_new
    d2 = (lam.unsqueeze(1) @ G @ lam.unsqueeze(2)).reshape(Q).clamp_min(0.0)
    return d2.sqrt(), lam
