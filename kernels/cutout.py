"""Box samplers of the erasing methods: Cutout and Hide-and-Seek.

* Cutout (DeVries & Taylor 2017; uoguelph-mlrg/Cutout ``util/cutout.py``): for each of ``holes``
  squares, centre ``y ~ randint(H)``, ``x ~ randint(W)``, box ``clip(c - size // 2, 0, H)`` to
  ``clip(c + size // 2, 0, H)``: the square may be cut off by the border (overflow allowed).
* Hide-and-Seek (Singh & Lee 2017; kkanshul/Hide-and-Seek ``hide_patch.py``): a patch side ``S`` is
  drawn per image from ``patch_sizes`` (0 = hide nothing), a grid of ``S x S`` cells anchored at
  (0, 0) with the last row/column clipped to the image, each cell hidden with probability
  ``1 - p_keep_patch``.

Both return ``(N, K, 4)`` int32 boxes ``(y0, x0, y1, x1)``, half-open, padded with -1. The fill (the
dataset mean, i.e. 0 after mean/std normalisation, as in both reference codes) is applied elsewhere.
"""
from __future__ import annotations

import numpy as np


def _check_size(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def cutout_boxes(rng: np.random.Generator, n: int, height: int, width: int, holes: int = 1,
                 size: int = 56) -> np.ndarray:
    """``(n, holes, 4)`` Cutout squares of side ``size`` with uniform centres, clipped at the border."""
    holes = _check_size("holes", holes)
    size = _check_size("size", size)
    cy = rng.integers(0, height, size=(n, holes))
    cx = rng.integers(0, width, size=(n, holes))
    half = size // 2
    return np.stack([np.clip(cy - half, 0, height), np.clip(cx - half, 0, width),
                     np.clip(cy + half, 0, height), np.clip(cx + half, 0, width)], axis=-1).astype(np.int32)


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
