"""``OcclusionLoader``: a DataLoader-like iterator over a DALI pipeline with occlusion augmentation.

Rows are copy-major: row ``c * B + i`` is copy ``c`` of sample ``i`` of the batch (Fong & Vedaldi's
M copies of a batch, concatenated on the device). Each batch unpacks as ``images, targets`` and also
carries ``labels`` and ``meta`` (DESIGN.md section 5). The method (:mod:`pipelines.methods`) decides what
happens to each copy; the loader only runs its hooks.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from kernels.apply import lam_from_boxes
from kernels.labels import soft_targets
from pipelines.bank import BankFile, BankReader, BankWriter, SaliencyBank, dataset_fingerprint, make_stamp, push_cells
from pipelines.batch import Batch
from pipelines.checks import check_loader_args, check_spawn_safe_main, infer_num_classes
from pipelines.errors import dead_worker, describe_failure
from pipelines.graph import build_pipeline
from pipelines.imagefiles import scan_image_folder, read_file_list
from pipelines.lifecycle import worker_setup_for
from pipelines.methods import get_method
from pipelines.params import AugmentConfig
from pipelines.reader import ImageSource, unpack_meta
from pipelines.runtime import Runtime
from pipelines.seeding import pipeline_seed

__all__ = ["Batch", "OcclusionLoader"]


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"gpu"`` when CUDA is usable, else ``"cpu"``."""
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("device='gpu' was requested but CUDA is not available; use device='cpu' or 'auto'")
    return device


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
        copies, copy_mode, p_keep_image: Fong & Vedaldi batch copies (see :mod:`pipelines.params`);
            ``p_keep_image`` is one probability or one per copy (joint training: ``(1.0, 0.0)``).
        auto_augment: ``None``, ``"rand_augment"`` (n=2, m=9) or ``"auto_augment"`` (ImageNet policy), DALI's
            ``auto_aug`` on the flipped uint8 crop before the method. Its random draws come from DALI's
            seeded generator, not the reader's.
        label_smoothing: timm-style smoothing of the soft targets.
        num_classes: K of the targets (default: the number of class folders / max label + 1).
        device: ``"auto"``, ``"cpu"`` or ``"gpu"``; device_id: the CUDA device (``None``: the current one,
            ``torch.cuda.current_device()``, which is ``LOCAL_RANK`` once a ``torchrun`` script called
            ``torch.cuda.set_device``). The pipeline, any CUDA work and the output tensors live on it.
        seed: every random choice derives from it (same seed, same batches); an integer in [0, 2**64).
            DALI's own operators get a seed derived from (seed, shard_id, start epoch, start batch).
        shard_id, num_shards, shuffle, last_batch: see :mod:`pipelines.reader`.
        dtype: ``"float32"`` or ``"float16"`` images.
        runtime: how the loader runs, not what it yields: DALI threads, reader workers, queue depth and the
            checks of the image files (:class:`pipelines.runtime.Runtime`, or a dict of its fields).
        **options: the method's options (e.g. ``alpha=1.0, p=0.5`` for ``"cutmix"``; ``fill`` for the
            erasing methods; ``saliency`` and, with ``saliency="bank"``, ``bank`` for the saliency-guided ones).
    """

    def __init__(self, root, batch_size: int, method="none", *, train: bool = True, output_size: int = 224,
                 copies: int = 1, copy_mode: str = "joint", p_keep_image=0.0, auto_augment: str | None = None,
                 label_smoothing: float = 0.0, num_classes: int | None = None, device: str = "auto",
                 device_id: int | None = None, seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                 shuffle: bool | None = None, last_batch: str = "partial", dtype: str = "float32",
                 runtime: Runtime | dict | None = None, **options):
        check_loader_args(batch_size=batch_size, train=train, seed=seed, dtype=dtype, shuffle=shuffle,
                          num_classes=num_classes)
        self.runtime = runtime = Runtime.of(runtime)
        self.method = get_method(method, **options)
        self.cfg = AugmentConfig(method=self.method, train=train, output_size=output_size, copies=copies,
                                 copy_mode=copy_mode, p_keep_image=p_keep_image, auto_augment=auto_augment)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        root = Path(root)
        if root.is_file():
            paths, labels = read_file_list(root)
            self.classes = None
        else:
            paths, labels, self.classes = scan_image_folder(root)
        self.num_classes = infer_num_classes(labels, paths, num_classes, root)
        if runtime.verify != "none":
            from pipelines.verify import find_bad_images, pixel_limit, verify_cached

            with pixel_limit(runtime.max_image_pixels):
                if runtime.verify == "full":
                    bad, _ = verify_cached(paths, workers=max(2, os.cpu_count() or 2))
                else:
                    bad = find_bad_images(paths, full=False, workers=max(2, os.cpu_count() or 2))
            if bad:
                listing = "\n".join(f"  {p}: {why}" for p, why in bad[:20])
                more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
                raise ValueError(f"{len(bad)} unreadable image file(s) under {root}:\n{listing}{more}\n"
                                 "Remove or fix them (`python -m pipelines.verify ROOT` lists them).")
        self.device = resolve_device(device)
        if device_id is not None and (isinstance(device_id, bool) or not isinstance(device_id, (int, np.integer))
                                      or device_id < 0):
            raise ValueError(f"device_id must be None (the current CUDA device) or an int >= 0, got {device_id!r}")
        if self.device == "gpu":
            self.device_id = torch.cuda.current_device() if device_id is None else int(device_id)
        else:
            self.device_id = None
        self.root = root
        self.batch_size = int(batch_size)
        self.label_smoothing = float(label_smoothing)
        self.dtype = dtype
        self.seed = int(seed)
        self._train_step = self.method.train_step if train else None
        self._source_args = dict(paths=paths, labels=labels, batch_size=batch_size, cfg=self.cfg,
                                 seed=seed, shuffle=train if shuffle is None else shuffle,
                                 shard_id=shard_id, num_shards=num_shards, last_batch=last_batch)
        self._bank = self._bank_writer = None
        if train and self.method.reads_bank:
            self._open_bank(self.method.bank or SaliencyBank(), paths, labels, root, copies, num_shards, last_batch)
        self._source = ImageSource(**self._source_args)
        self._live_iter = None  # token of the one iterator allowed to run (see __iter__)
        self._pending_failure = None  # a reader failure to raise once the batches before it are served
        self._epoch = 0      # epoch the next batch belongs to
        self._batch = 0      # batches of that epoch already served
        self._pipe = None
        self._pipe_pos = None  # (epoch, batch) the built pipeline will produce next
        # GPU outputs of DALI kept alive until the copies out of them are done (see _concat_images)
        self._in_flight = collections.deque()

    # -- DataLoader-like surface -----------------------------------------------------------------
    def __len__(self) -> int:
        return self._source.batches_per_epoch()

    @property
    def dataset_size(self) -> int:
        return len(self._source.paths)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch, self._batch = int(epoch), 0

    def state_dict(self) -> dict:
        """Position to resume from: the next batch to serve, plus what must match on resume. With a saliency
        bank, also the bank (its path and generation): every push so far is written first."""
        state = {"epoch": self._epoch, "batch": self._batch, "seed": self.seed,
                 "dataset_size": self.dataset_size, "batch_size": self.batch_size,
                 "shard_id": self._source.shard_id, "num_shards": self._source.num_shards}
        if self._bank is not None:
            self._bank_writer.flush()
            state["bank"] = {"path": str(self._bank.path), "generation": self._bank.generation,
                             "grid": self._bank.grid, "fingerprint": self._bank.fingerprint}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``. A saliency bank must be the file the state names, unchanged since (same
        generation); the pushes it holds from the resumed position on are forgotten (the run makes them again)."""
        mine = self.state_dict()
        for key in ("seed", "dataset_size", "batch_size", "shard_id", "num_shards"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume: state_dict has {key}={state.get(key)!r}, this loader has {mine[key]!r}")
        if not 0 <= state["batch"] <= len(self):
            raise ValueError(f"cannot resume: batch={state['batch']} outside [0, {len(self)}]")
        if ("bank" in state) != ("bank" in mine):
            raise ValueError("cannot resume: " + ("the state_dict has a saliency bank and this loader none (give its "
                             "method saliency='bank' and bank=...)" if "bank" in state else
                             "this loader has a saliency bank and the state_dict none"))
        if "bank" in state:
            for key in ("path", "grid", "fingerprint", "generation"):
                if state["bank"].get(key) != mine["bank"][key]:
                    raise ValueError(f"cannot resume: the state_dict's saliency bank has {key}="
                                     f"{state['bank'].get(key)!r}, this loader's bank has {mine['bank'][key]!r}"
                                     + (" (the bank file was emptied or replaced since the state was saved)"
                                        if key == "generation" else ""))
            self._bank.forget_since(int(make_stamp(state["epoch"], state["batch"])))
            self._bank_fresh = False
        self._epoch, self._batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self):
        token = self._claim_iterator()
        try:
            if self._batch >= len(self):
                self._epoch, self._batch = self._epoch + 1, 0
            if self._pipe is None or self._pipe_pos != (self._epoch, self._batch):
                if self._bank is not None and (self._batch == 0 or self._bank_fresh):
                    self._bank_sync()
                self._build(self._epoch, self._batch)
            while self._batch < len(self):
                self._pipe_pos = None  # until this batch is recorded: an interrupt from here on forces a rebuild
                outputs = self._run()
                batch = self._to_batch(outputs)
                if self._train_step is not None:
                    batch = self._train_step(batch)
                self._batch += 1
                self._pipe_pos = (self._epoch, self._batch)
                yield batch
            # The pipeline runs on into the next epoch (see ImageSource.position): nothing to drain. With a bank
            # it ended with the epoch: the next one is read once this epoch's pushes are in (_bank_sync).
            self._epoch, self._batch = self._epoch + 1, 0
            self._pipe_pos = (self._epoch, 0) if self._bank is None else None
        finally:
            if self._live_iter is token:
                self._live_iter = None

    def _claim_iterator(self):
        """One live iterator per loader: two would share one position (``zip(L, L)`` would drop batches and a
        nested ``for`` over the same loader would never end), so the second is refused. An iterator stops
        being live when it is exhausted, closed, or garbage-collected (``break`` out of a ``for`` loop)."""
        if self._live_iter is not None:
            raise RuntimeError(
                "this OcclusionLoader is already being iterated: one loader serves one position, so a second "
                "live iterator (zip(L, L), a nested `for` over the same loader, or an unfinished iter(L) kept "
                "in a variable) would steal its batches. Finish or close() the first iterator, or build a "
                "second loader.")
        token = object()
        self._live_iter = token
        return token

    # -- the model in the loop -------------------------------------------------------------------
    def occlude(self, batch: Batch, maps: torch.Tensor) -> Batch:
        """Apply the method to ``batch`` on the training side with the model's saliency ``maps`` of this very
        batch (a loader whose method has ``saliency="model"``, e.g. ``method="saliency_occlusion",
        saliency="model"``; maps from :mod:`pipelines.feedback`).

        ``maps``: ``(M*B, h, w)`` (one per row) or, with ``copy_mode="joint"``, ``(B, h, w)`` (the copies
        share the crop and flip, so one map per sample serves every copy, as the graph's shared image
        saliency does). Maps of any ``h, w`` are bilinearly resized to the output size first (Fong &
        Vedaldi). The search is the graph's own operator (``fn.occlusion.box_search``, eagerly through DALI's
        dynamic mode, on the CPU) with the draws the graph would have used (``meta["draw.*"]``); erase /
        paste follow ``normalize_occlude``'s rule on the images' device (KeepAugment's selective-paste pastes
        from ``meta["source_images"]``, the un-augmented rows; compute its maps on those). Returns a new :class:`Batch` with the
        images, ``meta`` ``boxes`` / ``lam`` / ``partner`` and the soft targets filled in."""
        if not (self.cfg.train and self.method.deferred):
            raise ValueError(f"occlude needs a training loader whose method takes the model's saliency "
                             f"(saliency='model'); this loader's method is {self.method}")
        m, s = self.cfg.copies, self.cfg.output_size
        n = batch.images.shape[0]
        b = n // m
        if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] not in (n, b):
            raise ValueError(f"maps must be a (N, h, w) tensor with N = {n} rows (or {b}, one per sample of "
                             f"the joint copies), got {getattr(maps, 'shape', type(maps))}")
        if maps.shape[0] != n:
            if self.cfg.copy_mode != "joint" and m > 1:
                raise ValueError(f"maps has {maps.shape[0]} rows; copy_mode='batch_aug' copies have their own "
                                 f"crops, so give one map per row ({n})")
            maps = maps.repeat(m, 1, 1)
        maps = maps.detach().float()
        if tuple(maps.shape[-2:]) != (s, s):
            maps = torch.nn.functional.interpolate(maps[:, None], size=(s, s), mode="bilinear",
                                                   align_corners=False)[:, 0]
        maps = maps.cpu().numpy()
        names = [spec.name for spec in self.method.inputs]
        images, boxes, partner = [], [], []
        for c in range(m):
            rows = slice(c * b, (c + 1) * b)
            draws = {k: batch.meta["draw." + k][rows].numpy() for k in names}
            sources = batch.meta["source_images"][rows] if "source_images" in batch.meta else None
            img, bx, pr = self.method.occlude(batch.images[rows], maps[rows], draws, sources)
            images.append(img)
            boxes.append(bx)
            partner.append(np.where(pr >= 0, pr + c * b, -1))
        boxes = np.concatenate(boxes).astype(np.int32)
        partner_row = np.concatenate(partner).astype(np.int32)
        lam = lam_from_boxes(boxes, s, s, partner_row).astype(np.float32)
        labels = batch.labels.cpu().numpy()
        partner_labels = np.where(partner_row >= 0, labels[np.clip(partner_row, 0, None)], labels)
        targets = torch.from_numpy(soft_targets(labels, partner_labels, lam, self.num_classes,
                                                self.label_smoothing)).to(batch.targets.device)
        return batch.replace(images=torch.cat(images) if m > 1 else images[0], targets=targets,
                             meta={"boxes": torch.from_numpy(boxes), "lam": torch.from_numpy(lam),
                                   "partner": torch.from_numpy(partner_row.astype(batch.meta["partner"].numpy().dtype))})

    def feedback(self, batch: Batch, maps: torch.Tensor, rows=None) -> None:
        """Push the model's saliency of ``batch`` into the saliency bank (a loader whose method has
        ``saliency="bank"``): the map of each row steers the search of the sample's next visit (next epoch),
        re-cropped to that visit's window and flip (:mod:`pipelines.bank`).

        ``maps``: ``(N, h, w)``, any device and size, one per row of ``rows`` (batch row indices or a boolean
        mask; default: every row, or with joint copies ``B`` maps for the first copy's rows, whose crop and
        flip the copies share). Pad rows (``valid`` 0) are skipped. Returns at once: the maps are reduced to
        the bank's grid on their device, and the copy to the host and the file write run in a background
        thread. With ``num_shards > 1`` under ``torch.distributed`` every rank must call it once per batch
        (the pushes are all-gathered, so each sample's map reaches whichever rank serves it next)."""
        if self._bank is None:
            raise ValueError(f"feedback needs a training loader whose method reads the saliency bank "
                             f"(saliency='bank'); this loader's method is {self.method}")
        n = batch.images.shape[0]
        m = self.cfg.copies
        if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
            raise ValueError(f"maps must be a (N, h, w) tensor, got {getattr(maps, 'shape', type(maps))}")
        if rows is None:
            if maps.shape[0] == n:
                rows = np.arange(n)
            elif maps.shape[0] == n // m and (self.cfg.copy_mode == "joint" or m == 1):
                rows = np.arange(n // m)
            else:
                raise ValueError(f"maps has {maps.shape[0]} rows; give one per batch row ({n})"
                                 + (f", one per sample ({n // m}, joint copies)" if self.cfg.copy_mode == "joint" else "")
                                 + " or the rows= they belong to")
        else:
            rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
            if rows.dtype == bool:
                if rows.shape != (n,):
                    raise ValueError(f"rows as a mask must have one entry per batch row ({n}), got {rows.shape}")
                rows = np.flatnonzero(rows)
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) or (rows.size and not
                                                                                0 <= rows.min() <= rows.max() < n):
                raise ValueError(f"rows must be batch row indices in [0, {n}) or a boolean mask, got {rows!r}")
            if rows.size != maps.shape[0]:
                raise ValueError(f"maps has {maps.shape[0]} rows but rows= names {rows.size}")
        meta = batch.meta
        keep = np.flatnonzero(meta["valid"].numpy()[rows] > 0)
        rows = torch.as_tensor(rows[keep])
        maps = maps.detach()[torch.as_tensor(keep, device=maps.device)]
        g = self._bank.grid
        if len(rows):
            cells = push_cells(maps, meta["crop"][rows].numpy(), meta["flip"][rows].numpy(),
                               meta["image_size"][rows].numpy(), g)
        else:
            cells = torch.zeros((0, g, g), dtype=torch.uint8, device=maps.device)
        position = meta["position"][rows].numpy()
        stamps = torch.from_numpy(make_stamp(position[:, 0], position[:, 1]))
        self._bank_writer.push(meta["sample_id"][rows].to(torch.int64), stamps, cells)

    @property
    def bank(self) -> BankFile | None:
        """The saliency bank's file (``None`` without one)."""
        return self._bank

    def _open_bank(self, spec: SaliencyBank, paths, labels, root: Path, copies: int, num_shards: int,
                   last_batch: str) -> None:
        self._bank_dir = None
        if spec.path is None:
            if num_shards > 1:
                raise ValueError("a saliency bank shared by shards needs a path every rank of a node can open: "
                                 "bank=SaliencyBank('/local/disk/bank.bin') or bank='/local/disk/bank.bin'")
            self._bank_dir = tempfile.mkdtemp(prefix="occlusion-bank-")
            spec = dataclasses.replace(spec, path=Path(self._bank_dir) / "bank.bin")
        if num_shards > 1 and last_batch == "partial":
            raise ValueError("a saliency bank with num_shards > 1 needs last_batch='drop' or 'pad': every rank must "
                             "push the same number of batches (the pushes are all-gathered)")
        base = root if root.is_dir() else root.parent
        names = [os.path.relpath(p, base) for p in paths]
        self._bank = BankFile(spec.path, len(paths), spec.grid, dataset_fingerprint(names, labels))
        self._bank_fresh = True  # emptied before the first batch unless load_state_dict restores it
        import torch.distributed as dist

        distributed = num_shards > 1 and dist.is_available() and dist.is_initialized()
        self._bank_writer = BankWriter(self._bank, self.batch_size * copies, distributed)
        self._source_args["bank"] = BankReader(spec.path, len(paths), spec.grid, spec.fallback)

    def _bank_sync(self) -> None:
        """Before a new epoch's reads: every push of the previous epochs is in the file, on every rank."""
        if self._bank_fresh:
            self._bank.clear()
            self._bank_fresh = False
        self._bank_writer.flush()
        if self._bank_writer.distributed:
            import torch.distributed as dist

            dist.barrier()

    # -- internals -------------------------------------------------------------------------------
    def _run(self):
        dead = dead_worker(self._pipe, self._epoch, self._batch)
        if dead is not None:
            self.close()
            raise dead
        try:
            return self._pipe.run()
        except StopIteration:
            pending, self._pending_failure = self._pending_failure, None
            self.close()
            if pending is not None:  # the batches before the bad file were served: now its error
                raise pending.error from None
            raise RuntimeError(f"the reader ended epoch {self._epoch} early at batch {self._batch}") from None
        except BaseException as exc:
            # Drop the pipeline whatever happened (a KeyboardInterrupt too): its queues may have moved past
            # the recorded position, so the next iteration rebuilds at (self._epoch, self._batch).
            self.close()
            pending, self._pending_failure = self._pending_failure, None
            if not isinstance(exc, Exception):
                raise
            failure = describe_failure(exc, self._source, self._epoch, self._batch)
            if pending is not None or failure.bad_batch is None or failure.bad_batch <= (self._epoch, self._batch):
                raise failure.error from exc
            # The workers met the bad file a few batches ahead: serve the good batches before it first.
            stop = (failure.bad_batch[0] - self._epoch) * len(self) + failure.bad_batch[1] - self._batch
            self._build(self._epoch, self._batch, stop_at=stop)
            self._pending_failure = failure
            return self._run()

    def _build(self, epoch: int, batch: int, stop_at: int | None = None) -> None:
        self.close()
        check_spawn_safe_main()  # before any worker is spawned
        self._pending_failure = None
        source = ImageSource(**self._source_args, start_epoch=epoch, start_batch=batch)
        source.worker_setup = worker_setup_for(self.runtime.max_image_pixels)  # read by ImageSource.__setstate__
        if self._bank is not None:  # the bank's reads of the next epoch wait for this epoch's pushes
            stop_at = min(stop_at if stop_at is not None else len(self), len(self) - batch)
        if stop_at is not None:
            source.stop_at = stop_at  # the source ends (StopIteration) at this iteration
        self._pipe = build_pipeline(source, device=self.device, device_id=self.device_id, batch_size=self.batch_size,
                                    num_threads=self.runtime.threads, py_workers=self.runtime.py_workers,
                                    dtype=self.dtype, prefetch=self.runtime.prefetch,
                                    seed=pipeline_seed(self.seed, self._source.shard_id, epoch, batch))
        self._pipe.build()
        self._pipe_pos = (epoch, batch)

    def close(self) -> None:
        """Stop the pipeline and its reader processes."""
        if self._pipe is not None:
            del self._pipe
            self._pipe = None

    def __del__(self):
        try:
            self.close()
            if getattr(self, "_bank_writer", None) is not None:
                self._bank_writer.close()
            if getattr(self, "_bank_dir", None) is not None:  # a temporary bank goes with its loader
                shutil.rmtree(self._bank_dir, ignore_errors=True)
        except Exception:
            pass

    def _to_batch(self, outputs) -> Batch:
        m = self.cfg.copies
        meta_np = unpack_meta(np.array(outputs[0].as_tensor()), m)
        images = outputs[1:1 + m]
        searched = outputs[1 + m:]
        deferred = self.cfg.train and self.method.deferred
        if deferred:  # per copy the method's host draws (graph inputs), handed to loader.occlude
            searched, draw_outputs = [], outputs[1 + m:]
            n_draws = m * len(self.method.inputs)
            source_outputs, draw_outputs = draw_outputs[n_draws:], draw_outputs[:n_draws]
        if searched:  # boxes found in the graph on saliency maps: (B, 1, 4) per copy
            meta_np["boxes"] = np.stack([_host(o) for o in searched], axis=1).astype(np.int32)
        b = meta_np["label"].shape[0]
        target_device = torch.device("cuda", self.device_id) if self.device == "gpu" else None
        image_batch = _concat_images(images, target_device, self._in_flight)

        def rows(a):  # (B, M, ...) -> (M*B, ...) copy-major
            return np.ascontiguousarray(np.swapaxes(a, 0, 1).reshape((m * b,) + a.shape[2:]))

        labels = np.tile(meta_np["label"].reshape(b), m)
        lam = rows(meta_np["lam"])
        partner = rows(meta_np["partner"])
        if searched:  # the exact kept area of the boxes searched in the graph (1 where nothing is pasted)
            lam = lam_from_boxes(rows(meta_np["boxes"]), self.cfg.output_size, self.cfg.output_size,
                                 partner).astype(np.float32)
        if deferred:  # the rows leave the graph clean: no partner until loader.occlude (draw.partner has it)
            partner = np.full_like(partner, -1)
        # partner holds a within-copy row index of the source image; turn it into a batch row.
        copy = np.repeat(np.arange(m), b)
        partner_row = np.where(partner >= 0, partner + copy * b, -1)
        partner_labels = np.where(partner >= 0, labels[np.clip(partner_row, 0, None)], labels)
        targets = soft_targets(labels, partner_labels, lam, self.num_classes, self.label_smoothing)
        meta = {"sample_id": np.tile(meta_np["sample_id"].reshape(b), m), "copy": copy,
                "partner": partner_row, "lam": lam, "boxes": rows(meta_np["boxes"]),
                "crop": rows(meta_np["crop"]), "flip": rows(meta_np["flip"]),
                "valid": np.tile(meta_np["valid"].reshape(b), m),
                "image_size": np.tile(meta_np["image_size"], (m, 1)), "position": np.tile(meta_np["position"], (m, 1)),
                "map_source": rows(meta_np["map_source"]), "map_age": rows(meta_np["map_age"])}
        if deferred:  # meta["draw.<name>"]: (M*B, ...) copy-major, row indices within the copy
            specs = self.method.inputs
            for k, spec in enumerate(specs):
                meta["draw." + spec.name] = np.concatenate(
                    [_host(draw_outputs[c * len(specs) + k]).astype(spec.dtype) for c in range(m)])
        meta = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in meta.items()}
        if deferred and source_outputs:  # the un-augmented rows (KeepAugment's selective-paste source)
            meta["source_images"] = _concat_images(source_outputs, target_device, self._in_flight)
        targets_t = torch.from_numpy(targets)
        labels_t = torch.from_numpy(labels)
        if target_device is not None:
            targets_t = targets_t.to(target_device, non_blocking=True)
            labels_t = labels_t.to(target_device, non_blocking=True)
        return Batch(image_batch, targets_t, labels_t, meta)


