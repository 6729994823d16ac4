"""Helpers that the public-format adapters share (not formats themselves).

* :mod:`.tables`: metadata tables (CSV / JSON / JSONL) and value parsing;
* :mod:`.files`: one file per checkpoint (:class:`FileSource`), safe state_dict loading;
* :mod:`.infer`: MLP / SIREN spec inference from a state_dict's keys and shapes;
* :mod:`.spatial`: specs of CNNs that flatten a spatial map into a linear layer.

Activation names come from the core table (:func:`wspace.modules.activation_module`).
"""
from __future__ import annotations

from wspace.modules import activation_module

from ...source import RECORD_FIELDS, ZooSource, record_value
from .files import FileSource, load_torch_file, relative_id, state_dict_layout
from .infer import infer_mlp_spec
from .spatial import spec_with_spatial_flatten
from .tables import parse_scalar, read_table

__all__ = [
    "RECORD_FIELDS",
    "ZooSource",
    "record_value",
    "FileSource",
    "load_torch_file",
    "relative_id",
    "state_dict_layout",
    "infer_mlp_spec",
    "spec_with_spatial_flatten",
    "activation_module",
    "parse_scalar",
    "read_table",
]
