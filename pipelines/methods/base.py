"""What a method is: its options, its host-side draws, its DALI graph fragment and its training-side step.

Modelled on kornia's augmentation package (STYLE.md): a method's options are a frozen dataclass
validated on construction; :meth:`Method.plan` draws every random parameter of one copy of a batch on
the host from the batch's generator (a pure function of ``(seed, epoch, batch, shard)``), and
:meth:`Method.graph` only applies them, so a batch can be replayed and every parameter is recorded in
``meta``. The loader, the reader and the graph call these hooks and never test a method's name.

The draws of one copy come back as a :class:`CopyPlan`: the boxes, ``lam`` (share of the row's own
label) and partner (a row of the same copy, or -1) that ``meta`` reports, plus the arrays the graph
fragment needs, keyed by the :class:`InputSpec` the method declares in :attr:`Method.inputs`: the
reader sends exactly those, and the graph hands the fragment exactly those nodes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

MODES = ("elem", "batch")
#: torchvision's ImageNet mean / std, the graph's normalisation (an erased pixel's ``fill`` is in its units)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """One per-copy input of a method's graph fragment: a ``(B, *shape)`` array of ``dtype`` per batch."""

    name: str
    dtype: type = np.int32
    shape: tuple = ()


@dataclass
class CopyPlan:
    """The draws of one copy of a batch of ``B`` rows.

    ``boxes`` (B, K, 4) int32 in output pixels (-1 padded; left -1 where the graph searches them),
    ``lam`` (B,) float32, ``partner`` (B,) int32 (a row of the same copy, -1 for none), ``inputs``
    the graph fragment's arrays keyed by :class:`InputSpec`."""

    boxes: np.ndarray
    lam: np.ndarray
    partner: np.ndarray
    inputs: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def whole(cls, rows: int, k: int = 0) -> "CopyPlan":
        """Every row left whole: no box, ``lam = 1``, no partner."""
        return cls(np.full((rows, k, 4), -1, np.int32), np.ones(rows, np.float32), np.full(rows, -1, np.int32))


