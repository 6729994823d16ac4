"""The native zoo format: many checkpoints per safetensors shard, an append-only manifest.

Layout of a zoo directory::

    zoo.json                      format version, the specs (with ids) and free ``meta``
    manifest.jsonl                one JSON object per checkpoint, appended in blocks
    shards/shard-00000.safetensors
    shards/shard-00001.safetensors ...

``zoo.json``::

    {"format": "wspace.zoo", "format_version": 1,
     "specs": [{"id": "spec-0", "fingerprint": "...", "describe": "...", "spec": {...}}],
     "meta": {...}}

``meta`` is free; by convention ``meta["tasks"]`` holds the task definitions (name ->
dict) and ``meta["builder"]`` how the zoo was built. The family config of each
architecture is part of its spec (``spec.family`` / ``spec.family_kwargs``).

Each manifest row: ``id`` (unique string), ``run``, ``seed``, ``task``, ``epoch``,
``hparams`` (dict), ``metrics`` (dict), any extra fields the builder passed, and
``spec_id``, ``shard`` (file name under ``shards/``), ``row`` (index in the shard).

A shard holds one spec: key = the spec's parameter key, tensor ``[n, *shape]``; its
safetensors metadata repeats the spec (so ``wspace.io.load_weight_space`` reads a
shard on its own) and the ids of its rows.

Crash safety (a build may be killed at any time and resumed):

1. a new spec is added to ``zoo.json`` (atomic rewrite) before any shard uses it;
2. a shard is written completely (temp file + rename) *before* its rows are appended
   to the manifest, in one ``write`` + ``fsync``;
3. so a shard listed in the manifest is complete. On reopening, :class:`ZooWriter`
   drops a torn last manifest line, rolls back a block whose rows were only partly
   appended, and deletes shards that no row lists (orphans from a kill between 2 and
   3). Readers ignore a torn last line and never look at unlisted shards.

Modules: :mod:`.layout` (file names, ``zoo.json`` and manifest parsing), :mod:`.shards`
(one shard's reader), :mod:`.reader` (:class:`NativeSource`), :mod:`.writer`
(:class:`ZooWriter`), :mod:`.lock` (the writer lock). Their public names are
re-exported here.
"""
from __future__ import annotations

from wspace.io import read_safetensors_header

from .layout import MANIFEST, SHARDS, ZOO_FORMAT, ZOO_FORMAT_VERSION, ZOO_JSON, is_native_zoo
from .reader import NativeSource
from .writer import ZooWriter

__all__ = [
    "ZOO_FORMAT",
    "ZOO_FORMAT_VERSION",
    "ZOO_JSON",
    "MANIFEST",
    "SHARDS",
    "ZooWriter",
    "NativeSource",
    "is_native_zoo",
    "read_safetensors_header",
]
