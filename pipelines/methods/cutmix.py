"""CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", arXiv 1905.04899, Algorithm A1; reference ``clovaai/CutMix-PyTorch`` ``train.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.apply import lam_from_boxes
from kernels.boxes import cutmix_box
from pipelines.methods.base import CopyPlan, InputSpec, Method, check_positive

PARTNER = InputSpec("partner", np.int32)
PASTE_BOXES = InputSpec("boxes", np.int32, (-1, 4))


@dataclass(frozen=True)
class CutMix(Method):
    """``lam ~ Beta(alpha, alpha)``, box side ``int(S * sqrt(1 - lam))``, uniform centre, clipped (not
    shifted); the partner's pixels (same copy, the partner's own crop and flip) pasted at the same place;
    ``lam`` corrected to the exact kept area (clovaai commit 9dc8245). Partner: a random permutation of
    the copy's rows (self-pairs allowed, as ``torch.randperm``). ``mode="batch"``: one lambda and box per
    batch and copy, as the reference. ImageNet setting: ``alpha=1.0``, ``p=1.0`` (``cutmix_prob``)."""

    name = "cutmix"
    inputs = (PARTNER, PASTE_BOXES)

    alpha: float = 1.0

    def check(self):
        object.__setattr__(self, "alpha", check_positive("alpha", self.alpha))

    def plan(self, rng, rows, size, p_keep_image):
        perm = rng.permutation(rows).astype(np.int32)
        boxes, _ = cutmix_box(rng, size, size, self.alpha, n=None if self.per_batch() else rows)
        return paste_plan(self, rng, rows, size, p_keep_image, perm, np.broadcast_to(boxes, (rows, 4)))

    def graph(self, g, u8, mirror, nodes):
        return g.normalize(u8, g.on(nodes[PASTE_BOXES]), g.on(nodes[PARTNER]), mirror=mirror), None


def paste_plan(method: Method, rng, rows: int, size: int, p_keep_image: float, perm: np.ndarray,
               boxes: np.ndarray) -> CopyPlan:
    """Plan of a box-pasting method: rows not augmented get no partner and no box; ``lam`` is the exact
    kept area of the box (:func:`kernels.apply.lam_from_boxes`)."""
    apply = method.applied(rng, rows, p_keep_image)
    partner = np.where(apply, perm, -1).astype(np.int32)
    boxes = np.where(apply[:, None], boxes, -1).astype(np.int32)[:, None]
    lam = lam_from_boxes(boxes, size, size, partner).astype(np.float32)
    return CopyPlan(boxes, lam, partner, {PARTNER: partner, PASTE_BOXES: boxes})