def _host(out) -> np.ndarray:
    """A DALI output (CPU or GPU TensorList) as a NumPy array."""
    if hasattr(out, "as_cpu"):  # TensorListGPU
        out = out.as_cpu()
    return np.array(out.as_tensor())


def _concat_images(images, device, in_flight: collections.deque) -> torch.Tensor:
    """Concatenate the copies' (B, 3, H, W) outputs into one (M*B, 3, H, W) tensor on ``device``.

    On the CPU the dynamic executor hands each output's memory over (DLPack keeps it alive), so a
    single copy costs no copy at all and M copies cost one concatenation. On the GPU the copies are
    issued on torch's current stream without a host synchronisation; DALI may reuse an output's memory
    once it is released, so the outputs stay referenced in ``in_flight`` until an event recorded after
    the copies has completed (checked without blocking at the next batch).
    """
    if device is None:
        parts = [torch.from_dlpack(tl.as_tensor()) for tl in images]
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    from nvidia.dali.plugin.pytorch import feed_ndarray

    while in_flight and in_flight[0][0].query():
        in_flight.popleft()
    first = images[0].as_tensor()
    shape = first.shape()
    b = shape[0]
    out = torch.empty((len(images) * b, *shape[1:]), dtype=_torch_dtype(first), device=device)
    stream = torch.cuda.current_stream(device)
    for c, tl in enumerate(images):
        feed_ndarray(tl.as_tensor(), out[c * b:(c + 1) * b], cuda_stream=stream)
    done = torch.cuda.Event()
    done.record(stream)
    in_flight.append((done, images))
    return out


def _torch_dtype(tensor) -> torch.dtype:
    from nvidia.dali import types

    return {types.FLOAT: torch.float32, types.FLOAT16: torch.float16}[tensor.dtype]
