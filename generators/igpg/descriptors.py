"""Where a weight chunk sits in its network: integer descriptors, one row per token.

IGPG conditions the coding of every chunk on its layer and position, so that one
codebook serves all architectures. A descriptor row holds, per token of a
:class:`~generators.tokenizer.WeightTokenizer` grid:

``kind`` (0 linear, 1 conv), ``in_features``, ``out_features``, ``kernel`` (values per
kernel: 1 for a linear layer), ``depth`` (parametric layer index), ``from_end`` (layers
after it: 0 for the output layer, so depth-independent), ``chunk`` (chunk index inside
the layer) and ``chunks`` (chunks of the layer). Sizes are integers; an embedding clamps
them to its vocabulary (:class:`.vqvae.ChunkVQVAE`).
"""
from __future__ import annotations

import math

import torch

from wspace.errors import WeightSpaceError

__all__ = ["DESCRIPTOR_FIELDS", "LAYER_KINDS", "chunk_descriptors"]

DESCRIPTOR_FIELDS = ("kind", "in_features", "out_features", "kernel", "depth", "from_end", "chunk", "chunks")
LAYER_KINDS = ("linear", "conv")


def chunk_descriptors(tokenizer) -> torch.Tensor:
    """``[T, len(DESCRIPTOR_FIELDS)]`` long: the descriptor of every token of ``tokenizer``.

    Raises:
        WeightSpaceError: a parametric layer of a kind outside :data:`LAYER_KINDS`.
    """
    spec, lay = tokenizer.spec, tokenizer.layout
    layers = spec.layers
    n = len(layers)
    chunks = torch.zeros(n, dtype=torch.long)
    chunks.scatter_add_(0, lay.layer_index.long(), torch.ones_like(lay.layer_index, dtype=torch.long))
    rows = []
    for li, ci in zip(lay.layer_index.tolist(), lay.chunk_index.tolist()):
        layer = layers[li]
        if layer.kind not in LAYER_KINDS:
            raise WeightSpaceError(f"IGPG codes linear and conv layers; layer {li} is '{layer.kind}'")
        rows.append([LAYER_KINDS.index(layer.kind), layer.in_features, layer.out_features,
                     math.prod(layer.kernel) if layer.kernel else 1, li, n - 1 - li, ci, int(chunks[li])])
    return torch.tensor(rows, dtype=torch.long).reshape(-1, len(DESCRIPTOR_FIELDS))
