"""KeepAugment (Gong et al. 2021, "KeepAugment: A Simple Information-Preserving Data Augmentation Approach",
arXiv 2011.11778): selective-cut, selective-paste and KeepCutMix. No official code exists; the unofficial
``cjf8899/KeepAugment_Pytorch`` uses a fixed threshold and box size, so these follow the paper.

The region score is the *sum* of saliency over the region (Eq. 1), the region being the ``size`` x
``size`` box ``clip(c -+ size // 2)`` around a centre pixel (cut off at the border, as Cutout's); the
threshold is the ``tau``-quantile of the scores of every candidate region of that size (NumPy's linear
rule, exactly). Of ``max_tries`` centres drawn uniformly on the host, the search in the graph
(``fn.occlusion.box_search``) takes the first below (cut) / above (paste) the threshold, else the lowest /
highest-scoring one (the paper resamples until one qualifies; a bounded loop keeps the operator's time
fixed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dali_ops import mixing
from kernels.checks import check_choice, check_int, check_positive, check_probability
from pipelines.methods.base import CopyPlan, Erasing, Fragment, InputSpec
from pipelines.methods.saliency_guided import SaliencyGuided, partner_and_cutmix_side

MAP_INDEX = InputSpec("map_index", np.int32, whole=-1)
TRIES = InputSpec("tries", np.int32, (-1, 2))
PARTNER = InputSpec("partner", np.int32, whole=-1)
SIZE = InputSpec("size", np.int32)
POLICIES = ("auto_augment", "rand_augment")


@dataclass(frozen=True)
class _Keep(SaliencyGuided):
    tau: float = 0.6
    max_tries: int = 32

    def check(self):
        super().check()
        object.__setattr__(self, "tau", check_probability("tau", self.tau))
        check_int("max_tries", self.max_tries)

    def _tries(self, rng, rows, size):
        """(B, T, 2) candidate centres ``(cy, cx)``, uniform over the image (shared in ``mode="batch"``)."""
        n = 1 if self.per_batch() else rows
        cy = rng.integers(0, size, size=(n, self.max_tries))
        cx = rng.integers(0, size, size=(n, self.max_tries))
        return np.broadcast_to(np.stack([cy, cx], -1), (rows, self.max_tries, 2)).astype(np.int32)

    search_draws = "tries"
    selective = "cut"

    def keep_kwargs(self, side) -> dict:
        """``box_search``'s arguments with region side ``side`` (an int, or one per row); tau as a decimal
        string, as ``keep_box`` passes it (DALI's float arguments are float32)."""
        return dict(method=f"keep_{self.selective}", size=side, tau=repr(float(self.tau)))

    def keep_box(self, g, sal, nodes, side):
        return mixing.keep_box(sal, g.on(nodes[TRIES]), nodes[MAP_INDEX], size=side, tau=self.tau,
                               selective=self.selective, device=g.device)


@dataclass(frozen=True)
class _KeepRegion(_Keep):
    """Selective cut / paste with a fixed region side ``size``."""

    size: int = 56

    def check(self):
        super().check()
        check_int("size", self.size, lo=2)

    def draw(self, rng, rows, size):
        return CopyPlan.whole(rows, 1, {MAP_INDEX: np.arange(rows, dtype=np.int32),
                                        TRIES: self._tries(rng, rows, size)})

    def search_kwargs(self, draws, size):
        return self.keep_kwargs(self.size)

    def search(self, g, sal, nodes):
        return self.keep_box(g, sal, nodes, self.size)


@dataclass(frozen=True)
class KeepCutout(_KeepRegion, Erasing):
    """Selective-cut: a Cutout box whose region score is below the ``tau``-quantile (an unimportant region)
    is erased (``fill``, as :class:`~pipelines.methods.base.Erasing`). Defaults: ``size=56`` (Fong & Vedaldi's S
    at 224 px), ``tau=0.6`` (the paper's), 32 tries."""

    name = "keep_cutout"
    inputs = (MAP_INDEX, TRIES)

    def apply(self, g, u8, mirror, nodes, boxes):
        return g.normalize(u8, boxes, mirror=mirror, fill=self.fill_value)


@dataclass(frozen=True)
class KeepPaste(_KeepRegion):
    """Selective-paste: the image goes through the augmentation ``policy`` and a region whose score is above
    the ``tau``-quantile (an important one) is pasted back from the un-augmented image. ``policy``:
    ``"auto_augment"`` (DALI's AutoAugment ImageNet policy, the paper's ImageNet runs) or ``"rand_augment"``
    (n=2, m=9). The policy runs on every row (rows not selected keep the augmented image whole), after
    the flip as in timm's transforms."""

    name = "keep_paste"
    inputs = (MAP_INDEX, TRIES)

    policy: str = "auto_augment"

    def check(self):
        super().check()
        check_choice("policy", self.policy, POLICIES)

    selective = "paste"

    @property
    def default_policy(self):
        return self.policy

    def prepare(self, g, u8):
        return u8  # the policy runs inside the fragment, around the pasted region

    def graph(self, g, u8, mirror, nodes):
        g.augment(u8)  # the policy's ops first: they draw their seeds as in method="none"
        return super().graph(g, u8, mirror, nodes)

    def apply(self, g, u8, mirror, nodes, boxes):
        return g.normalize(mixing.paste_boxes(g.augment(u8), boxes, u8, device=g.device), mirror=mirror)

    def defer(self, g, u8, mirror, nodes):
        # the row is the policy's output; the un-augmented crop is what the saliency describes and the paste
        # source (meta["source_images"]), as in the graph's apply
        return Fragment(g.normalize(g.augment(u8), mirror=mirror), draws=nodes, source=g.clean(u8, mirror))

    def cover(self, images, mask, sources):
        from kernels.apply import occlude  # the training side only (see pipelines.methods.saliency_guided)

        if sources is None:
            raise ValueError("keep_paste's training-side occlusion needs the un-augmented rows (sources)")
        # inside the important region, the un-augmented pixels (the graph's paste_boxes(augmented, boxes, u8))
        return occlude(images, mask, source=sources)


@dataclass(frozen=True)
class KeepCutMix(_Keep):
    """KeepCutMix, KeepAugment's ImageNet method (Gong et al. Table 6: CutMix 78.6 -> 79.0 top-1, ResNet-50):
    CutMix (``lam ~ Beta(alpha, alpha)``, side ``int(S * sqrt(1 - lam))``, partner a permutation of the
    copy's rows) whose cut region in the *target* image is chosen by selective-cut among the regions of
    that side (score below the ``tau``-quantile of all of them), then filled with the partner's pixels at
    the same place; ``lam`` is the exact kept area. ``mode="batch"``: one ``lam`` and one set of candidate
    centres per batch (each row still searches its own map)."""

    name = "keep_cutmix"
    inputs = (PARTNER, MAP_INDEX, TRIES, SIZE)

    alpha: float = 1.0

    paste_partner = "partner"

    def check(self):
        super().check()
        object.__setattr__(self, "alpha", check_positive("alpha", self.alpha))

    def draw(self, rng, rows, size):
        perm, side = partner_and_cutmix_side(self, rng, rows, size)
        plan = CopyPlan.whole(rows, 1, {PARTNER: perm, MAP_INDEX: np.arange(rows, dtype=np.int32),
                                        TRIES: self._tries(rng, rows, size), SIZE: side})
        plan.partner = perm
        return plan

    def search_kwargs(self, draws, size):
        return self.keep_kwargs(draws["size"])

    def search(self, g, sal, nodes):
        return self.keep_box(g, sal, nodes, nodes[SIZE])

    def apply(self, g, u8, mirror, nodes, boxes):
        return g.normalize(u8, boxes, g.on(nodes[PARTNER]), mirror=mirror)
