"""A vector-quantized autoencoder of weight chunks, conditioned on where each chunk sits.

Each token (a chunk of ``chunk_size`` standardized weights, :class:`~generators.tokenizer.
WeightTokenizer` with ``per_neuron=False``) is encoded on its own, together with an
embedding of its descriptor (:mod:`.descriptors`), into one vector; the vector is
replaced by its nearest code of a shared codebook (with ``num_quantizers > 1``, residual
quantization: the remainder is coded again by the next codebook, ``Q`` codes per chunk)
and decoded back, again with the descriptor. The codebooks are
``vector_quantize_pytorch.ResidualVQ``: EMA updates of
the codes (no gradient to the codebook), k-means initialization on the first batch, and
dead-code restarts (a code whose EMA usage falls below ``dead_code_ratio`` of the mean
usage is replaced by a random encoder output of the batch), with a commitment loss on the
encoder. EMA + restarts rather than a Gumbel-softmax codebook (IGPG's public code):
no temperature schedule to tune, and restarts keep the usage of a large codebook up.

Tokens are coded independently given their descriptors, so the model does not depend on
the number of tokens: one model serves every architecture whose layers fit its
descriptor vocabularies (``max_size``, ``max_depth``, ``max_chunks``; larger values
raise a clear error rather than being silently clamped).
"""
from __future__ import annotations

import torch
from torch import nn
from vector_quantize_pytorch import ResidualVQ

from wspace.errors import WeightSpaceError

from .descriptors import DESCRIPTOR_FIELDS

__all__ = ["ChunkVQVAE", "codebook_usage"]


def _mlp(d_in: int, d_hidden: int, d_out: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, d_hidden), nn.GELU()]
    for _ in range(max(0, depth - 1)):
        layers += [nn.Linear(d_hidden, d_hidden), nn.GELU()]
    layers.append(nn.Linear(d_hidden, d_out))
    return nn.Sequential(*layers)


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """``{"usage": share of codes used, "perplexity": exp(entropy of the code histogram)}``."""
    counts = torch.bincount(indices.reshape(-1).long(), minlength=codebook_size).double()
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(entropy.exp())}


class ChunkVQVAE(nn.Module):
    """VQ autoencoder of weight chunks ``[B, T, C]`` with descriptors ``[T, F]`` (see module doc).

    Args:
        chunk_size: values per chunk (the tokenizer's ``chunk_size``).
        codebook_size: codes in the shared codebook.
        code_dim: dimension of a code.
        d_model, depth: width and hidden layers of the encoder and decoder MLPs.
        max_size: largest layer width / fan-in / kernel volume the descriptors may name.
        max_depth: most parametric layers a network may have.
        max_chunks: most chunks a layer may have.
        num_quantizers: codes per chunk (residual quantization; 1: plain VQ).
        commitment_weight, decay, dead_code_ratio: the quantizer's (commitment loss
            weight, EMA decay of the codes, restart threshold relative to the mean usage).
    """

    def __init__(self, chunk_size: int, codebook_size: int = 512, code_dim: int = 32, d_model: int = 256,
                 depth: int = 2, num_quantizers: int = 1, max_size: int = 1024, max_depth: int = 32, max_chunks: int = 4096,
                 commitment_weight: float = 0.25, decay: float = 0.99, dead_code_ratio: float = 0.1):
        super().__init__()
        self.config = dict(chunk_size=chunk_size, codebook_size=codebook_size, code_dim=code_dim, d_model=d_model,
                           depth=depth, num_quantizers=num_quantizers, max_size=max_size, max_depth=max_depth, max_chunks=max_chunks,
                           commitment_weight=commitment_weight, decay=decay, dead_code_ratio=dead_code_ratio)
        self.limits = torch.tensor([1, max_size, max_size, max_size, max_depth - 1, max_depth - 1, max_chunks - 1,
                                    max_chunks])
        self.desc = nn.ModuleList([nn.Embedding(int(v) + 1, d_model) for v in self.limits.tolist()])
        self.encoder = _mlp(chunk_size + d_model, d_model, code_dim, depth)
        self.decoder = _mlp(code_dim + d_model, d_model, chunk_size, depth)
        self.quantizer = ResidualVQ(dim=code_dim, num_quantizers=int(num_quantizers), codebook_size=codebook_size,
                                    decay=decay, commitment_weight=commitment_weight, kmeans_init=True, kmeans_iters=10,
                                    dead_code_threshold_ratio=dead_code_ratio)

    @property
    def codebook_size(self) -> int:
        return int(self.config["codebook_size"])

    def describe(self, descriptors: torch.Tensor) -> torch.Tensor:
        """``[T, d_model]``: the embedding of every token's descriptor (summed over fields)."""
        d = descriptors.long()
        if d.dim() != 2 or d.shape[1] != len(DESCRIPTOR_FIELDS):
            raise WeightSpaceError(f"descriptors must be [T, {len(DESCRIPTOR_FIELDS)}], got {list(d.shape)}")
        over = (d < 0) | (d > self.limits.to(d.device))
        if over.any():
            t, f = (int(x) for x in over.nonzero()[0])
            raise WeightSpaceError(
                f"token {t}: {DESCRIPTOR_FIELDS[f]}={int(d[t, f])} is outside what this model codes "
                f"(0..{int(self.limits[f])}); build it with larger max_size / max_depth / max_chunks")
        return sum(emb(d[:, i]) for i, emb in enumerate(self.desc))

    def encode(self, tokens: torch.Tensor, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
        """``(quantized [B, T, code_dim], code indices [B, T, Q], commitment loss)`` of ``tokens``."""
        B, T, _ = tokens.shape
        e = self.describe(descriptors).unsqueeze(0).expand(B, -1, -1)
        h = self.encoder(torch.cat([tokens, e], -1))
        q, idx, commit = self.quantizer(h)
        return q, idx, commit.sum()

    def decode(self, codes: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Chunks ``[B, T, chunk_size]`` from quantized vectors ``[B, T, code_dim]`` (floating
        point) or code indices ``[B, T, Q]`` (integers)."""
        if not codes.is_floating_point():
            Q = int(self.config["num_quantizers"])
            if codes.dim() != 3 or codes.shape[-1] != Q:
                raise WeightSpaceError(f"code indices must be [B, T, {Q}], got {list(codes.shape)}")
            if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
                raise WeightSpaceError(f"code indices must lie in 0..{self.codebook_size - 1}")
            codes = self.quantizer.get_output_from_indices(codes.long())
        B = codes.shape[0]
        e = self.describe(descriptors).unsqueeze(0).expand(B, -1, -1)
        return self.decoder(torch.cat([codes, e], -1))

    def forward(self, tokens: torch.Tensor, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """``(reconstructed chunks, code indices, commitment loss)``."""
        q, idx, commit = self.encode(tokens, descriptors)
        return self.decode(q, descriptors), idx, commit
