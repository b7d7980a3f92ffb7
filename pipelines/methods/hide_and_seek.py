"""Hide-and-Seek (Singh & Lee 2017, "Hide-and-Seek: Forcing a Network to be Meticulous for Weakly-supervised
Object and Action Localization", arXiv 1704.04232; reference ``kkanshul/Hide-and-Seek`` ``hide_patch.py``)."""
from __future__ import annotations

from dataclasses import dataclass

from kernels.boxes import hide_and_seek_boxes
from kernels.checks import check_int, check_probability
from pipelines.methods.base import Erasing
from pipelines.methods.cutout import BOXES, erase_fragment, erase_plan

#: kkanshul/Hide-and-Seek's patch sides at 224 px (0 = the image is not hidden).
REFERENCE_PATCH_SIZES = (0, 16, 32, 44, 56)
#: Fong & Vedaldi 2019's Hide-and-Seek setting: a fixed 4 x 4 grid of 56 px cells at 224 px.
FONG_VEDALDI_PATCH_SIZES = (56,)


@dataclass(frozen=True)
class HideAndSeek(Erasing):
    """Per image a patch side ``S`` drawn from ``patch_sizes`` (0 = hide nothing), a grid of ``S x S`` cells
    anchored at (0, 0) with the last row/column clipped, each cell hidden with probability
    ``1 - p_keep_patch``; filled after normalisation (the reference's mask multiply, the dataset mean;
    ``fill`` as :class:`~pipelines.methods.base.Erasing`).

    Default ``patch_sizes=(0, 16, 32, 44, 56)``: the reference code's list, i.e. the paper's own method
    (its best ImageNet classification setting mixes the sizes). With it one image in five draws side 0
    and is never hidden. ``patch_sizes=(56,)`` (:data:`FONG_VEDALDI_PATCH_SIZES`) is Fong & Vedaldi's
    setting, a fixed 4 x 4 grid of 56 px at 224 px, which their occlusion-robustness evaluation also uses.
    """

    name = "hide_and_seek"
    inputs = (BOXES,)

    patch_sizes: tuple = REFERENCE_PATCH_SIZES
    p_keep_patch: float = 0.5

    def check(self):
        sizes = self.patch_sizes
        sizes = (sizes,) if not isinstance(sizes, (tuple, list)) else sizes
        if not sizes:
            raise ValueError(f"patch_sizes must be a non-empty tuple of integers >= 0, got {self.patch_sizes!r}")
        object.__setattr__(self, "patch_sizes", tuple(check_int("patch_sizes", s, lo=0) for s in sizes))
        object.__setattr__(self, "p_keep_patch", check_probability("p_keep_patch", self.p_keep_patch))

    def draw(self, rng, rows, size):
        return erase_plan(rows, hide_and_seek_boxes(rng, 1 if self.per_batch() else rows, size, size,
                                                    self.patch_sizes, self.p_keep_patch))

    def graph(self, g, u8, mirror, nodes):
        return erase_fragment(self, g, u8, mirror, nodes)
