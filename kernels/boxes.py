"""Box geometry of the occlusion methods, one implementation per rule (host-side NumPy).

* :func:`centred_box` -- the clipped centred box ``clip(c - half, 0, size) .. clip(c + half, 0, size)``
  shared by Cutout (DeVries & Taylor 2017, arXiv 1708.04552; uoguelph-mlrg/Cutout ``util/cutout.py``),
  CutMix (Yun et al. 2019, arXiv 1905.04899; clovaai ``rand_bbox``), SaliencyMix's ``saliency_bbox`` and
  KeepAugment's regions: the box is cut off by the border, never shifted back inside.
* :func:`cutout_boxes` -- Cutout: ``holes`` squares of side ``size`` with uniform centres.
* :func:`hide_and_seek_boxes` -- Hide-and-Seek (Singh & Lee 2017, arXiv 1704.04232; kkanshul/Hide-and-Seek
  ``hide_patch.py``): a patch side ``S`` drawn per image from ``patch_sizes`` (0 = hide nothing), a grid of
  ``S x S`` cells anchored at (0, 0) with the last row/column clipped to the image, each cell hidden with
  probability ``1 - p_keep_patch``.
* :func:`cutmix_box` -- CutMix's box and the lambda corrected to the exact kept area.

Boxes are ``(N, K, 4)`` int32 ``(y0, x0, y1, x1)``, half-open, padded with -1. The exact kept area of any
box list is :func:`kernels.areas.lam_from_boxes`. The fill (the dataset mean, i.e. 0 after mean/std
normalisation, as in the reference codes) is applied elsewhere.
"""
from __future__ import annotations

import numpy as np

from kernels.checks import check_int, check_positive

__all__ = ["centred_box", "cutout_boxes", "hide_and_seek_boxes", "cutmix_box", "cutmix_box_for_lam", "cutmix_side",
           "pad_boxes"]


def centred_box(cy, cx, half_h, half_w, height: int, width: int) -> np.ndarray:
    """``(..., 4)`` int32 boxes ``clip(c - half, 0, size)`` .. ``clip(c + half, 0, size)`` (broadcasting).

    The rule of every reference code here (clipped, not shifted), so a box near the border is smaller
    than ``2 * half``."""
    cy, cx = np.asarray(cy, np.int64), np.asarray(cx, np.int64)
    return np.stack([np.clip(cy - half_h, 0, height), np.clip(cx - half_w, 0, width),
                     np.clip(cy + half_h, 0, height), np.clip(cx + half_w, 0, width)], axis=-1).astype(np.int32)


def cutout_boxes(rng: np.random.Generator, n: int, height: int, width: int, holes: int = 1,
                 size: int = 56) -> np.ndarray:
    """``(n, holes, 4)`` Cutout squares of side ``size`` with uniform centres, clipped at the border."""
    holes = check_int("holes", holes)
    size = check_int("size", size)
    cy = rng.integers(0, height, size=(n, holes))
    cx = rng.integers(0, width, size=(n, holes))
    return centred_box(cy, cx, size // 2, size // 2, height, width)


def hide_and_seek_boxes(rng: np.random.Generator, n: int, height: int, width: int,
                        patch_sizes=(0, 16, 32, 44, 56), p_keep_patch: float = 0.5) -> np.ndarray:
    """``(n, K, 4)`` hidden grid cells, -1 padded; K is the largest number of hidden cells in a row."""
    sizes = np.asarray(patch_sizes, dtype=np.int64).reshape(-1)
    if sizes.size == 0 or sizes.min() < 0:
        raise ValueError(f"patch_sizes must be a non-empty list of sizes >= 0, got {patch_sizes!r}")
    if not 0.0 <= p_keep_patch <= 1.0:
        raise ValueError(f"p_keep_patch must be in [0, 1], got {p_keep_patch}")
    side = sizes[rng.integers(0, sizes.size, size=n)]
    rows = []
    for s in side:
        if s == 0:
            rows.append(np.zeros((0, 4), np.int32))
            continue
        ys = np.arange(0, height, s)
        xs = np.arange(0, width, s)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        hide = rng.random(gy.shape) >= p_keep_patch
        y0, x0 = gy[hide], gx[hide]
        rows.append(np.stack([y0, x0, np.minimum(y0 + s, height), np.minimum(x0 + s, width)], -1))
    return pad_boxes(rows)


def pad_boxes(rows) -> np.ndarray:
    """Stack per-row ``(k_i, 4)`` box lists into ``(N, max k_i, 4)`` int32, padded with -1."""
    k = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), k, 4), -1, np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out



