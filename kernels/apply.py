"""Apply occlusions on the training side, in torch on the batch's device: which pixels a row's boxes or grid cells
cover, the erase / paste rule, and the exact ``lam`` they leave.

The graph applies its draws inside ``fn.occlusion.normalize_occlude`` (and ``paste_boxes``); the training side
(``loader.occlude``, Attentive CutMix's step, the occlusion sweep) applies with the rule here, which equals
the operators' on the same boxes: a pixel is replaced exactly when it lies in one of its row's half-open boxes
``(y0, x0, y1, x1)`` (-1 padded boxes and boxes past the border cover only what lies inside the image), by
the per-channel ``fill`` (Cutout, DeVries & Taylor 2017, uoguelph-mlrg/Cutout ``util/cutout.py``;
Hide-and-Seek, Singh & Lee 2017; Fong & Vedaldi 2019: 0 after normalisation, the dataset mean) or by the
partner row's pixel at the same place (CutMix, Yun et al. 2019 Algorithm A1, clovaai
``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]``; Attentive CutMix, Walawalkar et al. 2020,
openmixup ``mask * img + (1 - mask) * img[perm]`` with the cell mask upsampled nearest). The rule is one
``torch.where`` over a boolean pixel mask: no host copy and no per-row loop, so it runs where the batch is.

``lam`` (share of the row's own label) is CutMix's correction (clovaai commit 9dc8245) ``1 - |pasted| / (H W)``:
on the training side the count of the very mask that was pasted (:func:`lam_from_mask`); on the host
:mod:`kernels.areas` (the exact union area of the plans' and the graph's boxes). Tests prove the two agree.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.areas import cell_edges

__all__ = ["box_mask", "cell_mask", "occlude", "lam_from_mask"]


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` bool: the pixels inside any of each row's boxes (``(N, K, 4)`` int, -1 padded)."""
    ys = torch.arange(height, device=boxes.device)
    xs = torch.arange(width, device=boxes.device)
    rows = (boxes[..., 0:1] <= ys) & (ys < boxes[..., 2:3])  # (N, K, H): box k spans row y
    cols = (boxes[..., 1:2] <= xs) & (xs < boxes[..., 3:4])  # (N, K, W)
    # pixel (y, x) is covered by the boxes spanning both: one batched product counts them (exact: K < 2**24),
    # instead of K passes over N*H*W (Attentive CutMix pastes 43 cells, Hide-and-Seek up to 196)
    return torch.bmm(rows.transpose(1, 2).to(torch.float32), cols.to(torch.float32)) > 0


def cell_mask(cells: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` bool: the grid ``cells`` ``(N, Gh, Gw)`` bool upsampled nearest with :func:`cell_edges`
    geometry (cells of ``H // Gh`` pixels from 0, the last also covering the remainder)."""
    gh, gw = cells.shape[1:]
    rows = torch.as_tensor(np.repeat(np.arange(gh), np.diff(cell_edges(gh, height))), device=cells.device)
    cols = torch.as_tensor(np.repeat(np.arange(gw), np.diff(cell_edges(gw, width))), device=cells.device)
    return cells[:, rows][:, :, cols]


def occlude(images: torch.Tensor, mask: torch.Tensor, fill=None, partner: torch.Tensor | None = None,
            source: torch.Tensor | None = None) -> torch.Tensor:
    """``images`` ``(N, C, H, W)`` with the pixels of ``mask`` ``(N, H, W)`` replaced by one of: ``fill`` (a
    scalar or one value per channel), the ``partner`` row's pixels (``(N,)`` batch rows, -1: the row is left
    whole) or ``source``'s pixels (``(N, C, H, W)``, KeepAugment's un-augmented rows)."""
    if partner is not None:
        mask = mask & (partner >= 0).view(-1, 1, 1)
        source = images[partner.clamp(min=0)]
    elif source is None:
        source = torch.as_tensor(fill, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return torch.where(mask[:, None], source, images)


def lam_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """``1 - |mask| / (H W)`` per row, float64 (the value :func:`kernels.areas.lam_from_boxes` gives for the same
    pixels)."""
    return 1.0 - mask.sum(dim=(1, 2), dtype=torch.float64) / float(mask.shape[1] * mask.shape[2])
