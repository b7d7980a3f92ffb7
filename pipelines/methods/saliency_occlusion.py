"""Fong & Vedaldi's saliency occlusion (Fong & Vedaldi 2019, "Occlusions for Effective Data Augmentation
in Image Classification", arXiv 1910.10651)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dali_ops import mixing
from kernels.checks import check_int
from pipelines.methods.base import CopyPlan, Erasing, InputSpec
from pipelines.methods.saliency_guided import SaliencyGuided

MAP_INDEX = InputSpec("map_index", np.int32, whole=-1)
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

    def draw(self, rng, rows, size):
        draws = rng.integers(0, 2 ** 31 - 1, size=(1 if self.per_batch() else rows, 2))
        return CopyPlan.whole(rows, 1, {MAP_INDEX: np.arange(rows, dtype=np.int32),
                                        JITTER: np.broadcast_to(draws, (rows, 2)).astype(np.int32)})

    search_draws = "jitter"

    def search_kwargs(self, draws, size):
        return dict(method="max_window", size=self.size, stride=self.stride, jitter=self.jitter)

    def search(self, g, sal, nodes):
        return mixing.max_window(sal, self.size, self.stride, g.on(nodes[JITTER]), nodes[MAP_INDEX],
                                 jitter=self.jitter, device=g.device)

    def apply(self, g, u8, mirror, nodes, boxes):
        return g.normalize(u8, boxes, mirror=mirror, fill=self.fill_value)
