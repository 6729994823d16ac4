"""Train many networks of one spec in the same step.

A population of ``M`` networks of one spec is trained as one ``[M, D]`` parameter matrix
(viewed per parameter as the stacked tensors ``[M, *shape]`` of a
:class:`~wspace.WeightSpace`). Every training step

* gathers one mini-batch per network (each network its own data order, from its own
  seed) into ``x[M, batch, ...]``,
* runs all networks with the library's batched forward (plus per-network dropout),
* sums the per-network mean losses and calls autograd ONCE (network ``m``'s loss only
  depends on network ``m``'s parameters, so each gets exactly its own gradient),
* updates all networks with :class:`VectorizedOptimizer`, whose hyperparameters are
  ``[M]`` tensors (per-network learning rate, weight decay, momentum, optimizer kind).

Randomness is *per network* and does not depend on which other networks share the
chunk: data order comes from a counter-based hash of ``(seed, epoch, sample)``, dropout
masks from a per-step random bank read at a per-network offset (hash of ``(seed,
step)``). Training network ``m`` alone therefore gives the same weights (to float
rounding) as training it inside any chunk; ``tests/test_build.py`` checks this.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from wspace import functional
from wspace.errors import WeightSpaceError
from wspace.space import WeightSpace
from wspace.spec import WeightSpaceSpec

__all__ = [
    "OPTIMIZERS",
    "hash32",
    "counter_bits",
    "counter_uniform",
    "epoch_order",
    "DropoutSampler",
    "train_forward",
    "VectorizedOptimizer",
    "ClassifierData",
    "evaluate_classifiers",
    "classifier_metrics",
    "train_classifiers",
    "psnr",
    "fit_inrs",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
_M32 = 0xFFFFFFFF


# --------------------------------------------------------------------------- counter-based randomness
def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``x`` in [0, 2**32) held in int64, without int64 overflow."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _M32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (``lowbias32``) of int64 tensors holding values in [0, 2**32)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _hash_int(x: int) -> int:
    """:func:`hash32` of one Python integer (no tensor ops: used per step)."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _key(seeds: torch.Tensor, *stream: int) -> torch.Tensor:
    """Per-network 32-bit keys for a random stream (``seeds`` ``[M]`` int64)."""
    k = hash32(seeds.to(torch.int64) & _M32) ^ hash32((seeds.to(torch.int64) >> 32) + 0x9E3779B9)
    for s in stream:
        k = hash32(k ^ hash32(torch.as_tensor(int(s) & _M32, dtype=torch.int64) + 0x632BE5AB))
    return k


def counter_bits(seeds: torch.Tensor, stream: Sequence[int], n: int) -> torch.Tensor:
    """``[M, n]`` int64 32-bit random words, a pure function of ``(seed, stream, index)``."""
    k = _key(seeds, *stream)
    idx = torch.arange(n, dtype=torch.int64, device=seeds.device)
    return hash32(k[:, None] ^ hash32(idx)[None, :])


def counter_uniform(seeds: torch.Tensor, stream: Sequence[int], n: int) -> torch.Tensor:
    """``[M, n]`` float32 uniforms in [0, 1) (24 random bits each), see :func:`counter_bits`."""
    return (counter_bits(seeds, stream, n) >> 8).to(torch.float32) * (1.0 / (1 << 24))


_STREAM_ORDER = 1
_STREAM_DROPOUT = 2


def epoch_order(seeds: torch.Tensor, epoch: int, member: torch.Tensor) -> torch.Tensor:
    """Per-network random order of its own training samples for one epoch.

    ``member`` is ``[M, N]`` bool (which of the N pooled samples belong to network m's
    task). Returns ``[M, N]`` sample indices: row m starts with a random permutation of
    its members, followed by non-members.
    """
    keys = counter_bits(seeds, (_STREAM_ORDER, epoch), member.shape[1])
    keys = torch.where(member, keys, keys + (1 << 33))  # non-members sort last
    return torch.argsort(keys, dim=1, stable=True)


