"""Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with Cutout",
arXiv 1708.04552; reference ``uoguelph-mlrg/Cutout`` ``util/cutout.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.boxes import cutout_boxes
from pipelines.checks import check_int
from pipelines.methods.base import CopyPlan, Erasing, InputSpec, Method


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
    inputs = (InputSpec("boxes", np.int32, (-1, 4)),)

    holes: int = 1
    size: int = 56

    def check(self):
        check_int("holes", self.holes)
        check_int("size", self.size)

    def plan(self, rng, rows, size, p_keep_image):
        boxes = cutout_boxes(rng, 1 if self.per_batch() else rows, size, size, self.holes, self.size)
        return erase_plan(self, rng, rows, p_keep_image, boxes)

    def graph(self, g, u8, mirror, nodes):
        return g.normalize(u8, g.on(nodes[self.inputs[0]]), mirror=mirror, fill=self.fill_value), None


def erase_plan(method: Method, rng, rows: int, p_keep_image: float, boxes: np.ndarray) -> CopyPlan:
    """The plan of an erasing method from its drawn boxes ((1, K, 4) in ``mode="batch"``): rows not
    augmented get no box; ``lam`` stays 1, no partner."""
    apply = method.applied(rng, rows, p_keep_image)
    boxes = np.repeat(boxes, rows, axis=0) if boxes.shape[0] != rows else boxes
    boxes[~apply] = -1
    plan = CopyPlan.whole(rows, boxes.shape[1])
    plan.boxes = boxes
    plan.inputs[method.inputs[0]] = boxes
    return plan
