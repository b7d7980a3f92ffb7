"""Labels: soft targets from ``(y, y_partner, lam)`` and the soft-target cross entropy, in torch on the labels'
device (the loader's host batches and the training side's device batches use this one rule).

CutMix (Yun et al., 2019, arXiv 1905.04899) trains with ``lam * CE(out, y_a) + (1 - lam) * CE(out, y_b)``; with
one-hot targets that equals CE against ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``, which
:func:`soft_targets` returns (timm ``mixup_target``). Label smoothing follows timm: ``off = eps / K``,
``on = 1 - eps + off``, applied to both one-hots before mixing. Labels are trusted to lie in ``[0, K)`` (the
loader checks them once, :func:`pipelines.loader.dataset.infer_num_classes`): a check here would cost a device
synchronisation per batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(N,) int labels -> (N, K) float32 smoothed one-hot rows."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    out[torch.arange(labels.shape[0], device=labels.device), labels.long()] = 1.0 - smoothing + off
    return out


def soft_targets(labels: torch.Tensor, partner_labels: torch.Tensor, lam: torch.Tensor, num_classes: int,
                 smoothing: float = 0.0) -> torch.Tensor:
    """``lam * onehot(y) + (1 - lam) * onehot(y_partner)`` per row, both smoothed; ``partner_labels`` may hold
    anything where ``lam == 1`` (rows that were not mixed)."""
    lam = lam.to(torch.float32).reshape(-1, 1)
    own = one_hot(labels, num_classes, smoothing)
    other = one_hot(torch.where(lam[:, 0] < 1.0, partner_labels, labels), num_classes, smoothing)
    return lam * own + (1.0 - lam) * other


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None,
                       denom=None) -> torch.Tensor:
    """``-sum(targets * log_softmax(logits))`` per row (float32 even under autocast); with ``valid`` (a per-row
    weight, 0 on pad rows) their weighted sum over ``denom`` (default: the number of valid rows)."""
    loss = -(targets * F.log_softmax(logits.float(), dim=1)).sum(1)
    if valid is None:
        return loss
    valid = valid.to(loss.device, torch.float32)
    return (loss * valid).sum() / (valid.sum().clamp_min(1.0) if denom is None else denom)