def check_probability(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Method:
    """Base of every method. ``p``: probability that a row (``mode="elem"``) or a whole batch and copy
    (``mode="batch"``, the reference codes' one draw per batch) is augmented.

    Class attributes a method sets:

    * ``name`` -- the registry name (``OcclusionLoader(method=name)``);
    * ``inputs`` -- the :class:`InputSpec` of each per-copy array its graph fragment reads (empty: the
      graph only normalises, the method acts on the training side or not at all);
    * ``searched`` -- the fragment searches the boxes in the graph and returns them (``meta["boxes"]``
      and ``lam`` then come from the graph's boxes, the exact kept area);
    * ``policy_inside`` -- the fragment runs the ``auto_augment`` policy itself (KeepAugment's
      selective-paste pastes around it); for every other method the graph runs it before the fragment.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple] = ()
    searched: ClassVar[bool] = False
    policy_inside: ClassVar[bool] = False
    modes: ClassVar[tuple] = MODES

    p: float = 1.0
    mode: str = "elem"

    def __post_init__(self):
        object.__setattr__(self, "p", check_probability("p", self.p))
        check_choice("mode", self.mode, self.modes)
        self.check()

    def check(self) -> None:
        """Validate the method's own options (raise ``ValueError`` naming the option)."""

    def check_output_size(self, size: int) -> None:
        """Validate the options against the output side (e.g. a window must fit)."""

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @property
    def default_policy(self) -> str | None:
        """The ``auto_augment`` policy the method implies when the loader is given none."""
        return None

    # -- host-side draws ------------------------------------------------------------------------
    def plan(self, rng: np.random.Generator, rows: int, size: int, p_keep_image: float) -> CopyPlan:
        """The draws of one copy (``rows`` samples, ``size`` x ``size`` output, each row left whole
        with probability ``p_keep_image``)."""
        self.applied(rng, rows, p_keep_image)  # keeps the stream aligned with the methods that draw
        return CopyPlan.whole(rows)

    def applied(self, rng: np.random.Generator, rows: int, p_keep_image: float) -> np.ndarray:
        """(B,) bool, the rows augmented: ``p`` per row (``"elem"``) or per batch (``"batch"``), then
        each row kept whole with probability ``p_keep_image`` (Fong & Vedaldi's copies)."""
        apply = rng.random(rows if self.mode == "elem" else 1) < self.p
        if self.mode != "elem":
            apply = np.repeat(apply, rows)
        return apply & (rng.random(rows) >= p_keep_image)

    def per_batch(self) -> bool:
        """One draw shared by the batch (the reference codes) instead of one per row."""
        return self.mode == "batch"

    # -- graph ----------------------------------------------------------------------------------
    def graph(self, g, u8, mirror, nodes: dict):
        """The fragment of one copy: ``(normalised CHW image, searched boxes or None)``.

        ``g`` is the graph's context (:class:`pipelines.graph.GraphContext`: device, normalisation,
        shared saliency), ``u8`` the HWC uint8 crop, ``mirror`` the row's flip, ``nodes`` the arrays of
        :attr:`inputs` as DALI CPU nodes keyed by their :class:`InputSpec`."""
        return g.normalize(u8, mirror=mirror), None

    # -- training side --------------------------------------------------------------------------
    @property
    def deferred(self) -> bool:
        """The method's search and apply run on the training side with the model's saliency
        (``saliency="model"``): the graph only normalises the copy's rows and outputs the method's
        :attr:`inputs` (its host draws), and ``loader.occlude(batch, maps)`` calls :meth:`occlude`."""
        return False

    @property
    def reads_bank(self) -> bool:
        """The method's searches read the saliency bank (``saliency="bank"``): the reader hands each crop's
        map from the bank to the graph, and ``loader.feedback(batch, maps)`` fills it."""
        return False

    #: with ``deferred``: the graph also outputs each copy's rows as they were before the method's own
    #: policy (``meta["source_images"]``), the image the saliency describes and the paste source
    #: (KeepAugment's selective-paste)
    source_output: ClassVar[bool] = False

    def deferred_graph(self, g, u8, mirror):
        """The fragment of a deferred copy: ``(the row's image, its source image or None)``."""
        return g.normalize(u8, mirror=mirror), None

    def occlude(self, images, maps, draws: dict, sources=None) -> tuple:
        """The training-side search + apply of one copy (see :class:`pipelines.methods.saliency.SaliencyGuided`)."""
        raise NotImplementedError(f"{self.name} has no training-side occlusion")

    train_step = None
    """``train_step(batch, rng) -> Batch`` for a method that needs the training side (a model), else None."""

    def __str__(self):
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default]
        return self.name + (":" + ",".join(changed) if changed else "")


def fill_values(fill) -> list[float]:
    """Per-channel fill in normalised units: ``"mean"`` -> 0, or a pixel value (scalar or RGB) in [0, 255]."""
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"fill must be 'mean' or a pixel value in [0, 255] (scalar or 3 values), got {fill!r}")
        return [0.0, 0.0, 0.0]
    try:
        values = [float(fill)] * 3 if np.ndim(fill) == 0 else [float(v) for v in fill]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3 or not all(0.0 <= v <= 255.0 for v in values):
        raise ValueError(f"fill must be 'mean' or a pixel value in [0, 255] (scalar or 3 values), got {fill!r}")
    return [(v / 255.0 - m) / s for v, m, s in zip(values, IMAGENET_MEAN, IMAGENET_STD)]


@dataclass(frozen=True)
class Erasing(Method):
    """A method that erases its boxes. ``fill``: ``"mean"`` (0 after normalisation: Cutout's and
    Hide-and-Seek's reference codes and Fong & Vedaldi erase after ``Normalize``, i.e. with the dataset mean)
    or a pixel value (scalar or RGB) in [0, 255]."""

    fill: object = "mean"

    def __post_init__(self):
        fill_values(self.fill)
        if not isinstance(self.fill, str) and np.ndim(self.fill) == 1:  # a list or array: hashable, as the options
            object.__setattr__(self, "fill", tuple(float(v) for v in self.fill))
        super().__post_init__()

    @property
    def fill_value(self) -> list[float]:
        """``fill`` per channel in normalised units (what the graph's erase writes)."""
        return fill_values(self.fill)
