"""Hydra configs of the ``wspace`` command, shipped as package data.

One primary config per subcommand (``<name>.yaml``, e.g. ``zoo_build.yaml``), shared
settings in ``_base.yaml``, and option groups in sub-directories (``zoo/``,
``encoder/``, ``generator/``, ``task/``, ``trainer/``, ``audit/``). The CLI finds
them as ``pkg://configs``, so the same files serve the source tree and an installed
copy. Sub-directories need no ``__init__.py``: every ``*.yaml`` below this
directory is packaged.
"""
