"""timm's switch between CutMix and MixUp (``timm.data.mixup.Mixup``, Wightman, "ResNet strikes back",
arXiv 2110.00476; CutMix arXiv 1905.04899, MixUp arXiv 1710.09412), so that a timm recipe moves over
unchanged."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kernels.boxes import cutmix_box_for_lam
from kernels.checks import check_bool, check_positive, check_probability
from pipelines.methods.base import CopyPlan, Fragment, InputSpec, Method

PARTNER = InputSpec("partner", np.int32)
BOXES = InputSpec("boxes", np.int32, (1, 4))
BLEND = InputSpec("blend", np.float32)


@dataclass(frozen=True)
class CutMixMixUp(Method):
    """timm ``Mixup(mixup_alpha, cutmix_alpha, prob, switch_prob, mode, correct_lam)`` with its rules:

    * partner = ``x.flip(0)``: row ``i`` of a copy mixes with row ``B - 1 - i`` (not a permutation);
    * each draw mixes with probability ``p`` (timm's ``prob``); a mixed draw is CutMix with probability
      ``switch_prob`` (``lam ~ Beta(cutmix_alpha)``, timm's ``rand_bbox`` with margin 0: side
      ``int(S * sqrt(1 - lam))``, uniform centre, clipped), else MixUp (``lam ~ Beta(mixup_alpha)``,
      ``x = lam * x + (1 - lam) * x_partner``); with ``correct_lam`` CutMix's ``lam`` is the exact kept area;
    * ``mode="batch"`` (timm's default): one draw for the batch; ``"elem"``: one per row, each row mixed
      with the *original* partner; ``"pair"``: one per pair ``(i, B - 1 - i)``, both rows mixed with each
      other's original with the same ``lam`` and box (an odd batch's middle row stays whole).

    The partner's pixels always come from its un-mixed crop (the graph reads the partner's uint8 image),
    which is timm's ``x_orig`` in ``elem`` / ``pair`` and ``x.flip(0)`` in ``batch``. Defaults are timm's
    ImageNet recipe values (``mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5``). timm's
    ``cutmix_minmax`` (a box of random aspect) is not offered."""

    name = "cutmix_mixup"
    inputs = (PARTNER, BOXES, BLEND)
    modes: ClassVar[tuple] = ("batch", "pair", "elem")

    mode: str = "batch"
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    correct_lam: bool = True

    def check(self):
        object.__setattr__(self, "mixup_alpha", check_positive("mixup_alpha", self.mixup_alpha))
        object.__setattr__(self, "cutmix_alpha", check_positive("cutmix_alpha", self.cutmix_alpha))
        object.__setattr__(self, "switch_prob", check_probability("switch_prob", self.switch_prob))
        object.__setattr__(self, "correct_lam", check_bool("correct_lam", self.correct_lam))

    def plan(self, rng, rows, size, p_keep_image):
        # timm's gate, not the base class's: one mixing draw per batch / pair / row, drawn among its other draws
        # (timm's order), and a pair's two rows gated together
        n = {"batch": 1, "pair": rows // 2, "elem": rows}[self.mode]
        use_cutmix = rng.random(n) < self.switch_prob
        lam = np.where(use_cutmix, rng.beta(self.cutmix_alpha, self.cutmix_alpha, size=n),
                       rng.beta(self.mixup_alpha, self.mixup_alpha, size=n))
        mixed = rng.random(n) < self.p
        boxes, area = cutmix_box_for_lam(rng, size, size, lam)
        if self.correct_lam:
            lam = np.where(use_cutmix, area, lam)
        if self.mode == "batch":
            use_cutmix, lam, mixed, boxes = (np.repeat(a, rows, axis=0) for a in (use_cutmix, lam, mixed, boxes))
        elif self.mode == "pair":  # row B-1-i repeats the draw of row i; an odd batch's middle row stays whole
            middle = [False] * (rows % 2)
            use_cutmix, mixed = (np.concatenate([a, middle, a[::-1]]).astype(bool) for a in (use_cutmix, mixed))
            lam = np.concatenate([lam, [1.0] * (rows % 2), lam[::-1]])
            boxes = np.concatenate([boxes, np.full((rows % 2, 4), -1, np.int32), boxes[::-1]])
        apply = mixed & (rng.random(rows) >= p_keep_image)
        partner = np.where(apply, np.arange(rows)[::-1], -1).astype(np.int32)
        cut = apply & use_cutmix
        boxes = np.where(cut[:, None], boxes, -1).astype(np.int32)[:, None]
        lam = np.where(apply, lam, 1.0).astype(np.float32)
        blend = np.where(cut, 1.0, lam).astype(np.float32)
        return CopyPlan(boxes, lam, partner, {PARTNER: partner, BOXES: boxes, BLEND: blend})

    def graph(self, g, u8, mirror, nodes):
        return Fragment(g.normalize(u8, g.on(nodes[BOXES]), g.on(nodes[PARTNER]), nodes[BLEND], mirror=mirror))
