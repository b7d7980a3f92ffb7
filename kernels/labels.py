"""Soft targets from ``(y, y_partner, lam)``, as timm ``mixup_target`` and CutMix's two CE terms.

CutMix (Yun et al., 2019) trains with ``lam * CE(out, y_a) + (1 - lam) * CE(out, y_b)``; with one-hot
targets that equals CE against ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``, which is what this
returns. Label smoothing follows timm: ``off = eps / K``, ``on = 1 - eps + off``, applied to both
one-hots before mixing.
"""
from __future__ import annotations

import numpy as np


def one_hot(labels: np.ndarray, num_classes: int, smoothing: float = 0.0, xp=np) -> np.ndarray:
    """(N,) int labels -> (N, K) float32 smoothed one-hot rows."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    labels = xp.asarray(labels)
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    off = smoothing / num_classes
    out = xp.full((labels.shape[0], num_classes), off, dtype=xp.float32)
    out[xp.arange(labels.shape[0]), labels] = 1.0 - smoothing + off
    return out


def soft_targets(labels, partner_labels, lam, num_classes: int, smoothing: float = 0.0, xp=np):
    """``lam * onehot(y) + (1 - lam) * onehot(y_partner)`` per row, both smoothed.

    ``partner_labels`` may hold anything where ``lam == 1`` (rows that were not mixed).
    """
    lam = xp.asarray(lam, dtype=xp.float32).reshape(-1, 1)
    own = one_hot(labels, num_classes, smoothing, xp)
    partner_labels = xp.where(lam[:, 0] < 1.0, xp.asarray(partner_labels), xp.asarray(labels))
    other = one_hot(partner_labels, num_classes, smoothing, xp)
    return lam * own + (1.0 - lam) * other