class DropoutSampler:
    """Per-network dropout masks that depend only on ``(network seed, step, site)``.

    Each call draws one random bank ``u[L]`` (from a generator seeded by ``(step,
    site)``, shared by all networks) and gives network m the window of ``u`` starting
    at its own offset (hash of ``(seed, step, site)``). Per network the mask entries are
    i.i.d. Bernoulli(1 - p) across elements and steps; the cost is one ``rand`` and one
    gather per site, not a hash per element.
    """

    def __init__(self, seeds: torch.Tensor, p: torch.Tensor):
        self.seeds = seeds.to(torch.int64)
        self.key = _key(self.seeds, _STREAM_DROPOUT)
        self.p = p.to(torch.float32)
        self.keep = 1.0 - self.p
        self.step = 0

    @property
    def active(self) -> bool:
        return bool((self.p > 0).any())

    def factor(self, shape: Sequence[int], site: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``[M, *shape]`` multipliers: 0 (dropped) or ``1 / (1 - p_m)`` (inverted dropout,
        as ``nn.Dropout``), for the activations of one site at the current step."""
        M = self.seeds.shape[0]
        K = math.prod(shape)
        L = 2 * K + 1  # more offsets than window positions: distinct networks, distinct windows
        g = torch.Generator(device="cpu").manual_seed(_hash_int(self.step * 1009 + site))
        bank = torch.rand(L, generator=g)
        off = hash32(self.key ^ _hash_int(_hash_int(self.step) ^ site)) % L  # [M] per-network offsets
        windows = torch.cat([bank, bank[:K]]).as_strided((L, K), (1, 1))
        u = windows.index_select(0, off.cpu()).to(device).reshape(M, *shape)
        keep = self.keep.to(device, dtype).reshape(M, *([1] * len(shape)))
        return torch.where(u < keep, 1.0 / keep, torch.zeros((), dtype=dtype, device=device))

    def __call__(self, h: torch.Tensor, site: int) -> torch.Tensor:
        """Dropout on ``h`` ``[M, ...]`` (network axis first)."""
        return h * self.factor(h.shape[1:], site, h.dtype, h.device)


# --------------------------------------------------------------------------- training forward
class _Acts:
    """Activations of M networks in one of three layouts: ``shared`` ``[N, C, ...]`` (input
    common to all networks), ``batched`` ``[M, N, C, ...]`` or ``grouped`` ``[N, M*C, ...]``
    (the layout grouped convolutions read and write: convnets stay in it from the first
    convolution to the global pooling, with no transposes in between)."""

    def __init__(self, h: torch.Tensor, mode: str, M: int):
        self.h, self.mode, self.M = h, mode, M

    def batched(self) -> torch.Tensor:
        if self.mode == "grouped":
            N, MC = self.h.shape[:2]
            self.h = self.h.reshape(N, self.M, MC // self.M, *self.h.shape[2:]).transpose(0, 1)
            self.mode = "batched"
        return self.h


def _conv_grouped(st: _Acts, w: torch.Tensor, b: torch.Tensor | None, attrs: dict) -> None:
    M, O, C = w.shape[:3]
    conv = F.conv1d if attrs["dims"] == 1 else F.conv2d
    weight = w.reshape(M * O, C, *w.shape[3:])
    bias = None if b is None else b.reshape(M * O)
    kw = dict(stride=attrs["stride"], padding=attrs["padding"], dilation=attrs["dilation"])
    if st.mode == "shared":  # one ungrouped convolution computes every network's first layer
        st.h = conv(st.h, weight, bias, **kw)
    else:
        if st.mode == "batched":
            h = st.h
            st.h = h.transpose(0, 1).reshape(h.shape[1], M * C, *h.shape[3:])
        st.h = conv(st.h, weight, bias, groups=M, **kw)
    st.mode = "grouped"


def _dropout_acts(st: _Acts, dropout: Callable, site: int) -> None:
    if st.mode == "grouped" and isinstance(dropout, DropoutSampler):
        N, MC = st.h.shape[:2]
        C, sp = MC // st.M, st.h.shape[2:]
        f = dropout.factor((N, C, *sp), site, st.h.dtype, st.h.device)  # [M, N, C, ...]: a network's own mask
        st.h = st.h * f.transpose(0, 1).reshape(N, MC, *sp)
    else:
        st.h = dropout(st.batched(), site)


def train_forward(
    spec: WeightSpaceSpec,
    tensors: Sequence[torch.Tensor],
    x: torch.Tensor,
    dropout: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``functional.forward`` in training mode (same result without ``dropout``).

    ``dropout(h, site)`` is applied after every hidden activation of the top-level
    program (``site`` = its index), or at the spec's own dropout ops if it has any.
    Convolutions run grouped and keep the grouped layout until global pooling or
    flatten (faster than transposing around every layer); ops this function does not
    specialize (linear layers, residual blocks...) run through ``functional``.
    """
    M = tensors[0].shape[0]
    shared = x.dim() == spec.input_dims + 2
    x = x.to(dtype=tensors[0].dtype, device=tensors[0].device)
    st = _Acts(x, "shared" if shared else "batched", M)
    has_drop_ops = any(op.kind == "dropout" for op in spec.program)
    site = 0
    for op in spec.program:
        k = op.kind
        if k == "conv":
            _conv_grouped(st, tensors[op.params[0]], tensors[op.params[1]] if len(op.params) > 1 else None,
                          dict(op.attrs))
        elif k == "act" and st.mode == "grouped":
            a = dict(op.attrs)
            st.h = functional._act(a.pop("name"), a, st.h)
        elif k == "pool" and st.mode == "grouped":
            a = dict(op.attrs)
            fn = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d,
                  ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d}[(a["mode"], a["dims"])]
            st.h = fn(st.h, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"])
        elif k == "gap" and st.mode == "grouped":
            N, MC = st.h.shape[:2]
            st.h = st.h.reshape(N, MC, -1).mean(-1).reshape(N, M, MC // M).transpose(0, 1)
            st.mode = "batched"
        elif k == "flatten" and st.mode == "grouped":
            N, MC = st.h.shape[:2]
            st.h = st.h.reshape(N, M, -1).transpose(0, 1)
            st.mode = "batched"
        elif k == "dropout":
            if dropout is not None:
                if st.mode == "shared":
                    raise WeightSpaceError("dropout before the first parametric layer is not supported")
                _dropout_acts(st, dropout, site)
            site += 1
            continue
        else:
            if st.mode == "grouped":
                st.batched()
            fs = functional._State(st.h, st.mode == "shared")
            functional._run((op,), tensors, fs)
            st.h, st.mode = fs.h, ("shared" if fs.shared else "batched")
        if k == "act" and dropout is not None and not has_drop_ops and st.mode != "shared":
            _dropout_acts(st, dropout, site)
            site += 1
    if st.mode == "shared":
        return st.h.unsqueeze(0).expand(M, *st.h.shape)
    return st.batched()


# --------------------------------------------------------------------------- optimizer
class VectorizedOptimizer:
    """SGD (with momentum), Adam and AdamW over stacked ``[M, ...]`` parameters.

    Every hyperparameter is per network (``[M]`` tensors, or scalars broadcast to M);
    ``kind[m]`` picks the update of network m, so one chunk can mix optimizers (each
    contiguous run of one kind is updated in place as one slice: order networks by
    kind to keep that to a few slices). The updates follow ``torch.optim``:

    * ``sgd``: ``g += wd * p``; ``buf = momentum * buf + g`` (``buf = g`` at the first
      step); ``p -= lr * buf``.
    * ``adam``: ``g += wd * p``; moments with bias correction; ``p -= lr / bc1 * m /
      (sqrt(v) / sqrt(bc2) + eps)``.
    * ``adamw``: ``p *= 1 - lr * wd`` first, then the Adam update without ``g += wd * p``.

    ``step(grads, active)`` updates only networks with ``active[m]``; the others keep
    their parameters, moments and step count (so early stopping and uneven epochs are
    exact per network).
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        *,
        kind: str | Sequence[str],
        lr: torch.Tensor | float,
        weight_decay: torch.Tensor | float = 0.0,
        momentum: torch.Tensor | float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        M = self.params[0].shape[0]
        dev = self.params[0].device
        kinds = [kind] * M if isinstance(kind, str) else list(kind)
        if len(kinds) != M or any(k not in OPTIMIZERS for k in kinds):
            raise WeightSpaceError(f"optimizer kinds must be {M} values among {OPTIMIZERS}, got {sorted(set(kinds))}")

        def vec(v: torch.Tensor | float, name: str) -> torch.Tensor:
            t = torch.as_tensor(v, dtype=torch.float32, device=dev)
            t = t.expand(M).clone() if t.dim() == 0 else t.to(torch.float32)
            if t.shape != (M,):
                raise WeightSpaceError(f"optimizer {name} must be a scalar or [{M}], got shape {tuple(t.shape)}")
            return t

        self.lr = vec(lr, "lr")
        self.wd = vec(weight_decay, "weight_decay")
        self.momentum = vec(momentum, "momentum")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        # contiguous segments of one optimizer kind: (kind, start, end)
        self.segments: list[tuple[str, int, int]] = []
        for m, k in enumerate(kinds):
            if self.segments and self.segments[-1][0] == k:
                self.segments[-1] = (k, self.segments[-1][1], m + 1)
            else:
                self.segments.append((k, m, m + 1))
        self.t = torch.zeros(M, dtype=torch.float64, device=dev)  # per-network step count
        self.state: list[list[torch.Tensor]] = [[] for _ in self.params]
        for i, p in enumerate(self.params):
            for k, a, b in self.segments:
                n_state = 1 if k == "sgd" else 2
                self.state[i].append([torch.zeros_like(p[a:b]) for _ in range(n_state)])

    def select(self, rows: torch.Tensor, params: Sequence[torch.Tensor]) -> "VectorizedOptimizer":
        """The optimizer of a subset of the networks (``rows``), whose parameters are now
        ``params`` (the selected rows): hyperparameters, moments and step counts follow.
        Single-kind optimizers only (one contiguous segment)."""
        if len(self.segments) != 1:
            raise WeightSpaceError("select() supports optimizers of one kind only")
        new = copy.copy(self)
        new.params = list(params)
        new.lr, new.wd, new.momentum, new.t = self.lr[rows], self.wd[rows], self.momentum[rows], self.t[rows]
        new.segments = [(self.segments[0][0], 0, len(rows))]
        new.state = [[[x[rows] for x in self.state[i][0]]] for i in range(len(self.params))]
        return new

    def _col(self, v: torch.Tensor, a: int, b: int, like: torch.Tensor) -> torch.Tensor:
        return v[a:b].reshape(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor | None = None) -> None:
        """Apply one update with ``grads`` (aligned with ``params``); with ``active``
        (``[M]`` bool) only those networks move (the others keep parameters, moments
        and step count)."""
        act = None if active is None or bool(active.all()) else active
        self.t += 1.0 if act is None else act.double()
        b1, b2 = self.betas
        for s, (kind, a, b) in enumerate(self.segments):
            t = self.t[a:b]
            if act is not None:
                act_s = act[a:b]
                if not bool(act_s.any()):
                    continue
                if bool(act_s.all()):
                    act_s = None
            else:
                act_s = None
            lr = self.lr[a:b]
            wd = self.wd[a:b]
            coupled = kind != "adamw" and bool((wd != 0).any())
            decoupled = kind == "adamw" and bool((wd != 0).any())
            if kind != "sgd":
                tt = t.clamp_min(1.0)  # bias corrections in double, as torch.optim (Python floats)
                bc2_sqrt = (1.0 - b2 ** tt).sqrt().float()
                step_size = (lr.double() / (1.0 - b1 ** tt)).float()
            else:
                first = t == 1.0
            for i, (p_all, g_all) in enumerate(zip(self.params, grads)):
                p, g = p_all[a:b], g_all[a:b]
                st = self.state[i][s]
                if act_s is not None:  # keep inactive networks' parameters and moments
                    old_p = p.clone()
                    old_st = [x.clone() for x in st]
                if coupled:
                    g = g + self._col(wd, 0, b - a, p) * p
                if kind == "sgd":
                    buf = st[0]
                    mom = self._col(self.momentum, a, b, p)
                    # torch.optim.SGD: buf = g at the first step, then momentum * buf + g
                    if bool(first.any()):
                        buf.copy_(torch.where(self._col(first, 0, b - a, p), g, buf * mom + g))
                    else:
                        buf.mul_(mom).add_(g)
                    p.sub_(buf * self._col(lr, 0, b - a, p))
                else:
                    m, v = st
                    if decoupled:
                        p.mul_(1.0 - self._col(lr * wd, 0, b - a, p))
                    m.lerp_(g, 1.0 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                    denom = v.sqrt().div_(self._col(bc2_sqrt, 0, b - a, p)).add_(self.eps)
                    p.sub_(torch.div(m, denom).mul_(self._col(step_size, 0, b - a, p)))
                if act_s is not None:
                    keep = ~self._col(act_s, 0, b - a, p)
                    p.copy_(torch.where(keep, old_p, p))
                    for x, ox in zip(st, old_st):
                        x.copy_(torch.where(keep, ox, x))


# --------------------------------------------------------------------------- classifiers
def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy ``[..., C], [...] -> [...]`` (``logsumexp`` form: several
    times faster on CPU than ``F.cross_entropy`` for few classes)."""
    return logits.logsumexp(-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)


@dataclass
class ClassifierData:
    """Pooled data of a chunk of classifiers.

    ``x_train`` ``[N, ...]`` and ``x_test`` ``[N_test, ...]`` are shared by all networks;
    ``y_train`` ``[M, N]`` / ``y_test`` ``[M, N_test]`` hold each network's label of each
    sample, ``-1`` where the sample is not part of that network's task (class-subset
    tasks pool the full dataset). ``[N]`` labels mean every network has the same task.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def labels(self, M: int) -> tuple[torch.Tensor, torch.Tensor]:
        ytr = self.y_train if self.y_train.dim() == 2 else self.y_train.expand(M, -1)
        yte = self.y_test if self.y_test.dim() == 2 else self.y_test.expand(M, -1)
        return ytr, yte


@torch.no_grad()
def evaluate_classifiers(
    ws: WeightSpace, x: torch.Tensor, y: torch.Tensor, *, sample_chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-network mean cross-entropy and accuracy ``([M], [M])`` of ``ws(x)`` against
    labels ``y`` (``[N]`` or ``[M, N]``, ``-1`` = sample not in that network's task)."""
    M, N = len(ws), x.shape[0]
    y = (y if y.dim() == 2 else y.expand(M, -1)).to(ws.device)
    loss_sum = torch.zeros(M, dtype=torch.float64, device=ws.device)
    correct = torch.zeros(M, dtype=torch.float64, device=ws.device)
    for s in range(0, N, sample_chunk):  # bounded memory for convnets: [M, chunk, C, H, W]
        logits = ws(x[s:s + sample_chunk]).float()
        yc = y[:, s:s + sample_chunk]
        valid = yc >= 0
        yc0 = yc.clamp_min(0)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yc0.reshape(-1), reduction="none").view_as(yc)
        loss_sum += torch.where(valid, ce, torch.zeros_like(ce)).sum(1).double()
        correct += ((logits.argmax(-1) == yc0) & valid).sum(1).double()
    n = (y >= 0).sum(1).clamp_min(1).double()
    return (loss_sum / n).float(), (correct / n).float()


def classifier_metrics(ws: WeightSpace, data: ClassifierData) -> dict[str, torch.Tensor]:
    """``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` per network (``[M]`` each)."""
    ytr, yte = data.labels(len(ws))
    trl, tra = evaluate_classifiers(ws, data.x_train, ytr)
    tel, tea = evaluate_classifiers(ws, data.x_test, yte)
    return {"train_loss": trl, "train_acc": tra, "test_loss": tel, "test_acc": tea}


def _views(spec: WeightSpaceSpec, flat: torch.Tensor) -> list[torch.Tensor]:
    """Per-parameter views ``[M, *shape]`` of a flat ``[M, D]`` parameter matrix."""
    chunks = torch.split(flat, [p.numel for p in spec.params], dim=1)
    return [c.view(flat.shape[0], *p.shape) for c, p in zip(chunks, spec.params)]


def _finite_rows(loss: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[M]`` True where the loss and every gradient entry are finite (one reduction
    per tensor: a NaN/inf anywhere makes the row sum non-finite)."""
    total = loss.detach().clone()
    for g in grads:
        total += g.reshape(g.shape[0], -1).sum(1)
    return torch.isfinite(total)


def train_classifiers(
    init: WeightSpace,
    data: ClassifierData,
    *,
    seeds: torch.Tensor,
    optimizer: str | Sequence[str],
    lr: torch.Tensor | float,
    weight_decay: torch.Tensor | float = 0.0,
    momentum: torch.Tensor | float = 0.9,
    dropout: torch.Tensor | float = 0.0,
    epochs: int,
    batch_size: int,
    save_epochs: Sequence[int] = (),
    on_save: Callable[[int, WeightSpace, dict[str, torch.Tensor]], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> WeightSpace:
    """Train the M classifiers of ``init`` together; return the final weights.

    Each network visits its own samples (labels ``>= 0``) in its own order every epoch
    (``epoch_order`` from its seed), ``n_m // batch_size`` full batches per epoch
    (drop-last); networks with fewer batches wait (no update) while the others finish
    the epoch. A network whose loss or gradient becomes non-finite stops there (its
    last finite weights are kept) and is reported with ``diverged = True``.

    After each epoch ``e`` in ``save_epochs`` (``0`` = the initialization),
    ``on_save(e, ws, metrics)`` gets the detached weights and the metrics of
    :func:`classifier_metrics` plus ``diverged`` (``[M]`` bool). ``progress(f)`` is
    called after every step with the fraction of an epoch it represents.
    """
    M = len(init)
    dev = init.device
    seeds = seeds.to(torch.int64).to(dev)
    ytr, _ = data.labels(M)
    ytr = ytr.to(dev)
    member = ytr >= 0
    n_m = member.sum(1)
    steps_m = n_m // batch_size  # [M] full batches per epoch
    if bool((steps_m == 0).any()):
        raise WeightSpaceError(f"batch_size {batch_size} exceeds the training set of some networks ({int(n_m.min())})")
    steps = int(steps_m.max())
    x_train = data.x_train.to(dev)
    spec = init.spec
    flat = init.flatten().detach().clone().requires_grad_(True)  # one [M, D] leaf: one grad, one optimizer tensor
    to_m = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev).expand(M)  # noqa: E731
    opt = VectorizedOptimizer([flat], kind=optimizer, lr=to_m(lr), weight_decay=to_m(weight_decay),
                              momentum=to_m(momentum))
    drop = DropoutSampler(seeds, to_m(dropout))
    use_drop = drop.active
    save = set(int(e) for e in save_epochs)
    alive = torch.ones(M, dtype=torch.bool, device=dev)

    def snapshot(epoch: int) -> None:
        if on_save is not None and epoch in save:
            ws = WeightSpace.from_flat(spec, flat.detach().clone())
            metrics = classifier_metrics(ws, data)
            metrics["diverged"] = ~alive
            on_save(epoch, ws, metrics)

    snapshot(0)
    rows = torch.arange(M, device=dev)[:, None]
    for epoch in range(1, epochs + 1):
        order = epoch_order(seeds, epoch, member)
        for s in range(steps):
            idx = order[:, s * batch_size:(s + 1) * batch_size]  # [M, bs]
            active = steps_m > s
            xb = x_train.index_select(0, idx.reshape(-1)).view(*idx.shape, *x_train.shape[1:])  # [M, bs, ...]
            yb = ytr[rows, idx].clamp_min(0)  # a waiting network's batch is unused: any valid label
            tensors = _views(spec, flat)
            drop.step = epoch * (1 << 20) + s  # (epoch, step in epoch): the same for a network alone
            logits = train_forward(spec, tensors, xb, drop if use_drop else None)
            loss = _cross_entropy(logits, yb).mean(1)
            grads = torch.autograd.grad(loss.sum(), flat)
            alive &= _finite_rows(loss, grads) | ~active
            opt.step(grads, active & alive)
            if progress is not None:
                progress(1.0 / steps)
        snapshot(epoch)
    return WeightSpace.from_flat(spec, flat.detach())


# --------------------------------------------------------------------------- INRs
def psnr(mse: torch.Tensor, value_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB for signals spanning ``value_range`` (targets in [-1, 1]: 2)."""
    return 10.0 * torch.log10(value_range ** 2 / mse.clamp_min(1e-20))


def fit_inrs(
    init: WeightSpace,
    coords: torch.Tensor,
    targets: torch.Tensor,
    *,
    lr: torch.Tensor | float,
    steps: int,
    stop_psnr: float | None = None,
    optimizer: str = "adam",
    weight_decay: torch.Tensor | float = 0.0,
    value_range: float = 2.0,
    progress: Callable[[int], None] | None = None,
) -> tuple[WeightSpace, dict[str, torch.Tensor]]:
    """Fit M INRs (``init``, shared ``coords [P, d]``) to ``targets [M, P, out]``,
    full batch, for at most ``steps`` steps.

    With ``stop_psnr``, a network stops (its weights freeze) at the first step where
    its PSNR reaches the threshold (a network whose loss or gradient turns non-finite
    stops too, flagged ``diverged``) and leaves the working set, so stopped networks
    cost nothing. Returns the weights and per-network metrics ``psnr`` (final, dB),
    ``mse``, ``steps`` (optimizer steps taken) and ``diverged``. ``progress(n)`` is
    called with the number of networks that just finished.
    """
    M = len(init)
    dev = init.device
    spec = init.spec
    coords = coords.to(dev)
    targets = targets.to(dev, torch.float32)
    result = init.flatten().detach().clone()  # final weights, row m = INR m
    to_m = lambda v: torch.as_tensor(v, dtype=torch.float32, device=dev).expand(M)  # noqa: E731
    # the working set: rows of the INRs still fitting (stopped ones are dropped from it, so
    # early stopping saves compute; each row's arithmetic does not depend on the others)
    rows = torch.arange(M, device=dev)
    flat = result.clone().requires_grad_(True)
    opt = VectorizedOptimizer([flat], kind=optimizer, lr=to_m(lr), weight_decay=to_m(weight_decay))
    tgt = targets
    alive = torch.ones(M, dtype=torch.bool, device=dev)
    taken = torch.zeros(M, dtype=torch.int64, device=dev)
    stop_mse = None if stop_psnr is None else value_range ** 2 / 10.0 ** (stop_psnr / 10.0)
    for _ in range(steps):
        out = functional.forward(spec, _views(spec, flat), coords)
        mse = (out - tgt).pow(2).flatten(1).mean(1)  # [m] working rows
        active = torch.ones_like(mse, dtype=torch.bool) if stop_mse is None else mse.detach() > stop_mse
        grads = torch.autograd.grad(mse.sum(), flat)
        ok = _finite_rows(mse, grads)
        alive[rows[~ok]] = False
        active &= ok
        n_act = int(active.sum())
        if n_act < len(rows):  # drop finished / diverged INRs from the working set
            result[rows] = flat.detach()
            if progress is not None:
                progress(len(rows) - n_act)
            if n_act == 0:
                rows = rows[:0]
                break
            keep = torch.nonzero(active).flatten()
            rows, tgt = rows[keep], tgt[keep]
            flat = flat.detach()[keep].requires_grad_(True)
            opt = opt.select(keep, [flat])
            grads = [g[keep] for g in grads]
        opt.step(grads)
        taken[rows] += 1
    if len(rows):
        result[rows] = flat.detach()
        if progress is not None:
            progress(len(rows))
    ws = WeightSpace.from_flat(spec, result)
    with torch.no_grad():
        mse = (ws(coords) - targets).pow(2).flatten(1).mean(1)
    return ws, {"psnr": psnr(mse, value_range), "mse": mse, "steps": taken, "diverged": ~alive}
