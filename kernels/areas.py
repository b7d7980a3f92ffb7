"""The exact ``lam`` an occlusion leaves (share of the row's own label), NumPy / CuPy array code on the host: the
plans' boxes and the boxes the graph searched.

CutMix's correction (Yun et al. 2019, arXiv 1905.04899; clovaai commit 9dc8245): ``lam = 1 - box_area / (H * W)``,
generalised to several, possibly overlapping boxes by :func:`lam_from_boxes` (area of the union, exact), and to
Attentive CutMix's grid cells by :func:`lam_from_cells`. The training side counts the very mask it pasted
instead (:func:`kernels.apply.lam_from_mask`); tests prove the two agree.
"""
from __future__ import annotations

import numpy as np

from kernels.checks import check_int

from . import _xp

__all__ = ["lam_from_boxes", "lam_from_cells", "cell_edges", "as_row_boxes"]


def as_row_boxes(boxes, n_rows: int, xp=np):
    """Boxes as a C-contiguous int32 ``(N, K, 4)`` array; accepts ``(4,)``, ``(N, 4)`` or ``(N, K, 4)``."""
    b = xp.asarray(boxes)
    if b.dtype.kind not in "iu":
        raise ValueError(f"boxes must be integer (y0, x0, y1, x1) pixels, got dtype {b.dtype}")
    if b.ndim == 1 and b.shape[0] == 4:
        b = xp.broadcast_to(b.reshape(1, 1, 4), (n_rows, 1, 4))
    elif b.ndim == 2 and b.shape[1] == 4:
        b = b.reshape(b.shape[0], 1, 4)
    if b.ndim != 3 or b.shape[2] != 4 or b.shape[0] != n_rows:
        raise ValueError(f"boxes must have shape (4,), ({n_rows}, 4) or ({n_rows}, K, 4), "
                         f"got {tuple(xp.asarray(boxes).shape)}")
    return xp.ascontiguousarray(b, dtype=xp.int32)


def _partner(partner_index, n_rows: int, xp):
    p = xp.asarray(partner_index)
    if p.shape != (n_rows,) or p.dtype.kind not in "iu":
        raise ValueError(f"partner_index must be an integer array of shape ({n_rows},), "
                         f"got shape {tuple(p.shape)} dtype {p.dtype}")
    if n_rows and (int(p.min()) < -1 or int(p.max()) >= n_rows):
        raise ValueError(f"partner_index values must lie in [-1, {n_rows}) (-1 = no partner), "
                         f"got range [{int(p.min())}, {int(p.max())}]")
    return xp.ascontiguousarray(p, dtype=xp.int64)


def cell_edges(g: int, size: int) -> np.ndarray:
    """Pixel edges ``(g + 1,)`` of a g-cell grid over ``size`` pixels.

    Cells are ``size // g`` pixels, anchored at 0; the last cell also covers the remainder
    ``size - g * (size // g)``. When ``size`` is divisible by ``g`` this is exactly nearest-neighbour
    upsampling by ``size / g`` (openmixup's ``F.upsample(scale_factor=H/7, mode='nearest')`` at 224).
    """
    g, size = int(g), int(size)
    if g < 1 or g > size:
        raise ValueError(f"grid size must lie in [1, {size}] (image size {size}), got {g}")
    c = size // g
    edges = np.arange(g + 1, dtype=np.int64) * c
    edges[-1] = size
    return edges


def lam_from_boxes(boxes, H: int, W: int, partner_index=None):
    """``lam = 1 - |union of the row's boxes| / (H * W)`` per row, exact (overlaps counted once).

    Generalises CutMix's correction ``lam = 1 - (x2 - x1) * (y2 - y1) / (W * H)`` (clovaai 9dc8245) to
    several boxes. Boxes are clipped to the image first; empty and -1 padded boxes count zero. Where
    ``partner_index`` is given and -1 (nothing pasted), lam is 1.

    Exact union area, array code (NumPy/CuPy), two methods picked by cost: for few boxes, coordinate
    compression (the sorted box edges cut the image into at most (2K-1)^2 cells, each fully inside or
    fully outside every box; O(K^3) per row); for many boxes (e.g. a Hide-and-Seek grid), a painted
    coverage count from a 2-D difference array and two cumulative sums (O(H*W + K) per row).

    Returns:
        ``(N,)`` float64 (``(4,)`` / ``(N, 4)`` boxes are one box per row; a ``(4,)`` box gives ``(1,)``).
    """
    H, W = _check_hw(H, W)
    xp = _xp.array_module(boxes, partner_index)
    b = xp.asarray(boxes)
    n_rows = b.shape[0] if b.ndim >= 2 else 1
    b = as_row_boxes(b, n_rows, xp).astype(xp.int64)
    y0 = xp.clip(b[..., 0], 0, H)
    x0 = xp.clip(b[..., 1], 0, W)
    y1 = xp.clip(b[..., 2], 0, H)
    x1 = xp.clip(b[..., 3], 0, W)
    empty = (y1 <= y0) | (x1 <= x0)
    y0, y1, x0, x1 = (xp.where(empty, 0, v) for v in (y0, y1, x0, x1))
    k = b.shape[1]
    if k == 0:
        area = xp.zeros((n_rows,), dtype=xp.float64)
    elif (2 * k - 1) ** 2 * k <= H * W:
        area = _union_area_compressed(y0, x0, y1, x1, xp)
    else:
        area = _union_area_painted(y0, x0, y1, x1, H, W, xp)
    lam = 1.0 - area / float(H * W)
    return _no_partner_is_one(lam, partner_index, n_rows, xp)


