"""SaliencyMix (Uddin et al. 2021, "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better
Regularization", arXiv 2006.01791; official code ``afm-shahab-uddin/SaliencyMix``, ``saliency_bbox``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dali_ops import mixing
from pipelines.methods.base import CopyPlan, InputSpec, check_choice, check_positive
from pipelines.methods.saliency import SaliencyGuided, partner_and_cutmix_side

PARTNER = InputSpec("partner", np.int32)
MAP_INDEX = InputSpec("map_index", np.int32)
CUT = InputSpec("cut", np.int32, (2,))

#: what the saliency map is computed on (``saliency="image"``)
SALIENCY_INPUTS = ("uint8", "official")


@dataclass(frozen=True)
class SaliencyMix(SaliencyGuided):
    """CutMix whose box is centred on the source image's saliency peak.

    ``lam ~ Beta(alpha, alpha)``, cut side ``int(S * sqrt(1 - lam))``; the box is ``clip(peak -+ cut // 2)``
    around the first maximum of ``(map * 255).astype(uint8)`` of the *source* (partner) image's map, and the
    source's pixels are pasted at the same location; ``lam`` is then the exact kept area. ``mode="batch"``
    is the official code: one ``lam`` for the batch, and the map of the first permuted image
    (``input[rand_index[0]]``) decides the box of every row.

    ``saliency_input`` (with ``saliency="image"``) is what the map is computed on:

    * ``"uint8"`` (default): the source row's uint8 crop as the row sees it (flipped), the photo the
      saliency is meant to describe;
    * ``"official"``: what the official code hands OpenCV, ``img.cpu().numpy().transpose(1, 2, 0)`` of the
      mean/std-normalised tensor -- here the source row's float32 HWC image as the graph normalises it
      (ImageNet mean/std, after the flip; float32 whatever the loader's ``dtype``, as openmixup forces
      fp32 before numpy). OpenCV's fine-grained saliency never converts a float image to 8 bits: it reads
      the raw bytes of its float32 gray plane as the pixels' centre values (``gray.at<uchar>`` on a
      ``CV_32F`` Mat), so this map, and the box, follow byte noise rather than the photo.
      ``fn.occlusion.fine_grained_saliency`` on float32 input reproduces opencv-contrib-python-headless
      5.0.0 on x86-64 bit for bit. With ``mode="batch"`` this is the official code: one map, of the first
      permuted image, one box for the batch.

    ``saliency="model"`` takes the model's map instead; ``saliency_input`` then has nothing to choose and
    must stay ``"uint8"``.
    """

    name = "saliencymix"
    inputs = (PARTNER, MAP_INDEX, CUT)

    alpha: float = 1.0
    saliency_input: str = "uint8"

    def check(self):
        super().check()
        object.__setattr__(self, "alpha", check_positive("alpha", self.alpha))
        check_choice("saliency_input", self.saliency_input, SALIENCY_INPUTS)
        if self.saliency_input == "official" and self.saliency != "image":
            raise ValueError("saliency_input='official' (OpenCV's map of the normalised float image, computed in "
                             "the graph) needs saliency='image'; with saliency="
                             f"{self.saliency!r} the map comes from the model, so leave saliency_input='uint8'")

    def plan(self, rng, rows, size, p_keep_image):
        perm, side = partner_and_cutmix_side(self, rng, rows, size)
        cut = np.stack([side, side], -1)
        apply = self.applied(rng, rows, p_keep_image)
        # official code: the map of input[rand_index[0]] decides the box of the whole batch
        source = perm if not self.per_batch() else np.full(rows, perm[0], np.int32)
        partner = np.where(apply, perm, -1).astype(np.int32)
        plan = CopyPlan.whole(rows, 1)
        plan.partner = partner
        plan.inputs = {PARTNER: partner, MAP_INDEX: np.where(apply, source, -1).astype(np.int32), CUT: cut}
        return plan

    search_draws = "cut"
    paste_partner = "partner"

    def search_kwargs(self, draws):
        return dict(method="peak", quantize=True)

    def graph(self, g, u8, mirror, nodes):
        if self.saliency_input == "official":
            sal = g.saliency_of_normalized(u8, mirror)
        else:
            sal = g.saliency(u8, mirror)
        boxes = mixing.saliency_peak_box(sal, g.on(nodes[CUT]), nodes[MAP_INDEX], device=g.device)
        return g.normalize(u8, boxes, g.on(nodes[PARTNER]), mirror=mirror), boxes
