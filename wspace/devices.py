"""Lightning ``accelerator`` / ``devices`` from the torch device strings users pass as ``device=``."""
from __future__ import annotations

from typing import Any

from .errors import WeightSpaceError

__all__ = ["trainer_device"]


def trainer_device(device: str | None) -> dict[str, Any]:
    """Lightning ``accelerator`` / ``devices`` for a torch device string (``cpu``, ``cuda:1``, ``mps``)."""
    import torch

    dev = torch.device(str(device or "cpu"))
    if dev.type == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise WeightSpaceError(f"device={device} but CUDA is not available here (use device=cpu)")
        return {"accelerator": "gpu", "devices": [dev.index] if dev.index is not None else 1}
    if dev.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    raise WeightSpaceError(f"unsupported device '{device}' (use cpu, cuda, cuda:<n> or mps)")
