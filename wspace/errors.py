"""The one error type of the library.

Every bad input (a corrupt file, a tensor of the wrong shape, NaN weights, an
unsupported module, two architectures mixed in one zoo) raises
:class:`WeightSpaceError`, whose message names the file, the tensor and the problem.
"""
from __future__ import annotations

from pathlib import Path


class WeightSpaceError(ValueError):
    """Raised for any invalid weight-space input.

    Attributes:
        file: the file involved, if any.
        tensor: the parameter / tensor name involved, if any.
        problem: a short description of what is wrong.
    """

    def __init__(self, problem: str, *, file: str | Path | None = None, tensor: str | None = None):
        self.file = None if file is None else str(file)
        self.tensor = tensor
        self.problem = problem
        parts = []
        if self.file is not None:
            parts.append(f"file '{self.file}'")
        if tensor is not None:
            parts.append(f"tensor '{tensor}'")
        where = ", ".join(parts)
        super().__init__(f"{where}: {problem}" if where else problem)
