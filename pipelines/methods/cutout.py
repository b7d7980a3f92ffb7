"""Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with Cutout",
arXiv 1708.04552; reference ``uoguelph-mlrg/Cutout`` ``util/cutout.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.boxes import cutout_boxes
from kernels.checks import check_int
from pipelines.methods.base import CopyPlan, Erasing, Fragment, InputSpec, Method

BOXES = InputSpec("boxes", np.int32, (-1, 4), whole=-1)


@dataclass(frozen=True)
class Cutout(Erasing):
    """``holes`` squares of side ``size`` erased, centres uniform over the image, boxes clipped at the
    border (the reference's ``np.clip(y -+ length // 2, 0, h)``), filled after normalisation (the
    reference multiplies by a 0-mask after ``Normalize``: the dataset mean; ``fill`` as :class:`Erasing`).

    Defaults: ``holes=1, size=56`` -- Fong & Vedaldi's S = 56 at 224 px (the Cutout paper's ImageNet-scale
    choice is not published; its CIFAR setting is one 16 px square on 32 px images). ``lam`` is 1: the
    row keeps its own label.
    """

    name = "cutout"
    inputs = (BOXES,)

    holes: int = 1
    size: int = 56

    def check(self):
        check_int("holes", self.holes)
        check_int("size", self.size)

    def draw(self, rng, rows, size):
        return erase_plan(rows, cutout_boxes(rng, 1 if self.per_batch() else rows, size, size, self.holes, self.size))

    def graph(self, g, u8, mirror, nodes):
        return erase_fragment(self, g, u8, mirror, nodes)


def erase_plan(rows: int, boxes: np.ndarray) -> CopyPlan:
    """The draws of an erasing method: its boxes ((1, K, 4) in ``mode="batch"``, shared by the rows); ``lam``
    stays 1, no partner."""
    boxes = np.repeat(boxes, rows, axis=0) if boxes.shape[0] != rows else boxes
    return CopyPlan(boxes, np.ones(rows, np.float32), np.full(rows, -1, np.int32), {BOXES: boxes})


def erase_fragment(method: Method, g, u8, mirror, nodes) -> Fragment:
    """Normalise and erase the drawn boxes with the method's ``fill``."""
    return Fragment(g.normalize(u8, g.on(nodes[BOXES]), mirror=mirror, fill=method.fill_value))