def _union_area_compressed(y0, x0, y1, x1, xp):
    """Union area per row of clipped boxes (empty ones zeroed), by coordinate compression."""
    n_rows, k = y0.shape
    ys = xp.sort(xp.concatenate([y0, y1], axis=1), axis=1)
    xs = xp.sort(xp.concatenate([x0, x1], axis=1), axis=1)
    covered = xp.zeros((n_rows, 2 * k - 1, 2 * k - 1), dtype=bool)
    for j in range(k):
        in_y = (y0[:, j:j + 1] <= ys[:, :-1]) & (ys[:, 1:] <= y1[:, j:j + 1])
        in_x = (x0[:, j:j + 1] <= xs[:, :-1]) & (xs[:, 1:] <= x1[:, j:j + 1])
        covered |= in_y[:, :, None] & in_x[:, None, :]
    cell_area = xp.diff(ys, axis=1)[:, :, None] * xp.diff(xs, axis=1)[:, None, :]
    return (covered * cell_area).sum(axis=(1, 2)).astype(xp.float64)


def _union_area_painted(y0, x0, y1, x1, H, W, xp):
    """Union area per row of clipped boxes (empty ones zeroed): +1/-1 corners, 2-D prefix sum, count > 0."""
    n_rows, k = y0.shape
    w1 = W + 1
    plane = (H + 1) * w1
    base = xp.arange(n_rows, dtype=xp.int64)[:, None] * plane
    idx = xp.concatenate([base + y0 * w1 + x0, base + y0 * w1 + x1,
                          base + y1 * w1 + x0, base + y1 * w1 + x1], axis=1).ravel()
    one = xp.ones((n_rows, k), dtype=xp.float64)
    wts = xp.concatenate([one, -one, -one, one], axis=1).ravel()
    diff = xp.bincount(idx, weights=wts, minlength=n_rows * plane).reshape(n_rows, H + 1, w1)
    cover = diff.cumsum(axis=1).cumsum(axis=2)[:, :H, :W]
    return (cover > 0.5).sum(axis=(1, 2)).astype(xp.float64)


def lam_from_cells(cells, H: int, W: int, partner_index=None):
    """``lam = 1 - (pixels of the selected cells) / (H * W)`` per row, with :func:`cell_edges` geometry.

    Equals ``1 - selected_cells / G^2`` when H and W are divisible by the grid; otherwise the larger edge
    cells count with their true size. Rows whose ``partner_index`` is -1 get 1.
    """
    H, W = _check_hw(H, W)
    xp = _xp.array_module(cells)
    m = xp.asarray(cells)
    if m.ndim != 3 or m.dtype != xp.bool_:
        raise ValueError(f"cells must be a bool array of shape (N, Gh, Gw), got shape {tuple(m.shape)} "
                         f"dtype {m.dtype}")
    hy = xp.asarray(np.diff(cell_edges(m.shape[1], H)).astype(np.float64))
    wx = xp.asarray(np.diff(cell_edges(m.shape[2], W)).astype(np.float64))
    area = (m * hy[None, :, None] * wx[None, None, :]).sum(axis=(1, 2))
    lam = 1.0 - area / float(H * W)
    return _no_partner_is_one(lam, partner_index, m.shape[0], xp)


def _no_partner_is_one(lam, partner_index, n_rows, xp):
    if partner_index is None:
        return lam
    p = _partner(partner_index, n_rows, xp)
    return xp.where(p < 0, 1.0, lam)


def _check_hw(H, W):
    return check_int("H", H), check_int("W", W)
