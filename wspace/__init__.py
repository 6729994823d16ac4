"""wspace: weight-space learning and parameter generation in PyTorch.

The core is a batch of networks that share an architecture (:class:`WeightSpace`),
the description of that architecture and its symmetry group
(:class:`WeightSpaceSpec`), and lossless views of the batch (flat vectors,
state_dicts, neural graphs in :mod:`wspace.graph`).
"""
from . import families  # noqa: F401  (the built-in model families register themselves)
from .errors import WeightSpaceError
from .modules import GlobalAvgPool, Residual, Sine
from .space import WeightSpace
from .spec import GroupSpec, LayerSpec, ParamSpec, WeightSpaceSpec, register_family, spec_from_module

__version__ = "0.1.0"

__all__ = [
    "WeightSpace",
    "WeightSpaceSpec",
    "WeightSpaceError",
    "ParamSpec",
    "GroupSpec",
    "LayerSpec",
    "spec_from_module",
    "register_family",
    "Sine",
    "Residual",
    "GlobalAvgPool",
    "__version__",
]
