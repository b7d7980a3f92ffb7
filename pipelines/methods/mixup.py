"""MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization", arXiv 1710.09412; reference
``facebookresearch/mixup-cifar10`` ``mixup_data``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.checks import check_positive
from pipelines.methods.base import CopyPlan, Fragment, InputSpec, Method

PARTNER = InputSpec("partner", np.int32, whole=-1)
NO_BOXES = InputSpec("boxes", np.int32, (0, 4))
BLEND = InputSpec("blend", np.float32, whole=1.0)


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

    def draw(self, rng, rows, size):
        perm = rng.permutation(rows).astype(np.int32)
        lam = np.broadcast_to(rng.beta(self.alpha, self.alpha, size=1 if self.per_batch() else rows),
                              (rows,)).astype(np.float32)
        boxes = np.full((rows, 0, 4), -1, np.int32)
        return CopyPlan(boxes, lam, perm, {PARTNER: perm, NO_BOXES: boxes, BLEND: lam})

    def graph(self, g, u8, mirror, nodes):
        return Fragment(g.normalize(u8, g.on(nodes[NO_BOXES]), g.on(nodes[PARTNER]), nodes[BLEND], mirror=mirror))
