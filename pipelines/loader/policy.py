"""The ``auto_augment`` policies the graph runs on the uint8 crop: DALI's ``nvidia.dali.auto_aug``, named as the
loader always did (``"rand_augment"``, ``"auto_augment"``) or as timm's ``--aa`` strings (``timm/data/auto_augment.py``:
``rand_augment_transform``, ``auto_augment_transform``), e.g. ``"rand-m9-mstd0.5-inc1"``.

What a timm string maps to, and how exactly (RandAugment, Cubuk et al. 2020, arXiv 1909.13719, as timm implements it):

* exact in distribution: the number of ops ``n`` drawn uniformly with replacement; each op applied with probability
  ``p`` (timm's default 0.5: the suite is padded with identities, ``len(ops) * (1 - p) / p`` of them, so a uniform
  draw picks op ``j`` with probability ``p / len(ops)``; ``p`` must make that count an integer); the magnitude level
  ``m / 10`` (11 bins, timm's ``_LEVEL_DENOM``); the op set of ``inc0`` / ``inc1`` (timm's ``_RAND_TRANSFORMS`` /
  ``_RAND_INCREASING_TRANSFORMS``); each op's level-to-argument rule (rotate 30 degrees, shear 0.3, translate 0.45 of
  the side, each with a random sign; enhance ``1 +- 0.9 level`` or ``0.1 + 1.8 level``; posterize ``4 - int(4 level)``
  or ``int(4 level)`` bits, solarize threshold ``256 - int(256 level)`` or ``int(256 level)``, solarize-add
  ``int(110 level)``);
* not exact: ``mstd`` (timm's per-op Gaussian noise on the magnitude) is not offered by DALI's fixed bins and is
  dropped (:attr:`Policy.notes` says so); the ops are DALI's (bilinear warps filled with 128, where timm picks
  bilinear or bicubic at random and fills with the dataset mean; shear about the centre; equalize as OpenCV's
  histogram rule), not PIL's; ``mmax`` other than 10 and ``t`` (weighted choice) are refused.
* ``"original"`` (timm's AutoAugment ImageNet policy of the paper, Cubuk et al. 2019, arXiv 1805.09501) is DALI's
  ``auto_augment(policy_name="image_net")``: the paper's sub-policies with DALI's ops. timm's other AutoAugment
  variants (``v0``, ``v0r``, ``originalr``, ``3a``) and AugMix are refused.
* ``"rand_augment"`` is DALI's default RandAugment, ``n=2, m=9`` of 31 bins (torchvision's scale, level 0.3), and
  ``"auto_augment"`` DALI's ImageNet AutoAugment: the loader's names before timm strings existed.

The policies' random draws (which op, the signs) come from DALI's seeded generators; a resumed loader restores them
from DALI's checkpoint (:mod:`pipelines.loader.seeding`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: the loader's own names
NAMED = ("rand_augment", "auto_augment")
#: timm's magnitude scale (``_LEVEL_DENOM``): level = m / 10
LEVEL_DENOM = 10
#: timm's RandAugment op sets (``_RAND_TRANSFORMS``, ``_RAND_INCREASING_TRANSFORMS``), as DALI op names
TIMM_OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color",
            "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")


@dataclass(frozen=True)
class Policy:
    """One policy: ``kind`` ``"rand_augment"`` (``n`` ops of magnitude bin ``m`` among ``bins``; ``suite``
    ``"dali"`` or timm's ``"timm"`` / ``"timm_inc"`` ops applied with probability ``p``) or ``"auto_augment"``
    (DALI's ImageNet policy). ``spec`` is the text it was parsed from, ``notes`` what does not map exactly."""

    kind: str
    spec: str
    n: int = 2
    m: int = 9
    bins: int = 31
    suite: str = "dali"
    p: float = 1.0
    notes: tuple = ()

    def __str__(self):
        return self.spec

    def apply(self, u8, size: int):
        """The policy on HWC uint8 images of side ``size`` (a DALI node inside a pipeline with conditionals)."""
        from nvidia.dali.auto_aug import auto_augment, rand_augment

        if self.kind == "auto_augment":
            return auto_augment.auto_augment(u8, policy_name="image_net")
        if self.suite == "dali":
            return rand_augment.rand_augment(u8, n=self.n, m=self.m, num_magnitude_bins=self.bins)
        ops = timm_suite(self.suite == "timm_inc")
        ops += [_identity()] * int(round(len(ops) * (1 - self.p) / self.p))
        return rand_augment.apply_rand_augment(ops, u8, n=self.n, m=self.m, num_magnitude_bins=self.bins,
                                               shape=(size, size), fill_value=128)


def parse_policy(text) -> Policy | None:
    """``None``, a :class:`Policy`, the loader's names (:data:`NAMED`) or a timm string -> a :class:`Policy`
    (``None`` for ``None``); a ``ValueError`` naming what is not offered."""
    if text is None or isinstance(text, Policy):
        return text
    if not isinstance(text, str):
        raise ValueError(f"auto_augment must be None, 'rand_augment', 'auto_augment' or a timm string such as "
                         f"'rand-m9-mstd0.5-inc1', got {text!r}")
    if text == "rand_augment":
        return Policy("rand_augment", text)
    if text == "auto_augment":
        return Policy("auto_augment", text)
    head, *sections = text.split("-")
    if head == "original" and not sections:
        return Policy("auto_augment", text)
    if head != "rand":
        raise ValueError(f"auto_augment={text!r}: offered are 'rand_augment', 'auto_augment', timm's 'original' "
                         f"(AutoAugment's ImageNet policy) and timm's 'rand-...' strings; timm's AutoAugment "
                         f"variants v0 / v0r / originalr / 3a and AugMix have no DALI policy")
    n, m, p, inc, notes = 2, LEVEL_DENOM, 0.5, False, []
    for section in sections:
        key, value = re.match(r"([a-z]*)(.*)", section).groups()
        if key not in ("m", "n", "p", "inc", "mstd", "mmax"):
            raise ValueError(f"auto_augment={text!r}: section {section!r} is not offered (m, n, p, inc, mstd, "
                             f"mmax10 are)")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"auto_augment={text!r}: cannot read the section {section!r}") from None
        if key == "m":
            m = int(number)
        elif key == "n":
            n = int(number)
        elif key == "p":
            p = number
        elif key == "inc":
            inc = bool(int(number))
        elif key == "mstd":
            if number:
                notes.append(f"mstd{value} dropped: DALI's RandAugment has no magnitude noise (every op at m={{m}})")
        elif int(number) != LEVEL_DENOM:  # mmax
            raise ValueError(f"auto_augment={text!r}: section {section!r} is not offered (timm's magnitude bound "
                             f"other than {LEVEL_DENOM}: DALI's bins stop at the top level)")
    if not 0 <= m <= LEVEL_DENOM or n < 1:
        raise ValueError(f"auto_augment={text!r}: m must be in [0, {LEVEL_DENOM}] and n >= 1")
    pads = len(TIMM_OPS) * (1 - p) / p if 0 < p <= 1 else -1.0
    if pads < 0 or abs(pads - round(pads)) > 1e-9:
        raise ValueError(f"auto_augment={text!r}: p={p} needs {pads:g} identity ops beside timm's {len(TIMM_OPS)} "
                         f"(p must make that a whole number: 0.5, 1.0, 0.75, ...)")
    notes = tuple(note.format(m=m) for note in notes)
    return Policy("rand_augment", text, n=n, m=m, bins=LEVEL_DENOM + 1, suite="timm_inc" if inc else "timm", p=p,
                  notes=notes)


# -- timm's RandAugment ops as DALI augmentations (timm/data/auto_augment.py, the *_level_to_arg rules) -------------
def _posterize_mask(bits: int):
    return np.uint8(255 ^ (2 ** (8 - bits) - 1))  # PIL's ImageOps.posterize: keep the top `bits` bits (0: black)


def timm_suite(increasing: bool) -> list:
    """timm's RandAugment ops as DALI ``@augmentation``s whose magnitude is ``level * max`` at bin ``m`` of 11."""
    from nvidia.dali.auto_aug import augmentations as a

    if increasing:
        enhance = [op.augmentation((0, 0.9), True, a.shift_enhance_range) for op in (a.color, a.contrast, a.brightness)]
        sharp = a.sharpness.augmentation((0, 0.9), True, a.sharpness_kernel)
        poster = a.posterize.augmentation((0, 4), False, lambda mag: _posterize_mask(4 - int(mag)))
        solar = a.solarize.augmentation((0, 256), False, lambda mag: np.int32(256 - min(256, int(mag))))
    else:
        enhance = [op.augmentation((0.1, 1.9), False, None) for op in (a.color, a.contrast, a.brightness)]
        sharp = a.sharpness.augmentation((0.1, 1.9), False, a.sharpness_kernel_shifted)
        poster = a.posterize.augmentation((0, 4), False, lambda mag: _posterize_mask(int(mag)))
        solar = a.solarize.augmentation((0, 256), False, lambda mag: np.int32(min(256, int(mag))))
    return [a.auto_contrast, a.equalize, a.invert, a.rotate.augmentation((0, 30), True), poster, solar,
            a.solarize_add.augmentation((0, 110), False, lambda mag: np.uint8(min(128, int(mag)))), *enhance, sharp,
            a.shear_x.augmentation((0, 0.3), True), a.shear_y.augmentation((0, 0.3), True),
            a.translate_x.augmentation((0, 0.45), True), a.translate_y.augmentation((0, 0.45), True)]


def _identity():
    from nvidia.dali.auto_aug import augmentations as a

    return a.identity
