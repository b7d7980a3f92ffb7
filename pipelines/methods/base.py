"""What a method is: its options, its host-side draws, its DALI graph fragment and its training-side step.

Modelled on kornia's augmentation package (``kornia/augmentation``): a method's options are a frozen dataclass
validated on construction; :meth:`Method.draw` draws every random parameter of one copy of a batch on the
host from the batch's generator (a pure function of ``(seed, epoch, batch, shard)``), the base class gates
the rows (``p``, ``mode``, ``p_keep_image``: :meth:`Method.plan`, kornia's ``batch_prob``) and
:meth:`Method.graph` only applies the draws, so a batch can be replayed and every parameter is recorded in
``meta``. The loader, the reader and the graph call these hooks and never test a method's name.

The draws of one copy come back as a :class:`CopyPlan`: the boxes, ``lam`` (share of the row's own
label) and partner (a row of the same copy, or -1) that ``meta`` reports, plus the arrays the graph
fragment needs, keyed by the :class:`InputSpec` the method declares in :attr:`Method.inputs`: the
reader sends exactly those, and the graph hands the fragment exactly those nodes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from kernels.checks import check_choice, check_probability

MODES = ("elem", "batch")
#: torchvision's ImageNet mean / std, the graph's normalisation (an erased pixel's ``fill`` is in its units)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """One per-copy input of a method's graph fragment: a ``(B, *shape)`` array of ``dtype`` per batch.
    ``whole``: its value on a row the gate leaves whole (``None``: the draw stays, unread)."""

    name: str
    dtype: type = np.int32
    shape: tuple = ()
    whole: object = None


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
    def whole(cls, rows: int, k: int = 0, inputs: dict | None = None) -> "CopyPlan":
        """Every row left whole (no box, ``lam = 1``, no partner), with the fragment's ``inputs``."""
        return cls(np.full((rows, k, 4), -1, np.int32), np.ones(rows, np.float32), np.full(rows, -1, np.int32),
                   dict(inputs or {}))

    def gated(self, apply: np.ndarray) -> "CopyPlan":
        """The rows of ``apply`` (B,) bool as drawn, the others whole: no box, ``lam = 1``, no partner, and
        each input at its :attr:`InputSpec.whole`."""
        keep = apply.astype(bool)
        inputs = {spec: (a if spec.whole is None else
                         np.where(keep.reshape((-1,) + (1,) * (np.ndim(a) - 1)), a, spec.whole).astype(spec.dtype))
                  for spec, a in self.inputs.items()}
        return CopyPlan(np.where(keep[:, None, None], self.boxes, -1).astype(np.int32),
                        np.where(keep, self.lam, 1.0).astype(np.float32),
                        np.where(keep, self.partner, -1).astype(np.int32), inputs)


class Fragment(NamedTuple):
    """What a copy's graph fragment hands the loader: its normalised CHW ``image``; ``boxes`` the fragment
    searched in the graph ((1, 4) per row: ``meta["boxes"]`` and ``lam`` come from them); or, when the map
    comes from the training side, ``draws`` (its input nodes by :class:`InputSpec`, for ``loader.occlude``)
    and ``source`` (the un-augmented rows the map describes, when the image is not them)."""

    image: object
    boxes: object = None
    draws: dict | None = None
    source: object = None


@dataclass(frozen=True)
class Method:
    """Base of every method. ``p``: probability that a row (``mode="elem"``) or a whole batch and copy
    (``mode="batch"``, the reference codes' one draw per batch) is augmented.

    Class attributes a method sets: ``name`` (the registry name) and ``inputs``, the :class:`InputSpec` of
    each per-copy array its graph fragment reads (empty: the graph only normalises)."""

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple] = ()
    modes: ClassVar[tuple] = MODES
    #: where the map the method searches comes from (:mod:`pipelines.saliency`); None: the method searches none
    source: ClassVar = None

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
        """The draws of one copy (``rows`` samples, ``size`` x ``size`` output): the method's :meth:`draw`
        for every row, then the gate (:meth:`applied`); a row the gate leaves out is whole."""
        plan = self.draw(rng, rows, size)
        return plan.gated(self.applied(rng, rows, p_keep_image))

    def draw(self, rng: np.random.Generator, rows: int, size: int) -> CopyPlan:
        """The method's own draws, as if every row were augmented (the gate comes after, in :meth:`plan`)."""
        return CopyPlan.whole(rows)

    def applied(self, rng: np.random.Generator, rows: int, p_keep_image: float) -> np.ndarray:
        """(B,) bool, the rows augmented: ``p`` per row (``"elem"``) or per batch (``"batch"``), then
        each row kept whole with probability ``p_keep_image`` (Fong & Vedaldi's copies)."""
        apply = rng.random(1 if self.per_batch() else rows) < self.p
        if self.per_batch():
            apply = np.repeat(apply, rows)
        return apply & (rng.random(rows) >= p_keep_image)

    def per_batch(self) -> bool:
        """One draw shared by the batch (the reference codes) instead of one per row."""
        return self.mode == "batch"

    # -- graph ----------------------------------------------------------------------------------
    def prepare(self, g, u8):
        """The uint8 crop the fragment starts from: after the loader's ``auto_augment`` policy when there is
        one (timm's order: crop, flip, policy, then the method). A method that places the policy itself
        (KeepAugment's selective-paste) returns ``u8`` untouched."""
        return u8 if g.policy is None else g.augment(u8)

    def graph(self, g, u8, mirror, nodes: dict) -> Fragment:
        """The fragment of one copy. ``g`` is the graph's context (:class:`pipelines.loader.graph.GraphContext`:
        device, normalisation, the crop's saliency map), ``u8`` the HWC uint8 crop (:meth:`prepare`d),
        ``mirror`` the row's flip, ``nodes`` the arrays of :attr:`inputs` as DALI CPU nodes keyed by their
        :class:`InputSpec`."""
        return Fragment(g.clean(u8, mirror))

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
