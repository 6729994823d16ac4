"""Stage 1 of IGPG training: one :class:`~.vqvae.ChunkVQVAE` on the zoos of several architectures.

Batches come from one architecture at a time, in turn (:class:`MixedBatches`: each
architecture's stream is a :class:`~generators.fitting.RandomBatches` of its own, so the
whole stream is a function of the seed and resumes exactly). The loss is the masked MSE
of the standardized chunks, the quantizer's commitment loss and, after
``behaviour_start`` of the steps, D2NWG's behaviour loss (outputs of the reconstructed
networks vs the originals on query inputs, :func:`generators.d2nwg.vae_stage.behaviour_loss`).
Codebook usage and perplexity of every batch are logged.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import lightning as L
import torch

from wspace.errors import WeightSpaceError
from wspace.fingerprint import code_version, settle
from wspace.space import WeightSpace

from ..autoencoders import masked_mse
from ..d2nwg.vae_stage import behaviour_loss
from ..fitting import RandomBatches, cosine_schedule, fit_stage, trainer_fingerprint
from ..tokenizer import WeightTokenizer
from .descriptors import chunk_descriptors
from .vqvae import ChunkVQVAE, codebook_usage

__all__ = ["MixedBatches", "VQStage", "train_chunk_vq", "VQ_DEFAULTS"]

#: settings of :func:`train_chunk_vq` (any may be overridden)
VQ_DEFAULTS = {"chunk_size": 16, "codebook_size": 1024, "code_dim": 32, "d_model": 256, "depth": 2,
               "num_quantizers": 4, "commitment_weight": 0.25, "lr": 1e-3, "steps": 3000, "warmup": 100,
               "batch_size": 32, "behaviour_weight": 0.1, "behaviour_start": 0.25}


class MixedBatches(RandomBatches):
    """Endless batches ``(architecture index, tokens)``, architectures in turn.

    Batch ``i`` comes from architecture ``i % A``, as the ``i // A``-th batch of that
    architecture's own :class:`RandomBatches` stream (seed ``seed + a``).
    """

    def __init__(self, tokens: Sequence[torch.Tensor], batch_size: int, seed: int):
        if not tokens:
            raise WeightSpaceError("no architectures to train on")
        super().__init__((tokens[0],), batch_size, seed)
        self.parts = [RandomBatches((t,), batch_size, seed + a) for a, t in enumerate(tokens)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        A = len(self.parts)
        for a, part in enumerate(self.parts):  # the batches of each stream already trained on
            part.resume_at(max(0, (self.start - a + A - 1) // A))
        streams = [iter(p) for p in self.parts]
        a = self.start % A
        while True:
            yield torch.tensor(a), next(streams[a])[0]
            a = (a + 1) % A


class VQStage(L.LightningModule):
    """Trains ``model`` on the tokens of every architecture (see the module doc).

    ``tokenizers``: one per architecture (fitted); ``queries``: per architecture the
    inputs of the behaviour loss (None: structure only); ``config``: :data:`VQ_DEFAULTS`' keys.
    """

    def __init__(self, model: ChunkVQVAE, tokenizers: Sequence[WeightTokenizer],
                 queries: Sequence[torch.Tensor | None], config: Mapping[str, Any]):
        super().__init__()
        self.model = model
        self.tokenizers = list(tokenizers)
        self.config = {**VQ_DEFAULTS, **dict(config)}
        self.behaviour_from = int(float(self.config["behaviour_start"]) * int(self.config["steps"]))
        self.has_query = [q is not None for q in queries]
        for a, (tk, q) in enumerate(zip(self.tokenizers, queries)):
            self.register_buffer(f"desc{a}", chunk_descriptors(tk), persistent=False)
            self.register_buffer(f"mask{a}", tk.mask.clone(), persistent=False)
            self.register_buffer(f"query{a}", q.clone() if q is not None else torch.zeros(0), persistent=False)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        a, tokens = int(batch[0]), batch[1]
        desc, mask = getattr(self, f"desc{a}"), getattr(self, f"mask{a}")
        recon, idx, commit = self.model(tokens, desc)
        mse = masked_mse(recon, tokens, mask)
        loss = mse + commit
        logs = {"train/mse": mse.detach(), "train/commit": commit.detach()}
        w = float(self.config["behaviour_weight"])
        if w > 0 and self.has_query[a] and self.global_step >= self.behaviour_from:
            b = behaviour_loss(self.tokenizers[a], recon, tokens, getattr(self, f"query{a}"))
            loss = loss + w * b
            logs["train/behaviour"] = b.detach()
        usage = codebook_usage(idx[..., 0], self.model.codebook_size)
        logs.update({"train/loss": loss.detach(), "train/usage": usage["usage"],
                     "train/perplexity": usage["perplexity"]})
        self.log_dict(logs, prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.model.parameters(), lr=float(self.config["lr"]), weight_decay=0.0)
        return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, int(self.config["steps"]),
                                                                  int(self.config["warmup"]))}


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _data_digest(ws: WeightSpace) -> dict[str, Any]:
    """What a trained codebook depends on: the architecture and the exact weights."""
    return {"spec": ws.spec.describe(), "n": len(ws), "weights": _tensor_digest(ws.flatten())}


def train_chunk_vq(zoos: Mapping[str, WeightSpace], out: str | Path, config: Mapping[str, Any] | None = None, *,
                   queries: Mapping[str, torch.Tensor] | None = None, seed: int = 0, progress: bool = False,
                   trainer: Mapping[str, Any] | None = None) -> tuple[ChunkVQVAE, dict[str, WeightTokenizer]]:
    """Train one chunk VQ-VAE on the networks of every architecture of ``zoos`` (name -> networks).

    Returns the model and the fitted tokenizer of each architecture. ``queries``: inputs
    of the behaviour loss per architecture (missing: structure only). Checkpoints and logs
    go under ``out``; a run killed midway resumes from its last checkpoint, and a rerun
    with other settings, data or code into the same ``out`` refuses (naming what differs)
    rather than resuming a model trained otherwise.

    Raises:
        WeightSpaceError: no architectures, an unknown setting, an empty zoo, or ``out``
            holding a stage trained with other settings.
    """
    unknown = sorted(set(config or {}) - set(VQ_DEFAULTS))
    if unknown:
        raise WeightSpaceError(f"unknown IGPG VQ setting(s) {unknown}; known: {sorted(VQ_DEFAULTS)}")
    cfg = {**VQ_DEFAULTS, **dict(config or {})}
    if not zoos:
        raise WeightSpaceError("train_chunk_vq needs the networks of at least one architecture")
    names = list(zoos)
    tokenizers, tokens = {}, []
    for name in names:
        ws = zoos[name]
        if len(ws) == 0:
            raise WeightSpaceError(f"architecture '{name}' has no networks")
        tk = WeightTokenizer(ws.spec, chunk_size=int(cfg["chunk_size"]), per_neuron=False).fit(ws)
        tokenizers[name] = tk
        tokens.append(tk.tokenize(ws).float())
    settle(out, "vq", {"stage": "igpg vq", "config": cfg, "seed": int(seed), "trainer": trainer_fingerprint(trainer),
                       "data": {n: _data_digest(zoos[n]) for n in names}, "behaviour queries":
                       {n: _tensor_digest(q) for n, q in (queries or {}).items() if n in zoos},
                       "code version": code_version(["generators.igpg", "generators.tokenizer"])},
           ["checkpoints/vq"], what="the IGPG VQ stage")
    model = ChunkVQVAE(int(cfg["chunk_size"]), codebook_size=int(cfg["codebook_size"]), code_dim=int(cfg["code_dim"]),
                       d_model=int(cfg["d_model"]), depth=int(cfg["depth"]), num_quantizers=int(cfg["num_quantizers"]),
                       commitment_weight=float(cfg["commitment_weight"]))
    stage = VQStage(model, [tokenizers[n] for n in names], [(queries or {}).get(n) for n in names], cfg)
    loader = torch.utils.data.DataLoader(MixedBatches(tokens, int(cfg["batch_size"]), seed), batch_size=None)
    fit_stage(stage, "vq", Path(out), int(cfg["steps"]), loader, dict(trainer or {}),
              every=max(1, int(cfg["steps"]) // 10), progress=progress, seed=seed)
    model.eval()
    return model, tokenizers
