"""SaliencyMix (Uddin et al. 2021, "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better
Regularization", arXiv 2006.01791; official code ``afm-shahab-uddin/SaliencyMix``, ``saliency_bbox``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dali_ops import mixing
from kernels.checks import check_choice, check_positive
from pipelines.methods.base import CopyPlan, InputSpec
from pipelines.methods.saliency_guided import SaliencyGuided, partner_and_cutmix_side
from pipelines.saliency.sources import IMAGE_INPUTS, ImageSaliency

PARTNER = InputSpec("partner", np.int32, whole=-1)
MAP_INDEX = InputSpec("map_index", np.int32, whole=-1)
CUT = InputSpec("cut", np.int32, (2,))


@dataclass(frozen=True)
class SaliencyMix(SaliencyGuided):
    """CutMix whose box is centred on the source image's saliency peak.

    ``lam ~ Beta(alpha, alpha)``, cut side ``int(S * sqrt(1 - lam))``; the box is ``clip(peak -+ cut // 2)``
    around the first maximum of ``(map * 255).astype(uint8)`` of the *source* (partner) image's map, and the
    source's pixels are pasted at the same location; ``lam`` is then the exact kept area. ``mode="batch"``
    is the official code: one ``lam`` for the batch, and the map of the first permuted image
    (``input[rand_index[0]]``) decides the box of every row.

    ``saliency_input`` (with ``saliency="image"``) is the shorthand of the image source's ``input``
    (:class:`~pipelines.saliency.sources.ImageSaliency`): ``"uint8"`` (default), the source row's uint8 crop as
    the row sees it, or ``"official"``, what the official code hands OpenCV (``img.cpu().numpy().transpose(1, 2,
    0)`` of the mean/std-normalised tensor), whose map follows byte noise rather than the photo. With
    ``mode="batch"`` and ``"official"`` this is the official code: one map, of the first permuted image, one box
    for the batch. With another source ``saliency_input`` has nothing to choose and must stay ``"uint8"``.
    """

    name = "saliencymix"
    inputs = (PARTNER, MAP_INDEX, CUT)

    alpha: float = 1.0
    saliency_input: str = "uint8"

    def check(self):
        super().check()
        object.__setattr__(self, "alpha", check_positive("alpha", self.alpha))
        check_choice("saliency_input", self.saliency_input, IMAGE_INPUTS)
        if self.saliency_input == "official":
            if not isinstance(self.source, ImageSaliency):
                raise ValueError("saliency_input='official' (OpenCV's map of the normalised float image, computed "
                                 f"in the graph) needs saliency='image'; with saliency={self.saliency!r} the map "
                                 "comes from elsewhere, so leave saliency_input='uint8'")
            object.__setattr__(self, "source", ImageSaliency(input="official"))

    def draw(self, rng, rows, size):
        perm, side = partner_and_cutmix_side(self, rng, rows, size)
        # official code: the map of input[rand_index[0]] decides the box of the whole batch
        source = perm if not self.per_batch() else np.full(rows, perm[0], np.int32)
        plan = CopyPlan.whole(rows, 1, {PARTNER: perm, MAP_INDEX: source.astype(np.int32),
                                        CUT: np.stack([side, side], -1)})
        plan.partner = perm
        return plan

    search_draws = "cut"
    paste_partner = "partner"

    def search_kwargs(self, draws, size):
        return dict(method="peak", quantize=True)

    def search(self, g, sal, nodes):
        return mixing.saliency_peak_box(sal, g.on(nodes[CUT]), nodes[MAP_INDEX], device=g.device)

    def apply(self, g, u8, mirror, nodes, boxes):
        return g.normalize(u8, boxes, g.on(nodes[PARTNER]), mirror=mirror)
