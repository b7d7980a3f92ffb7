"""Our reader: a parallel ``fn.external_source`` that owns the sample order.

docs/design.md, "Why our own reader": the reader must know which sample it serves (to look up the saliency bank and
to record ``sample_id``, crop and flip), so the pipeline does not use ``fn.readers.file``.

Order. Epoch ``e`` visits the dataset in ``permutation(N)`` drawn from ``default_rng((seed, e))``
(identity when ``shuffle=False``); every shard draws the same permutation and takes a contiguous
block of it, ``[N*k//S, N*(k+1)//S)`` for shard ``k`` of ``S`` (as DALI's readers split), so over one
epoch the shards together serve every sample exactly once; shard sizes differ by at most one.

Last batch (``last_batch``):

* ``"partial"`` (default): the last batch of a shard holds the remainder; every sample of the shard
  is served once. Shards may then differ by one batch.
* ``"drop"``: every shard serves ``(N // S) // B`` full batches (the same count on every shard, as
  DDP needs); the samples past that are not served this epoch (they are on another epoch, since
  the order is reshuffled).
* ``"pad"``: every shard serves ``ceil(ceil(N / S) / B)`` full batches; the missing rows repeat the
  shard's first samples and are flagged ``valid = 0`` in ``meta`` so they can be masked out of the
  loss and metrics. Every sample is served exactly once among the valid rows.

Resume. A batch is a pure function of ``(seed, epoch, batch index, shard)``: ``state_dict()`` is the
next ``(epoch, batch)`` and a source built with ``start_epoch`` / ``start_batch`` continues exactly.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from kernels.checks import check_choice, check_int
from pipelines.data.file_cache import FileRecords, read_checked
from pipelines.data.imagefiles import BadImageError
from pipelines.loader.lifecycle import on_worker_start
from pipelines.loader.plan import AugmentConfig, batch_rng, plan_batch
from pipelines.methods import InputSpec
from pipelines.saliency.base import CropInfo, SlotSpec

LAST_BATCH_POLICIES = ("partial", "drop", "pad")

# Fields of the packed per-row "meta" output, in order: name, dtype, one per copy?, values per row and copy
# (-1: the rest of the row, the boxes). One packed output instead of eight: every pipeline output costs
# DALI a contiguous copy and a scheduling step per batch, which measured about 20% of the CPU loader's throughput.
META_FIELDS = (("label", np.int64, False, 1), ("sample_id", np.int64, False, 1), ("valid", np.int32, False, 1),
               ("image_size", np.int32, False, 2), ("position", np.int64, False, 2),
               ("crop", np.int32, True, 4), ("flip", np.int32, True, 1), ("lam", np.float32, True, 1),
               ("partner", np.int32, True, 1), ("map_source", np.int32, True, 1), ("map_age", np.int32, True, 1),
               ("boxes", np.int32, True, -1))


@dataclass(frozen=True)
class Slot:
    """One output of the source, as the graph receives it: ``"encoded"`` (the file bytes), ``"meta"`` (the
    packed :data:`META_FIELDS`), a copy's ``"crop_anchor"`` / ``"crop_shape"`` / ``"mirror"`` / ``"color"``
    (the crop's colour transform, when the config has one), a copy's
    ``"input"`` of the method's graph fragment (``spec``, :class:`pipelines.methods.InputSpec`), or a crop's
    ``"saliency"`` array of the method's saliency source (``spec``, :class:`pipelines.saliency.base.SlotSpec`)."""

    kind: str
    copy: int | None = None
    spec: InputSpec | SlotSpec | None = None


def pack_meta(params: dict) -> np.ndarray:
    """The batch's meta fields as ``(B, L)`` float64 rows (exact for integers below 2**53)."""
    b = len(params["label"])
    return np.concatenate([np.asarray(params[name], np.float64).reshape(b, -1) for name, *_ in META_FIELDS],
                          axis=1)


def unpack_meta(packed: np.ndarray, copies: int) -> dict:
    """``(B, L)`` packed rows -> the fields of :data:`META_FIELDS`, per-copy ones as ``(B, M, ...)``."""
    b = packed.shape[0]
    out, at = {}, 0
    for name, dtype, per_copy, width in META_FIELDS:
        m = copies if per_copy else 1
        if width < 0:  # boxes: the rest of the row, (M, K, 4)
            n = packed.shape[1] - at
            full = (b, m, n // (4 * m), 4)
        else:
            n = m * width
            full = (b,) + ((m,) if per_copy else ()) + ((width,) if width > 1 else ())
        out[name] = packed[:, at:at + n].reshape(full).astype(dtype)
        at += n
    return out


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The order epoch ``epoch`` visits ``n`` samples in: ``permutation(n)`` from ``default_rng([seed, epoch])``,
    or the identity without ``shuffle``; shard ``k`` of ``S`` serves the block ``[n*k//S, n*(k+1)//S)``."""
    return np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)


@dataclass
class ShardPlan:
    """Sample order of one shard in one epoch."""

    ids: np.ndarray     # (n_batches * B or fewer) sample ids in serving order
    valid: np.ndarray   # same length, 0 for pad rows


class ImageSource:
    """Picklable batch callback for ``fn.external_source(batch=True, batch_info=True, parallel=True)``.

    Reads the encoded bytes of each row, checks the file the first time it is read (``verify``; the outcome and the
    image's EXIF-oriented size are kept in ``records`` for later epochs and runs, :mod:`pipelines.data.file_cache`)
    and draws the batch's augmentation parameters with :func:`pipelines.loader.plan.plan_batch`. Files are thus
    checked in the order they are served, each rank its own shard, and no pass over the dataset precedes the first
    batch. A bad file raises :class:`~pipelines.data.imagefiles.BadImageError` naming it (``on_bad="raise"``), or
    its row repeats the batch's first good sample with ``valid`` 0, as a pad row does (``on_bad="skip"``; likewise
    the samples of ``skip``, those a resumed run skipped before): the batch stays a function of its position and of
    which files are bad.
    """

    def __init__(self, paths, labels, batch_size: int, cfg: AugmentConfig, *, seed: int = 0,
                 shuffle: bool = True, shard_id: int = 0, num_shards: int = 1,
                 last_batch: str = "partial", start_epoch: int = 0, start_batch: int = 0,
                 records: FileRecords | None = None, verify: str = "full", on_bad: str = "raise",
                 skip=frozenset()):
        if len(paths) != len(labels):
            raise ValueError(f"paths and labels differ in length: {len(paths)} vs {len(labels)}")
        if len(paths) == 0:
            raise ValueError("the dataset is empty: no image files to read")
        check_int("batch_size", batch_size)
        check_int("num_shards", num_shards)
        check_int("shard_id", shard_id, lo=0, hi=num_shards - 1)
        if num_shards > len(paths):
            raise ValueError(f"num_shards={num_shards} exceeds the dataset size {len(paths)}")
        check_choice("last_batch", last_batch, LAST_BATCH_POLICIES)
        self.paths = [os.fspath(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.cfg = cfg
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.shard_id = int(shard_id)
        self.num_shards = int(num_shards)
        self.last_batch = last_batch
        self.start_epoch = int(start_epoch)
        self.start_batch = int(start_batch)
        # the method's saliency source, when it sends the graph arrays from here (the saliency bank)
        source = cfg.method.source if cfg.train else None
        self.saliency = source if source is not None and source.slots() else None
        self.records, self.verify, self.on_bad = records, verify, on_bad
        self.skip = frozenset(int(i) for i in skip)  # samples served as skipped whatever their file says now
        if not 0 <= self.start_batch <= self.batches_per_epoch():
            raise ValueError(f"start_batch must be in [0, {self.batches_per_epoch()}], got {start_batch}")

    def __setstate__(self, state):  # in a reader worker: parent-death watchdog, Pillow limits
        self.__dict__.update(state)
        on_worker_start(state.get("worker_setup"))

    # -- order ---------------------------------------------------------------------------------
    def _shard_bounds(self, shard: int) -> tuple[int, int]:
        n = len(self.paths)
        return n * shard // self.num_shards, n * (shard + 1) // self.num_shards

    def batches_per_epoch(self) -> int:
        n, b, s = len(self.paths), self.batch_size, self.num_shards
        if self.last_batch == "drop":
            return (n // s) // b
        if self.last_batch == "pad":
            return math.ceil(math.ceil(n / s) / b)
        lo, hi = self._shard_bounds(self.shard_id)
        return math.ceil((hi - lo) / b)

    def shard_plan(self, epoch: int) -> ShardPlan:
        cached = getattr(self, "_plan_cache", None)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        plan = self._make_shard_plan(epoch)
        self._plan_cache = (epoch, plan)  # one permutation per epoch, not per batch
        return plan

    def owners(self, ids, epoch: int) -> np.ndarray:
        """The shard whose block of epoch ``epoch``'s order holds each sample of ``ids`` (the rank that serves it
        then; with ``last_batch="drop"`` a sample past the last full batch belongs to its block's shard all the
        same). Known in advance, so a saliency-bank push goes to that rank alone."""
        n = len(self.paths)
        cached = getattr(self, "_owner_cache", None)
        if cached is None or cached[0] != epoch:
            rank_of_position = np.searchsorted([self._shard_bounds(k)[0] for k in range(1, self.num_shards)],
                                               np.arange(n), side="right")
            owner = np.empty(n, np.int64)
            owner[epoch_order(self.seed, epoch, n, self.shuffle)] = rank_of_position
            cached = self._owner_cache = (epoch, owner)  # one permutation per epoch, not per push
        return cached[1][np.asarray(ids, np.int64)]

    def _make_shard_plan(self, epoch: int) -> ShardPlan:
        order = epoch_order(self.seed, epoch, len(self.paths), self.shuffle)
        lo, hi = self._shard_bounds(self.shard_id)
        ids = order[lo:hi]
        valid = np.ones(ids.size, np.int32)
        if self.last_batch == "drop":
            keep = self.batches_per_epoch() * self.batch_size
            ids, valid = ids[:keep], valid[:keep]
        elif self.last_batch == "pad":
            total = self.batches_per_epoch() * self.batch_size
            pad = total - ids.size
            ids = np.concatenate([ids, np.resize(ids, pad)])
            valid = np.concatenate([valid, np.zeros(pad, np.int32)])
        return ShardPlan(ids, valid)

    def position(self, info) -> tuple[int, int]:
        """(epoch, batch index) of a DALI ``BatchInfo``, counting from the start position.

        The source never ends an epoch (no ``StopIteration``, no pipeline reset): the iteration count
        runs on across epochs, so the prefetch queue fills with the next epoch's first batches while
        the current epoch finishes, instead of draining at every epoch boundary."""
        n = self.batches_per_epoch()
        g = self.start_batch + info.iteration
        return self.start_epoch + g // n, g % n

    # -- one batch -----------------------------------------------------------------------------
    def read(self, epoch: int, batch: int) -> tuple[list, dict]:
        """Encoded bytes and the full parameter dict of batch ``batch`` of ``epoch``."""
        plan = self.shard_plan(epoch)
        sl = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
        ids, valid = plan.ids[sl].copy(), plan.valid[sl].copy()
        encoded, heights, widths = [None] * ids.size, np.zeros(ids.size, np.int64), np.zeros(ids.size, np.int64)
        bad = []
        for r, i in enumerate(ids.tolist()):
            if i in self.skip:
                bad.append(r)
                continue
            try:
                data, heights[r], widths[r] = read_checked(self.paths[i], i, self.records, self.verify)
            except BadImageError:
                if self.on_bad == "raise":
                    raise
                bad.append(r)
                continue
            encoded[r] = np.frombuffer(data, dtype=np.uint8)
        if bad:
            good = [r for r in range(ids.size) if r not in bad]
            if not good:
                raise BadImageError(self.paths[ids[bad[0]]], f"every file of batch {batch} of epoch {epoch} is "
                                                             f"unreadable or skipped; nothing to repeat in its rows")
            for r in bad:
                ids[r], valid[r], encoded[r] = ids[good[0]], 0, encoded[good[0]]
                heights[r], widths[r] = heights[good[0]], widths[good[0]]
        params = plan_batch(self.cfg, batch_rng(self.seed, epoch, batch, self.shard_id), heights, widths)
        params.update(label=self.labels[ids], sample_id=ids.astype(np.int64), valid=valid,
                      image_size=np.stack([heights, widths], 1), position=np.tile([epoch, batch], (ids.size, 1)))
        b, m = ids.size, self.cfg.copies
        params["map_source"] = np.zeros((b, m), np.int32)
        params["map_age"] = np.full((b, m), -1, np.int32)
        if self.saliency is not None:
            self._read_saliency(params, epoch, batch)
        return encoded, params

    def _read_saliency(self, p: dict, epoch: int, batch: int) -> None:
        """Each crop's arrays from the method's saliency source (:meth:`pipelines.saliency.base.SaliencySource.read`),
        once per crop: joint copies share the crop and so its map."""
        rng = np.random.default_rng([self.seed, epoch, batch, self.shard_id, 1])  # apart from the method's draws
        p["saliency"] = []
        for c in range(self.cfg.copies):
            if c > 0 and self.cfg.copy_mode == "joint":
                p["saliency"].append(p["saliency"][0])
            else:
                info = CropInfo(p["sample_id"], p["crop"][:, c], p["flip"][:, c], p["image_size"], p["valid"], epoch,
                                self.cfg.output_size, self.shard_id)
                read = self.saliency.read(info, rng)
                p["saliency"].append(read.arrays)
                from_source, age = read.from_source, read.age
            p["map_source"][:, c] = from_source
            p["map_age"][:, c] = age

    def layout(self) -> tuple[Slot, ...]:
        """The source's outputs, in order: the file bytes and the packed meta, then per copy its crop and
        flip (once when the copies share them) and the inputs of the method's graph fragment (training only)."""
        cfg = self.cfg
        slots = [Slot("encoded"), Slot("meta")]
        shared = cfg.copy_mode == "joint" or cfg.copies == 1
        specs = cfg.method.inputs if cfg.train else ()
        arrays = self.saliency.slots() if self.saliency is not None else ()
        for c in range(cfg.copies):
            if c == 0 or not shared:
                slots += [Slot("crop_anchor", c), Slot("crop_shape", c), Slot("mirror", c)]
                slots += [Slot("color", c)] if cfg.colored else []
                slots += [Slot("saliency", c, spec) for spec in arrays]
            slots += [Slot("input", c, spec) for spec in specs]
        return tuple(slots)

    def __call__(self, info):
        # fewer samples than one batch with last_batch="drop", or the loader's stop before a bad file
        if self.batches_per_epoch() == 0 or info.iteration >= getattr(self, "stop_at", math.inf):
            raise StopIteration
        epoch, batch = self.position(info)
        encoded, p = self.read(epoch, batch)
        # Uniform per-row data leaves as one (B, ...) array per output, not a list of B samples:
        # DALI then takes one contiguous buffer instead of B small ones.
        outputs = []
        if getattr(self, "_layout", None) is None:
            self._layout = self.layout()
        for slot in self._layout:
            if slot.kind == "encoded":
                outputs.append(encoded)
            elif slot.kind == "meta":
                outputs.append(pack_meta(p))
            elif slot.kind == "crop_anchor":
                outputs.append(np.ascontiguousarray(p["crop"][:, slot.copy, :2]))
            elif slot.kind == "crop_shape":
                outputs.append(np.ascontiguousarray(p["crop"][:, slot.copy, 2:]))
            elif slot.kind == "mirror":
                outputs.append(np.ascontiguousarray(p["flip"][:, slot.copy], np.int32))
            elif slot.kind == "color":
                outputs.append(np.ascontiguousarray(p["color"][:, slot.copy]))
            elif slot.kind == "saliency":
                outputs.append(np.ascontiguousarray(p["saliency"][slot.copy][slot.spec.name], slot.spec.dtype))
            else:
                outputs.append(np.ascontiguousarray(p["inputs"][slot.copy][slot.spec], slot.spec.dtype))
        return tuple(outputs)
