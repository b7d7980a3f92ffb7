"""Box samplers of the mixing methods: CutMix (Yun et al., ICCV 2019, Algorithm A1).

The sampler is host-side NumPy (a handful of scalars per row, drawn from the caller's
``numpy.random.Generator``); applying the box is :func:`kernels.apply.paste`.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["cutmix_box"]


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
    for name, v in (("H", H), ("W", W)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite float > 0 (Beta(alpha, alpha)), got {alpha!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
        raise ValueError(f"n must be None (one box per batch) or an int >= 0, got {n!r}")
    H, W = int(H), int(W)
    lam = np.asarray(rng.beta(alpha, alpha, size=n), dtype=np.float64)
    cy = np.asarray(rng.integers(H, size=n), dtype=np.int64)
    cx = np.asarray(rng.integers(W, size=n), dtype=np.int64)
    cut_rat = np.sqrt(1.0 - lam)
    cut_h = (H * cut_rat).astype(np.int64)
    cut_w = (W * cut_rat).astype(np.int64)
    y0 = np.clip(cy - cut_h // 2, 0, H)
    x0 = np.clip(cx - cut_w // 2, 0, W)
    y1 = np.clip(cy + cut_h // 2, 0, H)
    x1 = np.clip(cx + cut_w // 2, 0, W)
    boxes = np.stack([y0, x0, y1, x1], axis=-1).astype(np.int32)
    lam_c = 1.0 - ((y1 - y0) * (x1 - x0)) / (H * W)
    if n is None:
        return boxes, float(lam_c)
    return boxes, lam_c.astype(np.float64)
