"""Memorization audit of generated networks: novelty, behaviour similarity, verdicts, report.

One module per job: :mod:`.population` (the training set, streamed in chunks),
:mod:`.running` (best-so-far reductions over chunks), :mod:`.distances` (chunked raw L2), :mod:`.invariants`
(permutation-invariant lower bounds), :mod:`.search` (aligned nearest neighbours with a
pre-filter), :mod:`.geometry` (segment / hull distances), :mod:`.behaviour` (accuracy,
error IoU, probe agreement and divergence), :mod:`.calibrate` (thresholds and
verdicts), :mod:`.frontier` (accuracy vs novelty against noise), :mod:`.report` and
:mod:`.plots` (files), :mod:`.baselines` (trivial generators to compare with), :mod:`.core` (:func:`audit`);
``wspace audit`` is :mod:`wspace.commands.audit`.

Example::

    from wspace.audit import audit
    report = audit(generated_zoo, training_zoo, task=get_task("digits:0-1-2-3-4"))  # datasets_zoo.get_task
    report.verdicts[:5]        # ['novel', 'replica', 'near-copy', ...]
    print(report.table())
    report.save("audit_out")   # audit.json, PNG plots, report.html
"""
from .calibrate import Thresholds
from .core import audit
from .report import AuditReport
from .population import Population
from .search import AlignedIndex, Exclusion, NearestAligned, exhaustive_nearest_aligned

__all__ = ["audit", "AuditReport", "Thresholds", "AlignedIndex", "Exclusion", "NearestAligned", "Population",
           "exhaustive_nearest_aligned"]
