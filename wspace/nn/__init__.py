"""Weight-space encoders: permutation-equivariant layers, invariant heads and baselines.

Every encoder is built as ``Encoder(spec, out_features=k, ...)`` (all other arguments
have working defaults) and maps a :class:`~wspace.WeightSpace` of ``B`` networks to
``[B, k]``; the ``Equivariant*`` variants map a ``WeightSpace`` to a ``WeightSpace`` of
the same spec (editing)::

    enc = UNF(ws.spec, out_features=10)
    logits = enc(ws)                               # [B, 10], invariant to neuron permutations
    editor = EquivariantNFN(ws.spec, mode="np", residual=True)
    edited = editor(ws)                            # WeightSpace, equivariant

Layer contracts (features, layouts, the basis) are in :mod:`wspace.nn.features` and
:mod:`wspace.nn.basis`; one layer family per module:

* :mod:`~wspace.nn.unf`: :class:`UNFLinear`, :class:`InvariantPool`, :class:`UNF`, :class:`EquivariantUNF`
* :mod:`~wspace.nn.nfn`: :class:`HNPLinear`, :class:`NPLinear`, :class:`IOEmbedding`, :class:`NFN`, :class:`EquivariantNFN`
* :mod:`~wspace.nn.dwsnet`: :class:`DWSLayer`, :class:`DWSNet`, :class:`EquivariantDWSNet`
* :mod:`~wspace.nn.baselines`: :class:`FlatMLP`, :class:`StatNN`
* :mod:`~wspace.nn.graph_encoder`: :class:`NeuralGraphEncoder`, :class:`EquivariantNeuralGraphEncoder`
  (GNN over :func:`wspace.graph.to_graph`; also takes PyG batches mixing architectures),
  with the layer :class:`NeuralGraphConv` (:mod:`~wspace.nn.graph_conv`) and fast scatter
  reductions (:mod:`~wspace.nn.aggregation`)
"""
from .baselines import FlatMLP, StatNN, weight_statistics
from .common import MLPHead, TupleActivation
from .dwsnet import DWSLayer, DWSNet, EquivariantDWSNet
from .features import FeatureLayout, Features, TensorLayout, feature_layout
from .graph_conv import NeuralGraphConv
from .graph_encoder import EquivariantNeuralGraphEncoder, NeuralGraphEncoder
from .nfn import NFN, EquivariantNFN, HNPLinear, IOEmbedding, NPLinear
from .unf import UNF, EquivariantUNF, InvariantPool, UNFLinear

ENCODERS = {
    "unf": UNF, "nfn": NFN, "dwsnet": DWSNet, "graph": NeuralGraphEncoder, "flat_mlp": FlatMLP, "statnn": StatNN,
}
EQUIVARIANT_ENCODERS = {
    "unf": EquivariantUNF, "nfn": EquivariantNFN, "dwsnet": EquivariantDWSNet, "graph": EquivariantNeuralGraphEncoder,
}

__all__ = [
    "UNFLinear", "InvariantPool", "UNF", "EquivariantUNF",
    "HNPLinear", "NPLinear", "IOEmbedding", "NFN", "EquivariantNFN",
    "DWSLayer", "DWSNet", "EquivariantDWSNet",
    "NeuralGraphConv", "NeuralGraphEncoder", "EquivariantNeuralGraphEncoder",
    "FlatMLP", "StatNN", "weight_statistics",
    "FeatureLayout", "TensorLayout", "Features", "feature_layout", "MLPHead", "TupleActivation",
    "ENCODERS", "EQUIVARIANT_ENCODERS",
]
