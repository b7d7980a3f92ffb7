"""Fong & Vedaldi's saliency occlusion (Fong & Vedaldi 2019, "Occlusions for Effective Data Augmentation
in Image Classification", arXiv 1910.10651)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dali_ops import mixing
from pipelines.checks import check_int
from pipelines.methods.base import CopyPlan, Erasing, InputSpec
from pipelines.methods.saliency import SaliencyGuided

MAP_INDEX = InputSpec("map_index", np.int32)
JITTER = InputSpec("jitter", np.int32, (2,))


@dataclass(frozen=True)
class SaliencyOcclusion(SaliencyGuided, Erasing):
    """Erase the ``size`` x ``size`` window of largest saliency (the first maximum of the box-filtered map on
    the ``stride`` grid, S = 56, T = 1 in the paper), moved by a jitter uniform over the integer shifts in
    ``[-jitter, jitter]`` that keep the window inside the image (tau = 16). Clipping a uniform draw
    instead would pile the draws that leave the image onto the border shift. The host draws two uniform
    integers per row; ``fn.occlusion.box_search`` turns them into the shift once the window is known.
    Filled after normalisation (``fill``, as :class:`~pipelines.methods.base.Erasing`); ``lam`` is 1."""

    name = "saliency_occlusion"
    inputs = (MAP_INDEX, JITTER)

    size: int = 56
    stride: int = 1
    jitter: int = 16

    def check(self):
        super().check()
        check_int("size", self.size)
        check_int("stride", self.stride)
        check_int("jitter", self.jitter, lo=0)

    def check_output_size(self, size):
        if self.size > size:
            raise ValueError(f"size (the S x S window) must be <= output_size={size}, got {self.size}")

    def plan(self, rng, rows, size, p_keep_image):
        draws = rng.integers(0, 2 ** 31 - 1, size=(1 if self.per_batch() else rows, 2))
        apply = self.applied(rng, rows, p_keep_image)
        plan = CopyPlan.whole(rows, 1)
        plan.inputs = {MAP_INDEX: np.where(apply, np.arange(rows), -1).astype(np.int32),
                       JITTER: np.broadcast_to(draws, (rows, 2)).astype(np.int32)}
        return plan

    search_draws = "jitter"

    def search_kwargs(self, draws):
        return dict(method="max_window", size=self.size, stride=self.stride, jitter=self.jitter)

    def graph(self, g, u8, mirror, nodes):
        sal = g.saliency(u8, mirror)
        boxes = mixing.max_window(sal, self.size, self.stride, g.on(nodes[JITTER]), nodes[MAP_INDEX],
                                  jitter=self.jitter, device=g.device)
        return g.normalize(u8, boxes, mirror=mirror, fill=self.fill_value), boxes
