"""The training forward: the library's interpreter (:mod:`wspace.functional`) stepped one
top-level op at a time, with per-network dropout between ops."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from wspace import functional
from wspace.errors import WeightSpaceError
from wspace.spec import WeightSpaceSpec

from .randomness import DropoutSampler

__all__ = ["train_forward"]


def _dropout_acts(st: functional.Activations, dropout: Callable, site: int, M: int) -> None:
    """Dropout on the activations of M networks, in whichever layout they are."""
    if st.layout == "grouped" and isinstance(dropout, DropoutSampler):
        N, MC = st.h.shape[:2]
        C, sp = MC // M, st.h.shape[2:]
        f = dropout.factor((N, C, *sp), site, st.h.dtype, st.h.device)  # [M, N, C, ...]: a network's own mask
        st.h = st.h * f.transpose(0, 1).reshape(N, MC, *sp)
    else:
        st.h = dropout(st.to("bnc"), site)


def train_forward(
    spec: WeightSpaceSpec,
    tensors: Sequence[torch.Tensor],
    x: torch.Tensor,
    dropout: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``functional.forward`` in training mode (same result without ``dropout``).

    ``dropout(h, site)`` is applied after every hidden activation of the top-level
    program (``site`` = its index), or at the spec's own dropout ops if it has any.
    The ops run through :func:`wspace.functional.run_ops` with ``keep_grouped``:
    convolutions run grouped and keep the grouped layout until global pooling or
    flatten (faster than transposing around every layer), where a
    :class:`~datasets_zoo.train_vectorized.DropoutSampler` draws each network's mask
    directly in that layout.
    """
    M = tensors[0].shape[0]
    shared = x.dim() == spec.input_dims + 2
    x = x.to(dtype=tensors[0].dtype, device=tensors[0].device)
    st = functional.Activations(x, shared, B=M, keep_grouped=True)
    has_drop_ops = any(op.kind == "dropout" for op in spec.program)
    site = 0
    for op in spec.program:
        if op.kind == "dropout":
            if dropout is not None:
                if st.shared:
                    raise WeightSpaceError("dropout before the first parametric layer is not supported")
                _dropout_acts(st, dropout, site, M)
            site += 1
            continue
        functional.run_ops((op,), tensors, st)
        if op.kind == "act" and dropout is not None and not has_drop_ops and not st.shared:
            _dropout_acts(st, dropout, site, M)
            site += 1
    if st.shared:
        return st.h.unsqueeze(0).expand(M, *st.h.shape)
    return st.to("bnc")
