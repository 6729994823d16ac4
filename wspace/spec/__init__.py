"""``WeightSpaceSpec``: what an architecture's parameters are and how they permute.

A spec is an immutable, hashable, JSON-serializable description of one architecture:

* ``params``: every parameter in execution order, with its state_dict key, shape,
  role (``"weight"`` or ``"bias"``) and, for each axis, a *permutation group id*
  (axes with the same id are permuted together; ``None`` = never permuted: network
  inputs, outputs, kernel positions);
* ``program``: the sequence of operations (linear, conv, activation, pooling,
  flatten, residual blocks) that evaluates the network, so that
  :class:`~wspace.WeightSpace` can run B networks in one vectorized call and
  ``build_module`` can rebuild an ``nn.Module`` with the same state_dict keys;
* ``groups``: the size of each permutation group and the extra symmetries its
  neurons have (``"scale"``: positive rescaling through ReLU-like activations;
  ``"sign"``: sign flips through odd activations such as tanh and sine).

:func:`spec_from_module` derives a spec from an ``nn.Module``.

One job per file: ``records`` (the parts: :class:`ParamSpec`, :class:`GroupSpec`,
:class:`Op`, :class:`LayerSpec`), ``description`` (:class:`WeightSpaceSpec`, its JSON
and fingerprint), ``registry`` (:func:`register_family` / :func:`get_family`),
``walker`` (:func:`spec_from_module`) and ``rebuild`` (``WeightSpaceSpec.build_module``).
Import the names from ``wspace.spec``; the file layout is not API.
"""
from .description import SPEC_FORMAT_VERSION, WeightSpaceSpec
from .records import GroupSpec, LayerSpec, Op, ParamSpec
from .registry import get_family, register_family
from .walker import spec_from_module

__all__ = [
    "WeightSpaceSpec",
    "ParamSpec",
    "GroupSpec",
    "LayerSpec",
    "Op",
    "SPEC_FORMAT_VERSION",
    "spec_from_module",
    "register_family",
    "get_family",
]
