"""``Batch``: what the loader yields (the public contract, docs/design.md), in a module of its own so that the loader and
the methods' training-side steps can both use it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class Batch:
    """One batch: ``images`` (B*M, 3, H, W), ``targets`` (B*M, K) soft, ``labels`` (B*M,), ``meta``.

    ``meta`` holds per row: ``sample_id``, ``copy``, ``partner`` (row of the source image or -1),
    ``lam`` (share of the row's own label), ``boxes`` (K, 4) ``y0, x0, y1, x1`` in output pixels
    (-1 padded), ``crop`` ``(y0, x0, h, w)`` in source pixels, ``flip``, ``valid`` (0 on pad rows),
    ``image_size`` ``(H, W)`` of the source image, ``position`` ``(epoch, batch index)`` the row was served
    at, and for the saliency bank ``map_source`` (1: the row's map came from the bank) and ``map_age``
    (epochs since that map was pushed, -1 otherwise).
    """

    images: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    meta: dict

    def __iter__(self):
        return iter((self.images, self.targets))

    def replace(self, **changes) -> "Batch":
        """A copy with some fields replaced (``meta`` entries given as ``meta={...}`` are merged)."""
        if "meta" in changes:
            changes["meta"] = {**self.meta, **changes["meta"]}
        return replace(self, **changes)
