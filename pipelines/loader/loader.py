"""``OcclusionLoader``: a DataLoader-like iterator over a DALI pipeline with occlusion augmentation.

Rows are copy-major: row ``c * B + i`` is copy ``c`` of sample ``i`` of the batch (Fong & Vedaldi's M copies of
a batch, concatenated on the device). Each batch unpacks as ``images, targets`` and also carries ``labels`` and
``meta`` (:class:`~pipelines.loader.batch.Batch`). The method (:mod:`pipelines.methods`) decides what happens to each copy; the
loader builds and runs the pipeline, keeps its position (resume), and hands the model's side to its
:class:`~pipelines.loader.training_side.TrainingSide`.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from kernels.checks import check_bool, check_choice, check_int
from pipelines.data.jpeg_scan import compile_walk
from pipelines.loader.batch import Batch
from pipelines.loader.dataset import Dataset
from pipelines.loader.errors import dead_worker, describe_failure
from pipelines.loader.graph import build_pipeline
from pipelines.loader.lifecycle import check_spawn_safe_main, keep_until_exit, track, worker_setup_for
from pipelines.loader.outputs import BatchAssembler
from pipelines.loader.plan import AugmentConfig, color_options
from pipelines.loader.position import DaliCheckpoint, Identity, LiveIterator, SkippedFiles, check_state
from pipelines.loader.runtime import Runtime, resolve_device
from pipelines.loader.seeding import pipeline_seed
from pipelines.loader.source import ImageSource
from pipelines.loader.training_side import TrainingSide
from pipelines.methods import get_method
from pipelines.saliency.base import ReadWaitTimeout

__all__ = ["Batch", "OcclusionLoader"]

#: Seeds are NumPy ``SeedSequence`` entropy; capped at 64 bits so that a seed is one machine word in
#: ``state_dict()`` and in logs. DALI gets a 63-bit seed derived from it (:mod:`pipelines.loader.seeding`).
SEED_LIMIT = 2 ** 64
DTYPES = ("float32", "float16")


class OcclusionLoader:
    """Iterate augmented batches of an ImageFolder tree (or a ``path label`` file list).

    Args:
        root: class-folder root (``root/<class>/<image>``) or a text file of ``path label`` lines.
        batch_size: samples per batch before copies (rows per batch are ``batch_size * copies``).
        method: a registry name (:data:`pipelines.methods.METHODS`) with its options as keyword arguments,
            a ``"name:key=value,..."`` string, or a method object (``CutMix(alpha=1.0)``); see
            :mod:`pipelines.methods`. An option the method does not have is a ``ValueError`` listing its options.
        train: random-resized-crop + flip + the method (True) or the validation transform (resize shorter
            side to 256, centre crop 224, nothing else).
        output_size: side of the output crops (224).
        copies, copy_mode, p_keep_image: Fong & Vedaldi batch copies (see :mod:`pipelines.loader.plan`);
            ``p_keep_image`` is one probability or one per copy (joint training: ``(1.0, 0.0)``).
        auto_augment: ``None``, ``"rand_augment"`` (n=2, m=9 of 31 bins), ``"auto_augment"`` (ImageNet policy)
            or a timm string (``"rand-m9-mstd0.5-inc1"``, ``"original"``: :mod:`pipelines.loader.policy` says what
            maps exactly), DALI's ``auto_aug`` on the flipped uint8 crop before the method. Its random draws come
            from DALI's seeded generators, not the reader's; ``state_dict()`` carries their state (DALI's
            checkpoint), so a resumed loader continues them exactly.
        color: ``None``, ``"clovaai"`` or ``{"jitter": ..., "lighting": ...}``: clovaai's ImageNet ColorJitter
            (brightness, contrast, saturation strengths: one value or three; 0.4 in CutMix / SaliencyMix) and PCA
            Lighting (``alphastd``, 0.1), drawn per crop from the batch's generator and applied in the graph's
            normalisation (:mod:`kernels.color`).
        label_smoothing: timm-style smoothing of the soft targets.
        num_classes: K of the targets (default: the number of class folders / max label + 1).
        device: ``"auto"``, ``"cpu"`` or ``"gpu"``; device_id: the CUDA device (``None``: the current one,
            ``torch.cuda.current_device()``, which is ``LOCAL_RANK`` once a ``torchrun`` script called
            ``torch.cuda.set_device``). The pipeline, any CUDA work and the output tensors live on it.
        seed: every random choice derives from it (same seed, same batches); an integer in [0, 2**64).
            DALI's own operators get a seed derived from (seed, shard_id, start epoch, start batch).
        shard_id, num_shards, shuffle, last_batch: see :mod:`pipelines.loader.source`.
        dtype: ``"float32"`` or ``"float16"`` images.
        runtime: how the loader runs, not what it yields: DALI threads, reader workers, queue depth and the
            checks of the image files (:class:`pipelines.loader.runtime.Runtime`, or a dict of its fields).
        **options: the method's options (e.g. ``alpha=1.0, p=0.5`` for ``"cutmix"``; ``fill`` for the
            erasing methods; ``saliency`` and, with ``saliency="bank"``, ``bank`` for the saliency-guided ones).
    """

    def __init__(self, root, batch_size: int, method="none", *, train: bool = True, output_size: int = 224,
                 copies: int = 1, copy_mode: str = "joint", p_keep_image=0.0, auto_augment=None,
                 color=None, label_smoothing: float = 0.0, num_classes: int | None = None, device: str = "auto",
                 device_id: int | None = None, seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                 shuffle: bool | None = None, last_batch: str = "partial", dtype: str = "float32",
                 runtime: Runtime | dict | None = None, **options):
        self.batch_size = check_int("batch_size", batch_size)
        train = check_bool("train", train)
        shuffle = check_bool("shuffle", shuffle, optional=True)
        self.seed = check_int("seed", seed, lo=0, hi=SEED_LIMIT - 1)
        self.dtype = check_choice("dtype", dtype, DTYPES)
        if num_classes is not None:
            check_int("num_classes", num_classes)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.runtime = Runtime.of(runtime)
        self.method = get_method(method, **options)
        self.cfg = AugmentConfig(method=self.method, train=train, output_size=output_size, copies=copies,
                                 copy_mode=copy_mode, p_keep_image=p_keep_image, auto_augment=auto_augment,
                                 **color_options(color))
        self.data = Dataset(root, num_classes, self.runtime.progress)
        self.root, self.classes, self.num_classes = self.data.root, self.data.classes, self.data.num_classes
        self.device, self.device_id = resolve_device(device, device_id)
        self._channel = None
        if train and self.method.source is not None:  # the source binds to the dataset (the bank opens its file)
            bound, self._channel = self.method.source.attach(self.data, rows_per_batch=self.batch_size * copies,
                                                             num_shards=num_shards, last_batch=last_batch)
            if bound is not self.method.source:
                self.cfg = dataclasses.replace(self.cfg, method=self.method.with_source(bound))
        self._training = TrainingSide(self.cfg, self.num_classes, label_smoothing, self._channel)
        shuffle = train if shuffle is None else shuffle
        self._source_args = dict(paths=self.data.paths, labels=self.data.labels, batch_size=self.batch_size,
                                 cfg=self.cfg, seed=self.seed, shuffle=shuffle, shard_id=shard_id,
                                 num_shards=num_shards, last_batch=last_batch, records=self.data.records,
                                 verify=self.runtime.verify, on_bad=self.runtime.on_bad)
        self._skipped = SkippedFiles()
        self._source = ImageSource(**self._source_args)
        self._identity = Identity(self.data, self.method, self.cfg, seed=self.seed, batch_size=self.batch_size,
                                  shard_id=self._source.shard_id, num_shards=self._source.num_shards,
                                  shuffle=shuffle, last_batch=last_batch, label_smoothing=float(label_smoothing),
                                  num_classes=self.num_classes, dtype=self.dtype)
        if self._channel is not None:  # a pushed map goes to the rank that serves its sample next epoch
            self._channel.route(self._source.owners, self._source.shard_id)
        self._live = LiveIterator()  # the one iterator allowed to serve the position
        self._pending_failure = None  # a reader failure to raise once the batches before it are served
        self._epoch = 0      # epoch the next batch belongs to
        self._batch = 0      # batches of that epoch already served
        self._pipe = self._assemble = None
        self._pipe_pos = None  # (epoch, batch) the built pipeline will produce next
        self._pipe_start = self._pipe_stop = None  # where it started, and the iteration its source stops at
        self._fed = self._taken = 0  # batches scheduled in it and taken from it
        self._sealed = -1  # with a channel: the last epoch whose pushes are written (its successor may be read)
        self._dali = DaliCheckpoint()  # where the built pipeline's reader started; a loaded checkpoint
        self._forked_from = None  # the parent's pid, in a child forked while this loader lived
        track(self)

    # -- DataLoader-like surface -----------------------------------------------------------------
    def __len__(self) -> int:
        return self._source.batches_per_epoch()

    @property
    def dataset_size(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch`` (refused while an iterator is live)."""
        self._live.refuse_while_live("set_epoch")
        self._epoch, self._batch = check_int("epoch", epoch, lo=0), 0

    def state_dict(self) -> dict:
        """Position to resume from: the next batch to serve, plus what must match on resume (the loader's
        :class:`~pipelines.loader.position.Identity`: dataset, method, output size, copies, seed, shard, ...); with
        a saliency bank, also the bank (its path and generation), every push so far written first; with
        ``on_bad="skip"``, the sample ids of the files skipped so far (``"skipped"``), which a resumed run skips again.

        While the built pipeline would go on serving from that position, ``"dali"`` holds DALI's checkpoint
        (``Pipeline.checkpoint()``: the state of DALI's random operators -- the ``auto_augment`` policies -- after
        the last batch *served*, not after the ones DALI prefetched) and the position its reader started at. A
        loader that loads this state rebuilds from that checkpoint and continues the uninterrupted run's
        batches bit for bit (:mod:`pipelines.loader.seeding`)."""
        state = {"epoch": self._epoch, "batch": self._batch, **self._identity.fields(), **self._skipped.state()}
        continues = self._pipe_stop is None or self._batch < len(self)  # (a pipeline built to end with its epoch)
        state.update(self._dali.state(self._pipe if self._pipe_pos == (self._epoch, self._batch) and continues
                                      else None))
        if self._channel is not None:
            state.update(self._channel.state())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (refused while an iterator is live, and for a state of a loader that serves
        other batches, naming what differs); the method's saliency source resumes its own part (the bank: the
        file the state names, unchanged since)."""
        self._live.refuse_while_live("load_state_dict")
        check_state(state, self._identity.fields(), len(self), bank=self._channel is not None)
        if self._channel is not None:
            self._channel.restore(state, int(state["epoch"]), int(state["batch"]))
        self._drop_pipeline()  # the next iteration rebuilds at the loaded position (from its DALI checkpoint, if any)
        self._epoch, self._batch = int(state["epoch"]), int(state["batch"])
        self._skipped.restore(state)
        self._dali.load(state, (self._epoch + 1, 0) if self._batch >= len(self) else (self._epoch, self._batch))

    def __iter__(self):
        self._check_not_forked()
        token = self._live.claim()
        try:
            if self._batch >= len(self):  # the last batch was served and the loop stopped there
                self._end_epoch()
            if self._pipe is None or self._pipe_pos != (self._epoch, self._batch):
                self._build(self._epoch, self._batch)
            while self._batch < len(self):
                self._pipe_pos = None  # until this batch is recorded: an interrupt from here on forces a rebuild
                batch = self._training.step(self._assemble(self._run()))
                if self.runtime.on_bad == "skip":
                    self._skipped.note(self._source, batch, self._epoch, self._batch, self.runtime.verify == "full")
                self._batch += 1
                self._pipe_pos = (self._epoch, self._batch)
                yield batch
                if not self._live.holds(token):  # close() ended this iterator
                    return
            self._end_epoch()
        finally:
            self._live.release(token)

    def _end_epoch(self) -> None:
        """The epoch's last batch was served and the loop had it. The pipeline runs on into the next epoch (see
        ImageSource.position): nothing to drain or rebuild. With a channel (the bank), this epoch's pushes are now
        written, so the next epoch's reads -- its reader workers wait for that inside the source -- may go on."""
        if self._channel is not None:
            self._channel.end_epoch(self._epoch)
            self._sealed = self._epoch
        runs_on = self._pipe_pos == (self._epoch, len(self)) and self._pipe_stop is None
        self._epoch, self._batch = self._epoch + 1, 0
        self._pipe_pos = (self._epoch, 0) if runs_on else None

    # -- the model in the loop -------------------------------------------------------------------
    def training_side(self) -> TrainingSide:
        """The object the training loop holds: ``occlude``, ``feedback`` and the soft-target rule."""
        return self._training

    def occlude(self, batch: Batch, maps: torch.Tensor) -> Batch:
        """:meth:`TrainingSide.occlude <pipelines.loader.training_side.TrainingSide.occlude>`."""
        return self._training.occlude(batch, maps)

    def feedback(self, batch: Batch, maps: torch.Tensor, rows=None) -> None:
        """:meth:`TrainingSide.feedback <pipelines.loader.training_side.TrainingSide.feedback>`."""
        self._training.feedback(batch, maps, rows)

    @property
    def bank(self):
        """The saliency bank's file (``None`` without one)."""
        return getattr(self._channel, "file", None)

    # -- internals -------------------------------------------------------------------------------
    def _check_not_forked(self) -> None:
        if self._forked_from is not None:
            raise RuntimeError(
                f"this OcclusionLoader was built in process {self._forked_from}, which forked this process: its DALI "
                f"pipeline's threads and reader workers belong to the parent, so the child cannot use it. Build a new "
                f"OcclusionLoader in the child (or start your processes with 'spawn' / 'forkserver').")

    def _run(self):
        self._check_not_forked()  # an iterator made before the fork runs on in the child
        dead = dead_worker(self._pipe, self._epoch, self._batch)
        if dead is not None:
            self._drop_pipeline()
            raise dead
        try:
            self._feed()
            self._taken += 1
            return self._pipe.outputs()
        except StopIteration:
            pending, self._pending_failure = self._pending_failure, None
            self._drop_pipeline()
            if pending is not None:  # the batches before the bad file were served: now its error
                raise pending.error from None
            raise RuntimeError(f"the reader ended epoch {self._epoch} early at batch {self._batch}") from None
        except BaseException as exc:
            # Drop the pipeline whatever happened (a KeyboardInterrupt too): its queues may have moved past
            # the recorded position, so the next iteration rebuilds at (self._epoch, self._batch).
            self._drop_pipeline()
            pending, self._pending_failure = self._pending_failure, None
            if not isinstance(exc, Exception):
                raise
            if ReadWaitTimeout.__name__ in str(exc):  # the loop paused near an epoch's end: read on from here
                self._build(self._epoch, self._batch)
                return self._run()
            failure = describe_failure(exc, self._source, self._epoch, self._batch)
            if pending is not None or failure.bad_batch is None or failure.bad_batch <= (self._epoch, self._batch):
                raise failure.error from exc
            # The workers met the bad file a few batches ahead: serve the good batches before it first.
            stop = (failure.bad_batch[0] - self._epoch) * len(self) + failure.bad_batch[1] - self._batch
            self._build(self._epoch, self._batch, stop_at=stop)
            self._pending_failure = failure
            return self._run()

    def _feed(self) -> None:
        """Keep ``prefetch`` batches scheduled ahead of the one the loop takes next (``run()`` would, but blindly).
        With a channel, a batch of epoch ``e + 1`` is scheduled only once epoch ``e`` is sealed (its last batch
        served and its pushes written): the graph takes a scheduled batch's reader output at once, and that read
        waits for the seal, so scheduling it earlier would wait for a batch the loop has not had yet."""
        depth = self.runtime.prefetch
        while self._fed - self._taken < depth:
            if self._channel is not None:
                epoch = self._pipe_start[0] + (self._pipe_start[1] + self._fed) // len(self)
                if epoch > self._sealed + 1:
                    return
            self._pipe.schedule_run()  # the first call schedules `prefetch` batches (DALI's own prefetch)
            self._fed += depth if self._fed == 0 else 1

    def _build(self, epoch: int, batch: int, stop_at: int | None = None) -> None:
        """Build the pipeline that serves ``(epoch, batch)`` next (``stop_at``: its reader ends after that many
        batches). A loaded state's DALI checkpoint for this very position is restored into it: its reader then
        starts where the checkpointed pipeline's did and goes on from the checkpoint's iteration."""
        self._drop_pipeline()
        check_spawn_safe_main()  # before any worker is spawned
        if self.runtime.verify == "full":
            compile_walk()  # the workers' JPEG check: compiled once here, loaded from Numba's cache by each worker
        self._pending_failure = None
        checkpoint = self._dali.start((epoch, batch))
        origin = self._dali.origin
        done = (epoch - origin[0]) * len(self) + batch - origin[1]  # reader iterations before (epoch, batch)
        source = ImageSource(**self._source_args, start_epoch=origin[0], start_batch=origin[1], skip=self._skipped.why)
        source.worker_setup = worker_setup_for(self.runtime.max_image_pixels)  # read by ImageSource.__setstate__
        if self._channel is not None:  # the pushes of the epochs before this one are written
            self._channel.before_epoch(epoch)
            self._sealed = epoch - 1
            if len(self) - batch < self.runtime.prefetch:
                # DALI's first schedule takes `prefetch` batches at once, which would cross into the next epoch before
                # this one is sealed (see _feed): this pipeline ends with the epoch and the next one is built then
                stop_at = min(stop_at if stop_at is not None else len(self), len(self) - batch)
        if stop_at is not None:
            source.stop_at = done + stop_at  # the source ends (StopIteration) at this iteration
        self._pipe, names = build_pipeline(
            source, device=self.device, device_id=self.device_id, batch_size=self.batch_size,
            num_threads=self.runtime.threads, py_workers=self.runtime.workers, reader_depth=self.runtime.depth,
            dtype=self.dtype, prefetch=self.runtime.prefetch, seed=pipeline_seed(self.seed, self._source.shard_id, *origin),
            checkpoint=checkpoint)
        self._pipe.build()
        target = torch.device("cuda", self.device_id) if self.device == "gpu" else None
        self._assemble = BatchAssembler(names, self.cfg.copies, self.cfg.output_size, self._training.targets, target)
        self._pipe_pos = self._pipe_start = (epoch, batch)
        self._pipe_stop = stop_at
        self._fed = self._taken = 0

    def close(self) -> None:
        """Stop the pipeline and its reader processes, and end the live iterator (a loop over the loader ends after
        the batch in hand); the position stays, and the next iteration rebuilds at it."""
        self._live.end()
        self._drop_pipeline()

    def _drop_pipeline(self) -> None:
        if self._pipe is not None:
            if self._channel is not None:  # workers waiting for an epoch's pushes stop waiting
                self._channel.reader_stopped()
            del self._pipe
            self._pipe = None

    def disown_after_fork(self) -> None:
        """In a forked child: keep the parent's pipeline and bank channel untouched until exit (see
        :mod:`pipelines.loader.lifecycle`) and refuse to iterate."""
        self._forked_from = os.getppid()
        for part in (self._pipe, self._channel):
            if part is not None:
                keep_until_exit(part)
        self._pipe = self._channel = None

    def __del__(self):
        try:
            self._drop_pipeline()
            if getattr(self, "_channel", None) is not None:
                self._channel.close()
        except Exception:
            pass
