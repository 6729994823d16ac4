"""Hydra configs of the ``wspace`` command, shipped as package data.

One folder per subcommand: ``<name>/<name>.yaml`` is its primary config (e.g.
``zoo_build/zoo_build.yaml``) and the sub-folders beside it are its option groups
(``zoo_build/zoo/``, ``train/encoder/``, ``train/generator/``, ``train/task/``,
``train/trainer/``, ``train/augment/``). Settings shared by every subcommand are in
``common/_base.yaml``. Sub-directories need no ``__init__.py``: every ``*.yaml`` below
this directory is packaged.
"""
