"""CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
Features", arXiv 1905.04899, Algorithm A1; reference ``clovaai/CutMix-PyTorch`` ``train.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.areas import lam_from_boxes
from kernels.boxes import cutmix_box
from kernels.checks import check_positive
from pipelines.methods.base import CopyPlan, Fragment, InputSpec, Method

PARTNER = InputSpec("partner", np.int32, whole=-1)
PASTE_BOXES = InputSpec("boxes", np.int32, (-1, 4), whole=-1)


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

    def draw(self, rng, rows, size):
        perm = rng.permutation(rows).astype(np.int32)
        boxes, _ = cutmix_box(rng, size, size, self.alpha, n=None if self.per_batch() else rows)
        boxes = np.broadcast_to(boxes, (rows, 4)).astype(np.int32)[:, None]
        # lam: the exact kept area of the box (kernels.areas.lam_from_boxes; the gate sets 1 on rows left whole)
        lam = lam_from_boxes(boxes, size, size, perm).astype(np.float32)
        return CopyPlan(boxes, lam, perm, {PARTNER: perm, PASTE_BOXES: boxes})

    def graph(self, g, u8, mirror, nodes):
        return Fragment(g.normalize(u8, g.on(nodes[PASTE_BOXES]), g.on(nodes[PARTNER]), mirror=mirror))
