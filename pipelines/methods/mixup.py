"""MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization", arXiv 1710.09412; reference
``facebookresearch/mixup-cifar10`` ``mixup_data``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.methods.base import CopyPlan, InputSpec, Method, check_positive

PARTNER = InputSpec("partner", np.int32)
NO_BOXES = InputSpec("boxes", np.int32, (0, 4))
BLEND = InputSpec("blend", np.float32)


@dataclass(frozen=True)
class MixUp(Method):
    """``lam ~ Beta(alpha, alpha)``, ``x = lam * x + (1 - lam) * x[partner]`` on the normalised images
    (the reference mixes the normalised tensors), targets ``lam * y + (1 - lam) * y[partner]``. Partner: a
    random permutation of the copy's rows (the reference's ``torch.randperm``). The reference draws one
    ``lam`` per batch (``mode="batch"``); ``mode="elem"`` draws one per row. ``alpha=0.2``: the paper's
    ImageNet setting (it reports alpha in [0.1, 0.4] working best there).

    In the graph the blend is fused into normalisation (``fn.occlusion.normalize_occlude``'s ``blend``
    input): each output value is written once, reading the partner's uint8 crop."""

    name = "mixup"
    inputs = (PARTNER, NO_BOXES, BLEND)

    alpha: float = 0.2

    def check(self):
        object.__setattr__(self, "alpha", check_positive("alpha", self.alpha))

    def plan(self, rng, rows, size, p_keep_image):
        perm = rng.permutation(rows).astype(np.int32)
        lam = rng.beta(self.alpha, self.alpha, size=1 if self.per_batch() else rows)
        apply = self.applied(rng, rows, p_keep_image)
        return blend_plan(rows, apply, perm, np.broadcast_to(lam, (rows,)))

    def graph(self, g, u8, mirror, nodes):
        return g.normalize(u8, g.on(nodes[NO_BOXES]), g.on(nodes[PARTNER]), nodes[BLEND], mirror=mirror), None


def blend_plan(rows: int, apply, perm, lam, boxes=None) -> CopyPlan:
    """Plan of a blending method: applied rows take ``lam`` of their own image and ``1 - lam`` of the
    partner's (outside ``boxes``, which take the partner's pixels, where given); the rest stay whole."""
    partner = np.where(apply, perm, -1).astype(np.int32)
    lam = np.where(apply, lam, 1.0).astype(np.float32)
    boxes = np.full((rows, 0, 4), -1, np.int32) if boxes is None else boxes
    return CopyPlan(boxes, lam, partner, {PARTNER: partner, NO_BOXES: boxes, BLEND: lam})