def cutmix_box(rng, H: int, W: int, alpha: float = 1.0, n: int | None = None):
    """Sample CutMix boxes and the lambda corrected to the kept area.

    Exactly clovaai/CutMix-PyTorch ``train.py`` (``rand_bbox`` plus the lambda correction of commit
    9dc8245), vectorised over rows:

    * ``lam ~ Beta(alpha, alpha)``; ``cut_h = int(H * sqrt(1 - lam))``, ``cut_w = int(W * sqrt(1 - lam))``
      (the reference calls the row axis ``W = size[2]``; its ``cx`` is our ``cy`` -- same geometry);
    * centre ``cy = randint(H)``, ``cx = randint(W)`` (uniform integers; near the border allowed);
    * box = ``clip(cy - cut_h // 2, 0, H), clip(cx - cut_w // 2, 0, W), clip(cy + cut_h // 2, 0, H),
      clip(cx + cut_w // 2, 0, W)`` -- clipped, not shifted, so the side is ``2 * (cut // 2)`` or less;
    * ``lam = 1 - box_area / (H * W)`` (share of the row's own label; the box holds the partner's pixels).

    Draw order (part of the contract, so a replay with the same generator state gives the same boxes):
    ``rng.beta(alpha, alpha, size=n)``, then ``rng.integers(H, size=n)``, then ``rng.integers(W, size=n)``.
    With ``n=None`` these are three scalar draws, exactly the reference's ``np.random.beta``,
    ``np.random.randint(W)``, ``np.random.randint(H)`` sequence on a Generator.

    Args:
        rng: ``numpy.random.Generator``.
        H, W: image height and width in pixels (>= 1).
        alpha: Beta parameter (> 0; ImageNet runs use 1.0).
        n: ``None`` -> one box for the batch (reference "batch" mode); an int -> one box per row ("elem").

    Returns:
        ``(boxes, lam)``: ``(4,)`` int32 and a float for ``n=None``; else ``(n, 4)`` int32 and ``(n,)``
        float64. Use ``boxes[:, None]`` for the per-row ``(N, K, 4)`` form (``apply`` accepts both).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    H, W = check_int("H", H), check_int("W", W)
    check_positive("alpha", alpha)
    if n is not None:
        check_int("n", n, lo=0)
    lam = np.asarray(rng.beta(alpha, alpha, size=n), dtype=np.float64)
    boxes, lam_c = cutmix_box_for_lam(rng, H, W, lam)
    if n is None:
        return boxes, float(lam_c)
    return boxes, lam_c


def cutmix_side(size: int, lam) -> np.ndarray:
    """CutMix's box side for ``lam`` (any shape): ``int(size * sqrt(1 - lam))``, the rule of clovaai's and
    timm's ``rand_bbox`` (SaliencyMix and KeepCutMix size their boxes alike)."""
    return (size * np.sqrt(1.0 - np.asarray(lam, dtype=np.float64))).astype(np.int64)


def cutmix_box_for_lam(rng, H: int, W: int, lam):
    """CutMix boxes for given ``lam`` (any shape): side ``int(S * sqrt(1 - lam))``, centre
    ``rng.integers(H)`` then ``rng.integers(W)`` (uniform), clipped; returns ``(boxes (..., 4) int32,
    the exact kept area (...) float64)``. The box rule of clovaai's and timm's ``rand_bbox`` (margin 0)."""
    lam = np.asarray(lam, dtype=np.float64)
    size = lam.shape if lam.ndim else None
    cy = np.asarray(rng.integers(H, size=size), dtype=np.int64)
    cx = np.asarray(rng.integers(W, size=size), dtype=np.int64)
    cut_h, cut_w = cutmix_side(H, lam), cutmix_side(W, lam)
    boxes = centred_box(cy, cx, cut_h // 2, cut_w // 2, H, W)
    y0, x0, y1, x1 = (boxes[..., k].astype(np.int64) for k in range(4))
    return boxes, 1.0 - ((y1 - y0) * (x1 - x0)) / (H * W)
