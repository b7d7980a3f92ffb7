"""The contract of a saliency source: where the map a saliency-guided method searches comes from.

A source is one object with three sides, each optional:

* **reader** (:meth:`SaliencySource.slots`, :meth:`SaliencySource.read`): per-crop arrays the reader workers
  compute from what they know of a row (sample id, crop window, flip, source image size), sent to the graph
  beside the file bytes (the saliency bank's re-cropped map; a folder of precomputed maps);
* **graph** (:meth:`SaliencySource.graph_map`): the ``(H, W)`` float32 map node the search operators read,
  built from the crop and those arrays (OpenCV's fine-grained saliency of the crop);
* **loader** (:meth:`SaliencySource.attach`): what the source needs from the loader's dataset and gives back
  to it: a bound copy (a resolved path, a reader to open in the workers) and, for a source the training loop
  feeds, a channel (:class:`Channel`: the bank's file, its writes, its place in ``state_dict``).

A source whose map only a model can give (:class:`~pipelines.saliency.sources.ModelSaliency`) has
``in_graph = False``: the graph leaves the rows clean and hands their draws to ``loader.occlude``. One that
also computes those maps itself (``own_maps``, :meth:`SaliencySource.maps`: Attentive CutMix's frozen
checkpoint) is applied by the loader's training side before the batch is yielded.
Sources are frozen dataclasses: picklable (the reader workers get them with the method) and hashable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np


class CropInfo(NamedTuple):
    """What the reader knows of one crop of a batch's rows (a copy's, or the crop joint copies share): ``sample_id``
    (B,) int64, ``crop`` (B, 4) ``y0, x0, h, w`` in source pixels, ``flip`` (B,), ``image_size`` (B, 2) ``H, W``,
    ``valid`` (B,) (0 on pad rows), the ``epoch``, the output ``size`` the search runs at and the reader's
    ``shard``."""

    sample_id: np.ndarray
    crop: np.ndarray
    flip: np.ndarray
    image_size: np.ndarray
    valid: np.ndarray
    epoch: int
    size: int
    shard: int = 0


class SourceRead(NamedTuple):
    """A source's per-crop reader output: ``arrays`` (name -> (B, ...) array, one per :meth:`SaliencySource.slots`),
    and per row whether its map is the source's own (``from_source``, else a fallback) and its ``age`` in
    epochs (-1 where not the source's own); they become ``meta["map_source"]`` and ``meta["map_age"]``."""

    arrays: dict
    from_source: np.ndarray
    age: np.ndarray


@dataclass(frozen=True)
class SlotSpec:
    """One per-crop array a source's reader side sends: its name and dtype."""

    name: str
    dtype: type = np.float32


class ReadWaitTimeout(RuntimeError):
    """A reader worker waited too long for what its source's read needs (the saliency bank: the previous epoch's
    pushes, while the training loop stopped near that epoch's end). The loader meets it as the worker's error text
    and rebuilds its pipeline at the same position."""


class SourceFileError(ValueError):
    """A file a source reads beside the images (the saliency bank) is damaged: the message names it. The loader
    meets it as a reader worker's error text and raises it as such, blaming no image file."""


class Channel:
    """The loader-side life of a source the training loop feeds (the saliency bank): every hook is called by the
    loader or its training side, which never test the source's type."""

    def route(self, owner_of, shard: int) -> None:
        """The loader's order: ``owner_of(ids, epoch)`` is the shard that serves each sample in ``epoch``; this
        loader is ``shard``."""

    def before_epoch(self, epoch: int) -> None:
        """Before a pipeline that reads from epoch ``epoch`` on is built (the first, or one rebuilt)."""

    def end_epoch(self, epoch: int) -> None:
        """The loader served the last batch of ``epoch`` (and the training loop had it): the reads of the next epoch,
        which the pipeline's reader workers have already begun, may go on."""

    def reader_stopped(self) -> None:
        """The loader dropped its pipeline (closed, or rebuilding it elsewhere)."""

    def state(self) -> dict:
        """What ``state_dict()`` records (every write done first)."""
        return {}

    def restore(self, state: dict, epoch: int, batch: int) -> None:
        """Resume at ``(epoch, batch)`` from ``state`` (a ``ValueError`` naming what differs)."""

    def push(self, meta: dict, rows, maps) -> None:
        """``loader.feedback``: the model's ``maps`` of the batch ``rows`` (with their ``meta``)."""
        raise ValueError("this saliency source takes no feedback")

    def close(self) -> None:
        """Finish pending work and release files (the loader is closed or collected)."""


@dataclass(frozen=True)
class SaliencySource:
    """Base of every saliency source (see the module docstring). ``name`` is its shorthand
    (``saliency="image"``)."""

    name: ClassVar[str] = ""
    in_graph: ClassVar[bool] = True
    own_maps: ClassVar[bool] = False

    def maps(self, images):
        """With ``own_maps``: the ``(N, h, w)`` maps of the batch's ``images`` on the training side (torch)."""
        raise NotImplementedError

    def slots(self) -> tuple[SlotSpec, ...]:
        """The per-crop arrays :meth:`read` returns (none: nothing crosses from the reader)."""
        return ()

    def read(self, crop: CropInfo, rng: np.random.Generator) -> SourceRead:
        """In a reader worker: the arrays of :meth:`slots` for one crop. ``rng`` is the batch's generator for the
        source's own draws (apart from the method's)."""
        raise NotImplementedError

    def graph_map(self, g, u8, mirror, nodes: dict):
        """The ``(H, W)`` float32 map node of the crop ``u8`` as the row sees it (``mirror``); ``nodes`` are the
        crop's :meth:`slots` nodes by name. Called once per crop (joint copies share the map)."""
        raise NotImplementedError

    def attach(self, dataset, *, rows_per_batch: int, num_shards: int, last_batch: str
               ) -> tuple["SaliencySource", Channel | None]:
        """The source bound to a training loader's ``dataset`` (:class:`pipelines.loader.dataset.Dataset`: paths,
        labels, relative names), whose batches hold ``rows_per_batch`` rows (copies included) over ``num_shards``
        shards with the ``last_batch`` policy; and its :class:`Channel` (``None``: nothing to keep)."""
        return self, None
