"""Images as INR regression targets: the ``digits-inr`` tasks, target <-> image conversion
and random affine variants."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from wspace.coordinates import coordinate_grid
from wspace.errors import WeightSpaceError

from .digits import digits_source
from .types import INRTask, restrict_to_classes

__all__ = ["images_to_targets", "targets_to_images", "digits_inr", "affine_variants"]


def images_to_targets(images: torch.Tensor) -> torch.Tensor:
    """``[..., H, W]`` images in [0, 1] -> ``[..., H*W, 1]`` INR targets in [-1, 1]."""
    return (2.0 * images - 1.0).flatten(-2).unsqueeze(-1)


def targets_to_images(targets: torch.Tensor, resolution: int) -> torch.Tensor:
    """Inverse of :func:`images_to_targets`: ``[..., P, 1]`` in [-1, 1] -> ``[..., R, R]`` in [0, 1]."""
    return ((targets.squeeze(-1) + 1.0) / 2.0).reshape(*targets.shape[:-2], resolution, resolution)


def digits_inr(canonical: str, classes: tuple[int, ...], resolution: int) -> INRTask:
    """The ``digits-inr`` task of ``classes`` rendered at ``resolution`` (uncached: use ``get_task``)."""
    x, y, train_idx, test_idx = digits_source()
    tr, te = restrict_to_classes(y, train_idx, classes), restrict_to_classes(y, test_idx, classes)
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(classes)] = np.arange(len(classes))
    img_tr = torch.from_numpy(x[tr].reshape(-1, 8, 8))
    img_te = torch.from_numpy(x[te].reshape(-1, 8, 8))
    if resolution == 8:
        rend_tr, rend_te = img_tr, img_te
    else:  # variant 0 of affine_variants is the identity warp, i.e. bilinear upsampling
        rend_tr = affine_variants(img_tr, 1, resolution=resolution)[:, 0]
        rend_te = affine_variants(img_te, 1, resolution=resolution)[:, 0]
    return INRTask(
        name=canonical,
        kind="inr",
        resolution=resolution,
        coords=coordinate_grid(resolution),
        targets_train=images_to_targets(rend_tr),
        targets_test=images_to_targets(rend_te),
        labels_train=torch.from_numpy(remap[y[tr]]),
        labels_test=torch.from_numpy(remap[y[te]]),
        images_train=img_tr,
        images_test=img_te,
        classes=classes,
        index_train=torch.from_numpy(tr),
        index_test=torch.from_numpy(te),
    )


def affine_variants(
    images: torch.Tensor,
    n_variants: int,
    generator: torch.Generator | None = None,
    *,
    resolution: int | None = None,
    max_rotation: float = 15.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_translation: float = 1.0,
    background: float = 0.0,
    return_params: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random affine variants of each square image, rendered in one batched warp.

    Each variant rotates the image about its centre by ``U(-max_rotation,
    max_rotation)`` degrees (positive = clockwise as displayed, rows pointing down),
    scales it by ``U(*scale_range)`` and shifts it by
    ``U(-max_translation, max_translation)`` source pixels per axis, then samples
    it bilinearly (``affine_grid`` + ``grid_sample``, ``align_corners=True``: pixel
    centres sit on ``linspace(-1, 1, side)`` as in :func:`coordinate_grid`) on a
    ``resolution x resolution`` grid (default: the source side). Outside the image
    is ``background``. Variant 0 is the identity warp: exactly the original when
    ``resolution`` equals the source side, its bilinear upsampling otherwise.

    Args:
        images: ``[n, H, W]`` or ``[n, 1, H, W]`` with ``H == W``.
        n_variants: variants per image (>= 1, variant 0 included).
        generator: torch generator for the random parameters.

    Returns:
        ``[n, n_variants, resolution, resolution]``; with ``return_params`` also a dict
        of ``rotation`` (degrees), ``scale``, ``translation`` (``[.., 2]`` source pixels,
        x then y), each ``[n, n_variants, ...]``.
    """
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or images.shape[-1] != images.shape[-2]:
        raise WeightSpaceError(f"affine_variants expects square images [n, H, W], got shape {tuple(images.shape)}")
    if n_variants < 1:
        raise WeightSpaceError(f"n_variants must be >= 1, got {n_variants}")
    n, side = images.shape[0], images.shape[-1]
    res = resolution or side
    dtype, device = images.dtype, images.device

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        return lo + (hi - lo) * u

    angle = uniform((n, n_variants), -max_rotation, max_rotation)
    scale = uniform((n, n_variants), *scale_range)
    shift = uniform((n, n_variants, 2), -max_translation, max_translation)
    angle[:, 0], scale[:, 0], shift[:, 0] = 0.0, 1.0, 0.0

    # affine_grid maps output coords to input coords, so build the inverse transform:
    # in = R(-a) (out - t) / s, with t in normalized units (one pixel = 2 / (side - 1)).
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / scale[..., None, None]
    t = shift * (2.0 / max(side - 1, 1))
    offset = -(inv @ t.unsqueeze(-1))
    theta = torch.cat([inv, offset], dim=-1).reshape(n * n_variants, 2, 3)
    grid = F.affine_grid(theta, [n * n_variants, 1, res, res], align_corners=True)
    src = (images - background).unsqueeze(1).expand(n, n_variants, side, side).reshape(n * n_variants, 1, side, side)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + background
    out = out.reshape(n, n_variants, res, res)
    if res == side:
        out[:, 0] = images  # exact original, not a float-rounded resampling of it
    if return_params:
        return out, {"rotation": angle, "scale": scale, "translation": shift}
    return out
