"""Per-batch parameters, drawn on the host from a seeded generator.

Following kornia's split of parameter generation from application (``kornia/augmentation``), every random choice of a
batch (crop window, flip, the method's draws, which rows and copies are augmented) is drawn here from
``numpy.random.default_rng((seed, epoch, batch_index, shard_id))``. The DALI graph only applies them, so a
batch is a pure function of that key: workers may run in any order, a resumed run reproduces the rest of
an epoch exactly, and every parameter is recorded in ``meta``.

Copies (Fong & Vedaldi 2019, "Occlusions for effective data augmentation in image classification",
arXiv 1910.10651; batch augmentation of Hoffer et al. 2020, arXiv 1901.09335):

* ``copy_mode="joint"``: the M copies share one crop and flip (one ROI decode), each copy gets its own
  draw of the method;
* ``copy_mode="batch_aug"``: the image is decoded once and each copy gets its own crop, flip and draw
  (``eladhoffer/convNet.pytorch`` ``multi_transform``);
* ``p_keep_image``: each row of a copy is left whole with this probability -- one float for every copy,
  or one per copy: Fong & Vedaldi's joint training is ``copies=2, p_keep_image=(1.0, 0.0)``, one copy
  always clean and one always occluded (their Figure 1).

The method's own draws are :meth:`pipelines.methods.base.Method.plan`, per copy, after the crops and flips.
ColorJitter and PCA Lighting (clovaai's ImageNet pipeline, :mod:`kernels.color`) are drawn last, per crop (joint
copies share theirs), so that the other draws do not depend on them; the graph applies them in the normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.checks import check_choice, check_int, check_probability
from kernels.color import color_params, draw_color
from kernels.crops import center_crop_window, random_resized_crop
from pipelines.loader.policy import parse_policy
from pipelines.methods import Method, get_method

COPY_MODES = ("joint", "batch_aug")
#: torchvision's ``RandomResizedCrop`` defaults (area share and aspect ratio) and flip probability
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
FLIP_P = 0.5
#: the validation transform: shorter side resized to this, then the centre crop of the output size
VAL_RESIZE = 256


@dataclass(frozen=True)
class AugmentConfig:
    """What to draw for each batch: the method plus the crop, flip and copies around it.

    ``auto_augment``: a policy of :mod:`pipelines.loader.policy` (DALI's RandAugment / AutoAugment, or a timm
    string such as ``"rand-m9-mstd0.5-inc1"``) on the uint8 crop after the flip (timm's order), before the method;
    a method that needs a policy (KeepAugment's selective-paste) brings its own default.

    ``color_jitter`` (one strength for brightness, contrast and saturation, or three) and ``lighting`` (the PCA
    noise's ``alphastd``): clovaai's ImageNet ColorJitter(0.4, 0.4, 0.4) and Lighting(0.1)
    (:mod:`kernels.color`), 0 = off; drawn per crop here, applied in the graph's normalisation.
    """

    method: Method
    train: bool = True
    output_size: int = 224
    copies: int = 1
    copy_mode: str = "joint"
    p_keep_image: object = 0.0
    auto_augment: object = None
    color_jitter: object = 0.0
    lighting: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "method", get_method(self.method))
        check_int("copies", self.copies)
        check_int("output_size", self.output_size)
        check_choice("copy_mode", self.copy_mode, COPY_MODES)
        keep = self.p_keep_image
        keep = tuple(keep) if isinstance(keep, (tuple, list, np.ndarray)) else (keep,) * self.copies
        if len(keep) != self.copies:
            raise ValueError(f"p_keep_image must be one probability or one per copy ({self.copies}), got "
                             f"{self.p_keep_image!r}")
        object.__setattr__(self, "p_keep_image", tuple(check_probability("p_keep_image", v) for v in keep))
        policy = parse_policy(self.auto_augment)
        implied = parse_policy(self.method.default_policy)
        if implied is not None and policy is not None and policy != implied:
            raise ValueError(f"auto_augment={str(policy)!r} contradicts the policy of {self.method} ({implied}); "
                             f"set it as the method's option")
        object.__setattr__(self, "auto_augment", None if (policy or implied) is None else str(policy or implied))
        jitter = self.color_jitter
        jitter = tuple(jitter) if isinstance(jitter, (tuple, list, np.ndarray)) else (jitter,) * 3
        if len(jitter) != 3 or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in jitter):
            raise ValueError(f"color_jitter must be one strength in [0, 1) or three (brightness, contrast, "
                             f"saturation), got {self.color_jitter!r}")
        object.__setattr__(self, "color_jitter", tuple(float(v) for v in jitter))
        if not isinstance(self.lighting, (int, float)) or not 0 <= self.lighting < 1:
            raise ValueError(f"lighting must be the PCA noise's standard deviation in [0, 1), got {self.lighting!r}")
        self.method.check_output_size(self.output_size)

    @property
    def policy(self):
        """``auto_augment`` parsed (:class:`pipelines.loader.policy.Policy`, or None)."""
        return parse_policy(self.auto_augment)

    @property
    def colored(self) -> bool:
        """The graph applies a colour transform (ColorJitter or Lighting) to the training crops."""
        return self.train and (any(self.color_jitter) or self.lighting > 0)


#: clovaai/CutMix-PyTorch's ImageNet colour augmentation: ColorJitter(0.4, 0.4, 0.4) and Lighting(alphastd=0.1)
CLOVAAI_COLOR = {"jitter": 0.4, "lighting": 0.1}


def color_options(color) -> dict:
    """The loader's ``color`` as :class:`AugmentConfig` fields: ``None`` (off), ``"clovaai"``
    (:data:`CLOVAAI_COLOR`) or a dict with ``jitter`` (one strength or three) and ``lighting``."""
    if color is None:
        return {}
    if color == "clovaai":
        color = CLOVAAI_COLOR
    if not isinstance(color, dict) or not set(color) <= {"jitter", "lighting"}:
        raise ValueError(f"color must be None, 'clovaai' or a dict with 'jitter' (one strength or three) and "
                         f"'lighting' (the PCA noise's alphastd), got {color!r}")
    return {"color_jitter": color.get("jitter", 0.0), "lighting": color.get("lighting", 0.0)}


def batch_rng(seed: int, epoch: int, batch_index: int, shard_id: int) -> np.random.Generator:
    """The generator of one batch: a pure function of its key, independent of worker order."""
    return np.random.default_rng([seed, epoch, batch_index, shard_id])


def plan_batch(cfg: AugmentConfig, rng: np.random.Generator, heights, widths) -> dict:
    """Draw every parameter of one batch of images of the given (oriented) sizes.

    Returns arrays indexed ``[row, copy]``: ``crop`` (B, M, 4) ``(y0, x0, h, w)`` in source pixels,
    ``flip`` (B, M) int32, ``boxes`` (B, M, K, 4) in output pixels (-1 padded), ``lam`` (B, M) float32
    share of the row's own label, ``partner`` (B, M) int32 source row or -1, and ``inputs``: per copy the
    method's graph inputs (``{InputSpec: (B, ...) array}``, empty on validation); with a colour transform
    (:attr:`AugmentConfig.colored`) also ``color`` (B, M, 21) float32 (:func:`kernels.color.color_params`).
    """
    heights = np.asarray(heights)
    widths = np.asarray(widths)
    b, m, s = heights.size, cfg.copies, cfg.output_size
    if not cfg.train:
        crop = np.repeat(center_crop_window(heights, widths, VAL_RESIZE, s)[:, None], m, axis=1)
        flip = np.zeros((b, m), np.int32)
        plans = [None] * m
    else:
        if cfg.copy_mode == "joint":
            crop = np.repeat(random_resized_crop(rng, heights, widths, SCALE, RATIO)[:, None], m, axis=1)
            flip = np.repeat((rng.random(b) < FLIP_P)[:, None], m, axis=1)
        else:
            crop = np.stack([random_resized_crop(rng, heights, widths, SCALE, RATIO) for _ in range(m)], axis=1)
            flip = rng.random((b, m)) < FLIP_P
        plans = [cfg.method.plan(rng, b, s, cfg.p_keep_image[c]) for c in range(m)]
    k = max([p.boxes.shape[1] for p in plans if p is not None], default=0)
    boxes = np.full((b, m, k, 4), -1, np.int32)
    lam = np.ones((b, m), np.float32)
    partner = np.full((b, m), -1, np.int32)
    for c, p in enumerate(plans):
        if p is not None:
            boxes[:, c, :p.boxes.shape[1]] = p.boxes
            lam[:, c] = p.lam
            partner[:, c] = p.partner
    out = {"crop": crop.astype(np.int32), "flip": flip.astype(np.int32), "boxes": boxes, "lam": lam,
           "partner": partner, "inputs": [p.inputs if p is not None else {} for p in plans]}
    if cfg.colored:
        crops = 1 if cfg.copy_mode == "joint" else m
        d = draw_color(rng, b * crops, cfg.color_jitter, cfg.lighting)
        params = color_params(d["order"], d["alpha"], d["light"]).reshape(b, crops, -1)
        out["color"] = np.repeat(params, m // crops, axis=1)
    return out
