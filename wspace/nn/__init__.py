"""Weight-space encoders: permutation-equivariant layers, invariant heads and baselines.

Every encoder is an :class:`Encoder` (the contract, :mod:`wspace.nn.encoder`): built as
``Cls(spec, out_features, **options)`` (all options have working defaults), it maps a
:class:`~wspace.WeightSpace` of ``B`` networks to ``[B, k]`` (``forward``) through an
embedding ``[B, d]`` (``features``); the ``Equivariant*`` variants are
:class:`EquivariantEncoder` s and map a ``WeightSpace`` to a ``WeightSpace`` of the same
spec (editing). Configs choose them by class path (:func:`build_encoder`,
:func:`build_equivariant`: ``{"_target_": "wspace.nn.UNF", "hidden": 32}``)::

    enc = UNF(ws.spec, out_features=10)
    logits = enc(ws)                               # [B, 10], invariant to neuron permutations
    editor = EquivariantNFN(ws.spec, mode="np", residual=True)
    edited = editor(ws)                            # WeightSpace, equivariant

Layer contracts (features, layouts, the basis) are in :mod:`wspace.nn.features` and
:mod:`wspace.nn.basis`; one layer family per module:

* :mod:`~wspace.nn.encoder`: :class:`Encoder`, :class:`EquivariantEncoder` (the contract);
  :mod:`~wspace.nn.from_config`: :func:`build_encoder`, :func:`build_equivariant`
* :mod:`~wspace.nn.feature_encoder`: :class:`FeatureEncoder`, :class:`EquivariantFeatureEncoder`
  (the shape UNF, NFN and DWSNets share); :mod:`~wspace.nn.pool`: :class:`InvariantPool`
* :mod:`~wspace.nn.unf`: :class:`UNFLinear`, :class:`UNF`, :class:`EquivariantUNF`
* :mod:`~wspace.nn.nfn`: :class:`HNPLinear`, :class:`NPLinear`, :class:`IOEmbedding`, :class:`NFN`, :class:`EquivariantNFN`
* :mod:`~wspace.nn.dwsnet`: :class:`DWSLayer`, :class:`DWSNet`, :class:`EquivariantDWSNet`
* :mod:`~wspace.nn.baselines`: :class:`FlatMLP`, :class:`StatNN`
* :mod:`~wspace.nn.graph_encoder`: :class:`NeuralGraphEncoder`, :class:`EquivariantNeuralGraphEncoder`
  (GNN over :func:`wspace.graph.to_graph`; also takes PyG batches mixing architectures),
  with the layer :class:`NeuralGraphConv` (:mod:`~wspace.nn.graph_conv`) and fast scatter
  reductions (:mod:`~wspace.nn.aggregation`)

Adding an encoder is one file and one config: a subclass of :class:`Encoder` (constructor
``(spec, out_features, **options)``, a ``head`` and a ``features(ws) -> [B, d]``; its
``symmetry``, and its ``equivariant`` counterpart if it has one) in ``wspace/nn/<x>.py``
(or any importable module), and ``configs/train/encoder/<x>.yaml`` with
``_target_: <its class path>`` and its options; ``wspace train encoder=<x>`` then uses it.
No registry: the config's ``_target_`` is the only link.
"""
from .baselines import FlatMLP, StatNN, weight_statistics
from .common import MLPHead, TupleActivation
from .dwsnet import DWSLayer, DWSNet, EquivariantDWSNet
from .encoder import SYMMETRIES, Encoder, EquivariantEncoder, check_weight_space
from .feature_encoder import EquivariantBody, EquivariantFeatureEncoder, FeatureEncoder
from .features import FeatureLayout, Features, TensorLayout, check_features, feature_layout
from .from_config import build_encoder, build_equivariant, encoder_class
from .graph_conv import NeuralGraphConv
from .graph_encoder import EquivariantNeuralGraphEncoder, NeuralGraphEncoder
from .nfn import NFN, EquivariantNFN, HNPLinear, IOEmbedding, NPLinear
from .pool import InvariantPool
from .unf import UNF, EquivariantUNF, UNFLinear

__all__ = [
    "Encoder", "EquivariantEncoder", "SYMMETRIES", "check_weight_space",
    "build_encoder", "build_equivariant", "encoder_class",
    "FeatureEncoder", "EquivariantFeatureEncoder", "EquivariantBody",
    "UNFLinear", "InvariantPool", "UNF", "EquivariantUNF",
    "HNPLinear", "NPLinear", "IOEmbedding", "NFN", "EquivariantNFN",
    "DWSLayer", "DWSNet", "EquivariantDWSNet",
    "NeuralGraphConv", "NeuralGraphEncoder", "EquivariantNeuralGraphEncoder",
    "FlatMLP", "StatNN", "weight_statistics",
    "FeatureLayout", "TensorLayout", "Features", "feature_layout", "check_features", "MLPHead", "TupleActivation",
]
