"""Random Erasing (Zhong et al. 2020, "Random Erasing Data Augmentation", arXiv 1708.04896) with timm's semantics
and option names (``timm/data/random_erasing.py``, ``RandomErasing``; timm's ``--reprob``, ``--remode``,
``--recount``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dali_ops.mixing import FILL_MODES
from kernels.checks import check_int, check_positive
from pipelines.methods.base import CopyPlan, Fragment, InputSpec, Method

BOXES = InputSpec("boxes", np.int32, (-1, 4), whole=-1)
#: the row's seed of the "rand" / "pixel" noise (normalize_occlude's ``noise_seed``)
SEED = InputSpec("noise_seed", np.int32, ())
#: timm's erase attempts per box
ATTEMPTS = 10
#: timm's fill modes


@dataclass(frozen=True)
class RandomErasing(Method):
    """timm's ``RandomErasing(probability, min_area, max_area, min_aspect, max_aspect, mode, min_count,
    max_count)`` on the normalised image, per row:

    * ``p`` (timm's ``probability``, default 0.5): the row is erased at all (the base class's gate);
    * a count uniform in ``[min_count, max_count]`` (``max_count=None``: ``min_count``), then per box up to
      10 attempts: area share ``U(min_area, max_area) / count``, aspect ``exp(U(log min_aspect, log
      max_aspect))`` (``max_aspect=None``: ``1 / min_aspect``), ``h = int(round(sqrt(area * aspect)))``,
      ``w = int(round(sqrt(area / aspect)))``, accepted when ``w < W and h < H``, then ``top`` and ``left``
      uniform over the positions inside the image; a box with no accepted attempt is skipped;
    * ``mode``: the fill, in normalised units -- ``"const"`` 0 (the dataset mean), ``"rand"`` one standard
      normal value per box and channel, ``"pixel"`` one per channel and pixel (timm's ``_get_pixels``). The
      noise comes from the row's seed, drawn here with the boxes, through ``fn.occlusion.normalize_occlude``
      (the same bits on the CPU and the GPU). Where boxes overlap, the later box's ``"rand"`` value shows, as
      timm paints them one after the other.

    ``mode`` is the fill mode (timm's name), not the base class's sampling mode: timm erases per image only.
    ``lam`` is 1 (the label is kept); ``meta["boxes"]`` holds the boxes, ``(max_count, 4)`` per row, -1 padded.
    """

    name = "random_erasing"
    modes = FILL_MODES

    p: float = 0.5
    mode: str = "const"
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    max_aspect: float | None = None
    min_count: int = 1
    max_count: int | None = None

    def check(self):
        check_positive("min_area", self.min_area)
        check_positive("max_area", self.max_area)
        if not self.min_area <= self.max_area <= 1:
            raise ValueError(f"min_area <= max_area <= 1 is needed, got min_area={self.min_area!r}, "
                             f"max_area={self.max_area!r}")
        check_positive("min_aspect", self.min_aspect)
        if self.max_aspect is not None:
            check_positive("max_aspect", self.max_aspect)
        check_int("min_count", self.min_count)
        if self.max_count is not None:
            check_int("max_count", self.max_count, lo=self.min_count)

    def per_batch(self) -> bool:
        return False

    @property
    def inputs(self) -> tuple:
        """The boxes, and for the noise fills the rows' seeds (a constant fill reads none)."""
        return (BOXES,) if self.mode == "const" else (BOXES, SEED)

    @property
    def counts(self) -> tuple[int, int]:
        return self.min_count, self.max_count or self.min_count

    @property
    def log_aspect(self) -> tuple[float, float]:
        return math.log(self.min_aspect), math.log(self.max_aspect or 1 / self.min_aspect)

    def draw(self, rng, rows, size):
        lo, hi = self.counts
        count = rng.integers(lo, hi + 1, rows) if hi > lo else np.full(rows, lo)
        boxes = np.full((rows, hi, 4), -1, np.int32)
        area = size * size
        for k in range(hi):
            pending = k < count
            for _ in range(ATTEMPTS):  # every row draws each attempt: the stream does not depend on the outcome
                target = rng.uniform(self.min_area, self.max_area, rows) * area / count
                aspect = np.exp(rng.uniform(*self.log_aspect, rows))
                h = np.rint(np.sqrt(target * aspect)).astype(np.int64)  # Python's round(): half to even
                w = np.rint(np.sqrt(target / aspect)).astype(np.int64)
                top = rng.integers(0, np.maximum(size - h, 0) + 1)
                left = rng.integers(0, np.maximum(size - w, 0) + 1)
                ok = pending & (w < size) & (h < size)
                boxes[ok, k] = np.stack([top, left, top + h, left + w], -1)[ok]
                pending &= ~ok
        # drawn in every mode, so that a seed gives the same boxes whatever the fill
        seeds = rng.integers(-2 ** 31, 2 ** 31, rows, dtype=np.int64).astype(np.int32)
        inputs = {BOXES: boxes, SEED: seeds} if self.mode != "const" else {BOXES: boxes}
        return CopyPlan(boxes, np.ones(rows, np.float32), np.full(rows, -1, np.int32), inputs)

    def graph(self, g, u8, mirror, nodes):
        noise = {} if self.mode == "const" else {"fill_mode": self.mode, "noise_seed": nodes[SEED]}
        return Fragment(g.normalize(u8, g.on(nodes[BOXES]), mirror=mirror, fill=0.0, **noise))
