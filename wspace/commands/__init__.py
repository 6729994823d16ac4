"""The command layer: the only code that composes ``wspace`` core, ``datasets_zoo`` and
``generators``.

One module per subcommand of the ``wspace`` command (:mod:`.cli`): ``zoo build``
(:mod:`.zoo_build`), ``train`` (:mod:`.train`, generators in :mod:`.train_generator`),
``sample`` (:mod:`.sample`), ``audit`` (:mod:`.audit`), ``bench`` (:mod:`.bench`),
``quickstart`` (:mod:`.quickstart`) and ``info`` (:mod:`.info`). Each has a ``main(cfg)``
taking the composed Hydra config, and a Python function doing the same work
(e.g. :func:`wspace.commands.train.fit`).
"""
