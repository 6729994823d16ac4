"""``wspace audit generated=<zoo> zoo=<zoo> task=<name> out=<dir> [reference=<zoo>]``.

Optional keys (``configs/audit/audit.yaml``; null keeps :func:`wspace.audit.audit`'s default):
``shortlist``, ``exact``, ``keep``, ``max_reference``, ``n_baseline``, ``probe_size``, ``probe_noise``,
``symmetries``, ``novel_quantile``, ``chunk_rows`` (training networks in memory at a time: the zoo
is streamed); ``architecture`` picks one architecture of a training zoo
that holds several.
"""
from __future__ import annotations

import sys
from typing import Any

from datasets_zoo import Zoo, get_task
from wspace import interrupt
from wspace.audit import audit
from wspace.errors import WeightSpaceError

from .checks import check_config

__all__ = ["main"]

_OPTIONAL = {"shortlist": int, "exact": bool, "max_reference": int, "n_baseline": int, "probe_size": int,
             "probe_noise": float, "keep": int, "symmetries": str, "novel_quantile": float, "chunk_rows": int}


def _open(path: Any, what: str) -> Zoo:
    if path is None or str(path) == "":
        raise WeightSpaceError(f"{what}= must name a zoo directory")
    return Zoo.open(str(path))


def _one_architecture(train: Zoo, ref: Zoo | None, name: Any) -> tuple[Zoo, Zoo | None]:
    """The training (and reference) zoo restricted to ``architecture=`` (a record's
    ``architecture``, a spec id or a spec description); a zoo of several without it is an
    error naming them and the option."""
    if name is None:
        if len(train.specs) > 1:
            first = next(iter(train.architectures))
            raise WeightSpaceError(f"the training zoo holds {len(train.specs)} architectures: "
                                   f"{train.describe_architectures()}; audit against one with architecture=<name> "
                                   f"(e.g. architecture={first})", file=train.path)
        return train, ref
    try:
        return train.architecture(str(name)), (ref.architecture(str(name)) if ref is not None else None)
    except WeightSpaceError as e:
        raise WeightSpaceError(f"architecture={name}: {e.problem}", file=e.file) from e


def main(cfg: Any) -> Any:
    """Run the audit described by ``cfg`` (keys generated, zoo, task, reference, out, seed)."""
    check_config("audit", cfg)
    interrupt.set_resume_hint("the audit keeps no partial results", resumable=False)
    gen, train = _open(cfg.generated, "generated"), _open(cfg.zoo, "zoo")
    ref = _open(cfg.reference, "reference") if cfg.get("reference") else None
    train, ref = _one_architecture(train, ref, cfg.get("architecture"))
    task = get_task(str(cfg.task)) if cfg.get("task") else None
    kwargs = {k: t(cfg[k]) for k, t in _OPTIONAL.items() if cfg.get(k) is not None}
    report = audit(gen, train, task=task, reference=ref, seed=int(cfg.get("seed", 0) or 0),
                   progress=lambda msg: print(f"[audit] {msg}", file=sys.stderr, flush=True), **kwargs)
    paths = report.save(cfg.out)
    print(report.table())
    print(f"wrote {paths['json']}, {paths['html']} and " + ", ".join(str(p.name) for k, p in paths.items()
                                                                     if k not in ("json", "html")))
    return report
