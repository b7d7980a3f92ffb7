"""Per-batch augmentation parameters, drawn on the host from a seeded generator.

Following kornia's split of parameter generation from application (STYLE.md), every random choice
of a batch (crop window, flip, occlusion boxes, which rows and copies are occluded) is drawn here
from ``numpy.random.default_rng((seed, epoch, batch_index, shard_id))``. The DALI graph only applies
them, so a batch is a pure function of that key: workers may run in any order, a resumed run
reproduces the rest of an epoch exactly, and every parameter is recorded in ``meta``.

Copies (Fong & Vedaldi 2019, "Occlusions for effective data augmentation in image classification";
batch augmentation of Hoffer et al. 2020):

* ``copy_mode="joint"``: the M copies share one crop and flip (one ROI decode), each copy gets its
  own occlusion draw;
* ``copy_mode="batch_aug"``: the image is decoded once and each copy gets its own crop, flip and
  occlusion (``eladhoffer/convNet.pytorch`` ``multi_transform``);
* ``p_keep_image``: each (row, copy) is left unoccluded with this probability.

``mode="elem"`` draws boxes and the apply decision per row (the papers); ``mode="batch"`` draws one
box set and one apply decision per batch and copy (the reference codes).

Mixing methods (per copy: the partner is a row of the same copy, so its pixels carry that row's crop
and flip):

* ``cutmix`` (Yun et al. 2019, Algorithm A1; clovaai/CutMix-PyTorch ``train.py``): partner =
  ``rng.permutation(B)`` per copy (self-pairs allowed, as ``torch.randperm``), ``lam ~ Beta(alpha, alpha)``
  and the box from :func:`kernels.mix.cutmix_box`; ``lam`` corrected to the exact kept area
  (:func:`kernels.apply.lam_from_boxes`). ``mode="batch"``: one lambda and box per batch and copy (clovaai).
* Saliency-guided methods -- boxes are searched *inside the graph* on a saliency map (so they are not
  known here); this module draws only their random inputs: ``saliencymix`` (partner permutation and
  CutMix cut sizes; ``mode="batch"``: one cut for the batch and the saliency map of the first permuted
  image for every row, as the official code), ``saliency_occlusion`` (Fong & Vedaldi: jitter ``(dy, dx)``
  in ``[-jitter, jitter]``), ``keep_cutout`` / ``keep_paste`` (KeepAugment: ``max_tries`` candidate
  centres). ``mode="batch"`` shares those draws across the batch; the search still runs on each row's map.
  ``apply`` (B, M) says which (row, copy) is occluded; ``sal_source`` (B, M) is the row whose map each
  (row, copy) searches (its own, SaliencyMix's partner or the batch's source), -1 where not occluded;
  ``boxes`` is left -1 for the graph to fill.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kernels.apply import lam_from_boxes
from kernels.crops import center_crop_window, random_resized_crop
from kernels.cutout import cutout_boxes, hide_and_seek_boxes
from kernels.mix import cutmix_box

METHODS = ("none", "cutout", "hide_and_seek", "cutmix", "saliencymix", "attentive_cutmix", "saliency_occlusion",
           "keep_cutout", "keep_paste")
#: Methods whose boxes are searched in the graph on a saliency map (reader sends only random inputs).
SALIENCY_METHODS = ("saliencymix", "saliency_occlusion", "keep_cutout", "keep_paste")
#: Methods that paste a partner's pixels (lam < 1, partner >= 0 on the occluded rows).
MIXING_METHODS = ("cutmix", "saliencymix")
MODES = ("elem", "batch")
COPY_MODES = ("joint", "batch_aug")
#: DALI's ``nvidia.dali.auto_aug`` policies the graph can run on the uint8 crop before normalisation.
AUTO_AUGMENTS = ("rand_augment", "auto_augment")


def _probability(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= value <= 1.0 \
            or math.isnan(value):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class AugmentConfig:
    """What to draw for each batch. Defaults are the ImageNet settings of the papers.

    Cutout: ``holes=1, size=56`` (Fong & Vedaldi's S=56 at 224 px; DeVries & Taylor used one
    16 px square on 32 px CIFAR images). Hide-and-Seek: ``patch_sizes=(0, 16, 32, 44, 56)``
    (the reference's choices at 224 px), ``p_keep_patch=0.5``. ``auto_augment``: DALI's RandAugment
    (n=2, m=9) or AutoAugment (ImageNet policy) on the uint8 crop, before the method; ``keep_paste``
    defaults to RandAugment, the policy its region is pasted back into.
    """

    method: str = "none"
    train: bool = True
    output_size: int = 224
    copies: int = 1
    copy_mode: str = "joint"
    p: float = 1.0
    p_keep_image: float = 0.0
    mode: str = "elem"
    holes: int = 1
    size: int = 56
    patch_sizes: tuple = (0, 16, 32, 44, 56)
    p_keep_patch: float = 0.5
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: float = 0.5
    val_resize: int = 256
    alpha: float = 1.0
    stride: int = 1
    jitter: int = 16
    keep_tau: float = 0.6
    max_tries: int = 32
    auto_augment: str | None = None

    def __post_init__(self):
        if self.method == "keep_paste" and self.auto_augment is None:
            # selective-paste is defined around an augmentation policy (Gong et al.: RandAugment / AutoAugment)
            object.__setattr__(self, "auto_augment", "rand_augment")
        if self.auto_augment is not None and self.auto_augment not in AUTO_AUGMENTS:
            raise ValueError(f"auto_augment must be None or one of {AUTO_AUGMENTS}, got {self.auto_augment!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.copy_mode not in COPY_MODES:
            raise ValueError(f"copy_mode must be one of {COPY_MODES}, got {self.copy_mode!r}")
        _positive_int("copies", self.copies)
        _positive_int("output_size", self.output_size)
        _positive_int("holes", self.holes)
        _positive_int("size", self.size)
        _positive_int("stride", self.stride)
        _positive_int("max_tries", self.max_tries)
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, np.integer)) or self.jitter < 0:
            raise ValueError(f"jitter must be an integer >= 0 (pixels), got {self.jitter!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float, np.integer, np.floating)) or not math.isfinite(self.alpha) \
                or self.alpha <= 0:
            raise ValueError(f"alpha must be a finite number > 0 (Beta(alpha, alpha)), got {self.alpha!r}")
        _probability("keep_tau", self.keep_tau)
        if self.method == "saliency_occlusion" and self.size > self.output_size:
            raise ValueError(f"size (the S x S window) must be <= output_size={self.output_size}, got {self.size}")
        if self.method in ("keep_cutout", "keep_paste") and self.size < 2:
            raise ValueError(f"size (the KeepAugment region side) must be >= 2, got {self.size}")
        for name in ("p", "p_keep_image", "p_keep_patch", "flip_p"):
            _probability(name, getattr(self, name))
        if not self.patch_sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0
                                       for s in self.patch_sizes):
            raise ValueError(f"patch_sizes must be a non-empty tuple of integers >= 0, got {self.patch_sizes!r}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.scale!r}")
        if len(self.ratio) != 2 or not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must be (lo, hi) with 0 < lo <= hi, got {self.ratio!r}")


def batch_rng(seed: int, epoch: int, batch_index: int, shard_id: int) -> np.random.Generator:
    """The generator of one batch: a pure function of its key, independent of worker order."""
    return np.random.default_rng([seed, epoch, batch_index, shard_id])


def plan_batch(cfg: AugmentConfig, rng: np.random.Generator, heights, widths) -> dict:
    """Draw every parameter of one batch of images of the given (oriented) sizes.

    Returns arrays indexed ``[row, copy]``: ``crop`` (B, M, 4) ``(y0, x0, h, w)`` in source pixels,
    ``flip`` (B, M) int32, ``boxes`` (B, M, K, 4) occlusion boxes in output pixels (-1 padded),
    ``lam`` (B, M) float32 share of the row's own label, ``partner`` (B, M) int32 source row or -1.
    """
    heights = np.asarray(heights)
    widths = np.asarray(widths)
    b, m, s = heights.size, cfg.copies, cfg.output_size
    if not cfg.train:
        crop = np.repeat(center_crop_window(heights, widths, cfg.val_resize, s)[:, None], m, axis=1)
        return _finish(crop, np.zeros((b, m), np.int32), np.full((b, m, 0, 4), -1, np.int32))

    if cfg.copy_mode == "joint":
        crop = np.repeat(random_resized_crop(rng, heights, widths, cfg.scale, cfg.ratio)[:, None], m, axis=1)
        flip = np.repeat((rng.random(b) < cfg.flip_p)[:, None], m, axis=1)
    else:
        crop = np.stack([random_resized_crop(rng, heights, widths, cfg.scale, cfg.ratio)
                         for _ in range(m)], axis=1)
        flip = rng.random((b, m)) < cfg.flip_p

    if cfg.method in MIXING_METHODS or cfg.method in SALIENCY_METHODS:
        return _plan_searched(cfg, rng, crop, flip.astype(np.int32), b, m, s)

    per_copy = []
    for _ in range(m):
        n = b if cfg.mode == "elem" else 1
        if cfg.method == "cutout":
            boxes = cutout_boxes(rng, n, s, s, cfg.holes, cfg.size)
        elif cfg.method == "hide_and_seek":
            boxes = hide_and_seek_boxes(rng, n, s, s, cfg.patch_sizes, cfg.p_keep_patch)
        else:
            boxes = np.full((n, 0, 4), -1, np.int32)
        apply = _apply_draw(cfg, rng, b)
        if cfg.mode == "batch":
            boxes = np.repeat(boxes, b, axis=0)
        boxes[~apply] = -1
        per_copy.append(boxes)
    k = max(x.shape[1] for x in per_copy)
    boxes = np.full((b, m, k, 4), -1, np.int32)
    for c, x in enumerate(per_copy):
        boxes[:, c, :x.shape[1]] = x
    return _finish(crop, flip.astype(np.int32), boxes)


def _apply_draw(cfg: AugmentConfig, rng: np.random.Generator, b: int) -> np.ndarray:
    """(B,) bool: row occluded. ``p`` per row ("elem") or per batch ("batch"), then ``p_keep_image`` per row."""
    apply = rng.random(b if cfg.mode == "elem" else 1) < cfg.p
    if cfg.mode == "batch":
        apply = np.repeat(apply, b)
    return apply & (rng.random(b) >= cfg.p_keep_image)


def _plan_searched(cfg: AugmentConfig, rng: np.random.Generator, crop, flip, b: int, m: int, s: int) -> dict:
    """Parameters of the mixing and saliency-guided methods, per copy (see the module docstring).

    Draw order per copy: partner permutation (mixing methods), the method's draws, then the apply
    draws of :func:`_apply_draw`.
    """
    out = _finish(crop, flip, np.full((b, m, 1, 4), -1, np.int32))
    apply_all = np.zeros((b, m), bool)
    sal_source = np.tile(np.arange(b, dtype=np.int32)[:, None], (1, m))
    cut = np.zeros((b, m, 2), np.int32)
    jitter = np.zeros((b, m, 2), np.int32)
    tries = np.zeros((b, m, cfg.max_tries if cfg.method in ("keep_cutout", "keep_paste") else 1, 2), np.int32)
    n = b if cfg.mode == "elem" else None
    for c in range(m):
        perm = rng.permutation(b).astype(np.int32) if cfg.method in MIXING_METHODS else None
        if cfg.method == "cutmix":
            boxes, lam = cutmix_box(rng, s, s, cfg.alpha, n=n)
            out["boxes"][:, c, 0] = boxes
        elif cfg.method == "saliencymix":
            lam = rng.beta(cfg.alpha, cfg.alpha, size=n)
            rat = np.sqrt(1.0 - np.asarray(lam, np.float64))
            cut[:, c] = np.stack([(s * rat).astype(np.int64), (s * rat).astype(np.int64)], -1)
            # Official code: the map of input[rand_index[0]] decides the box of the whole batch.
            sal_source[:, c] = perm if cfg.mode == "elem" else perm[0]
        elif cfg.method == "saliency_occlusion":
            jitter[:, c] = rng.integers(-cfg.jitter, cfg.jitter + 1, size=(b if n else 1, 2))
        else:  # keep_cutout, keep_paste: candidate centres (cy, cx), as kernels.search.selective_cut draws them
            cy = rng.integers(0, s, size=(b if n else 1, cfg.max_tries))
            cx = rng.integers(0, s, size=(b if n else 1, cfg.max_tries))
            tries[:, c] = np.stack([cy, cx], -1)
        apply = _apply_draw(cfg, rng, b)
        apply_all[:, c] = apply
        sal_source[~apply, c] = -1  # the search gives these rows no box
        if perm is not None:
            out["partner"][:, c] = np.where(apply, perm, -1)
        out["boxes"][~apply, c] = -1
    if cfg.method == "cutmix":
        for c in range(m):
            out["lam"][:, c] = lam_from_boxes(out["boxes"][:, c], s, s, out["partner"][:, c])
    out.update(apply=apply_all.astype(np.int32), sal_source=sal_source, cut=cut, jitter=jitter, tries=tries)
    return out


def _finish(crop, flip, boxes) -> dict:
    b, m = flip.shape
    # Erasing methods keep the row's own label whole (lam = 1) and take nothing from a partner.
    return {"crop": crop.astype(np.int32), "flip": flip, "boxes": boxes,
            "lam": np.ones((b, m), np.float32), "partner": np.full((b, m), -1, np.int32)}
