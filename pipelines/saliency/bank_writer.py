"""The writing side of the saliency bank (:mod:`pipelines.saliency.bank`), in the training process: the model's
maps reduced to the bank's grid on their device (:func:`push_cells`), written in the background
(:class:`BankWriter`, all-gathered across ranks), and the loader's :class:`Bank` channel (the sync before each
epoch's reads, ``state_dict``, the temporary file). Apart from the reading side so that the reader workers
never import torch."""
from __future__ import annotations

import concurrent.futures
import os
import shutil

import numpy as np
import torch
import torch.distributed as dist

from pipelines.saliency.bank import BankFile, make_stamp
from pipelines.saliency.base import Channel


def push_cells(maps, crop, flip, image_size, grid: int):
    """The stored grid bytes of pushed maps (torch, on the maps' device): ``maps`` ``(n, h, w)``, each the
    saliency of a row whose crop window was ``crop`` ``(n, 4)`` ``y0, x0, h, w`` of a source image of
    ``image_size`` ``(n, 2)`` and was flipped by ``flip``. Returns ``(n, grid, grid)`` uint8: ``1 + round(254
    s)`` on the cells whose centre lies in the window (``s`` the cell's area average over its part inside the
    window, divided by the largest such cell of the row), 0 elsewhere and on every cell of a row whose cells are
    all 0 (a map that carries no saliency is stored as no map: the next visit falls back)."""

    maps = maps.detach().to(torch.float64)
    n, h, w = maps.shape
    dev = maps.device
    crop = torch.as_tensor(np.asarray(crop, np.float64).reshape(n, 4), device=dev)
    hw = torch.as_tensor(np.asarray(image_size, np.float64).reshape(n, 2), device=dev)
    flip = torch.as_tensor(np.asarray(flip).reshape(n).astype(bool), device=dev)
    maps = torch.where(flip[:, None, None], maps.flip(-1), maps)  # back to the source's orientation
    integral = torch.nn.functional.pad(maps.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (n, h+1, w+1)
    edges = torch.arange(grid + 1, device=dev, dtype=torch.float64)

    def axis(k, pixels):  # cell edges of one axis in map pixels, clipped to the window; centre inside?
        lo, ext, full = crop[:, k:k + 1], crop[:, k + 2:k + 3], hw[:, k:k + 1]
        at = ((edges * full / grid - lo) * pixels / ext).clamp(0, pixels)
        centre = (edges[:-1] + 0.5) * full / grid
        return at, (centre >= lo) & (centre < lo + ext)

    ys, in_y = axis(0, h)
    xs, in_x = axis(1, w)

    def corner(y, x):  # the integral image bilinear at fractional (y, x): exact area sums of the pixel map
        y0 = y.floor().clamp(max=h - 1).long()
        x0 = x.floor().clamp(max=w - 1).long()
        ty, tx = (y - y0)[:, :, None], (x - x0)[:, None, :]
        rows = torch.arange(n, device=dev)[:, None, None]

        def at(dy, dx):
            return integral[rows, (y0 + dy)[:, :, None], (x0 + dx)[:, None, :]]

        return ((1 - ty) * (1 - tx) * at(0, 0) + (1 - ty) * tx * at(0, 1) + ty * (1 - tx) * at(1, 0)
                + ty * tx * at(1, 1))

    s = corner(ys, xs)
    sums = s[:, 1:, 1:] - s[:, :-1, 1:] - s[:, 1:, :-1] + s[:, :-1, :-1]
    area = (ys[:, 1:] - ys[:, :-1])[:, :, None] * (xs[:, 1:] - xs[:, :-1])[:, None, :]
    covered = in_y[:, :, None] & in_x[:, None, :]
    mean = torch.where(covered & (area > 0), sums / area.clamp_min(1e-12), torch.zeros_like(sums))
    peak = mean.amax(dim=(1, 2), keepdim=True)
    rel = torch.where(peak > 0, mean / peak.clamp_min(1e-300), torch.zeros_like(mean)).clamp(0, 1)
    covered = covered & (peak > 0)
    return torch.where(covered, 1 + torch.round(254 * rel), torch.zeros_like(rel)).to(torch.uint8)


class BankWriter:
    """Pushes maps into a :class:`BankFile` off the training loop's critical path: the device-to-host copy
    and the file writes run in one background thread, in push order. With ``torch.distributed`` and more
    than one shard, every push is all-gathered first, so each rank's node file receives the maps of every
    rank (the sample a rank serves next epoch was usually seen by another); the ranks of a node split the
    writes by ``sample_id % LOCAL_WORLD_SIZE``."""

    def __init__(self, file: BankFile, rows_per_batch: int, distributed: bool):
        self.file = file
        self.rows = int(rows_per_batch)
        self.distributed = distributed
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="saliency-bank")
        self._pending: list = []  # futures of the writes not yet waited for (push and flush: the caller's thread)
        local_world = os.environ.get("LOCAL_WORLD_SIZE")
        self.local_world = int(local_world) if local_world and distributed else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.local_world > 1 else 0

    def push(self, ids, stamps, cells) -> None:
        """``ids``/``stamps`` (n,) int64 CPU tensors, ``cells`` (n, g, g) uint8 on any device."""

        g = self.file.grid
        ids = ids.to(torch.int64)
        stamps = stamps.to(torch.int64)
        event = work = gathered = None
        if self.distributed:
            work, gathered = self._all_gather(ids, stamps, cells)
        elif cells.is_cuda:
            host = torch.empty(cells.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(cells, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(cells.device))
            cells = host

        def write():
            if event is not None:
                event.synchronize()
            if work is not None:
                work.wait()
            parts = [(ids, stamps, cells)] if gathered is None else [self._unpack(t) for t in gathered]
            for part in parts:
                pid, pst, pcells = (np.asarray(t.cpu()) for t in part)
                keep = pid >= 0
                if self.local_world > 1:
                    keep &= pid % self.local_world == self.local_rank
                self.file.write(pid[keep], pst[keep], pcells.reshape(-1, g, g)[keep])

        self._pending.append(self._pool.submit(write))

    def _all_gather(self, ids, stamps, cells):
        """One asynchronous all-gather of ``[id, stamp, cells]`` rows padded to the batch's row count."""

        g = self.file.grid
        device = cells.device if dist.get_backend() == "nccl" else torch.device("cpu")
        n = ids.shape[0]
        if n > self.rows:
            raise ValueError(f"feedback got {n} rows, more than a batch's {self.rows}")
        packed = torch.full((self.rows, 16 + g * g), 255, dtype=torch.uint8, device=device)  # id -1: padding
        head = torch.stack([ids, stamps], 1).to(device)
        packed[:n, :16] = head.contiguous().view(torch.uint8).reshape(n, 16)
        packed[:n, 16:] = cells.reshape(n, g * g).to(device)
        out = [torch.empty_like(packed) for _ in range(dist.get_world_size())]
        return dist.all_gather(out, packed, async_op=True), out

    @staticmethod
    def _unpack(packed):
        """A gathered rank's rows back to ``(ids, stamps, cells)`` (padding rows have id -1)."""

        host = packed.cpu()
        head = host[:, :16].contiguous().view(torch.int64).reshape(-1, 2)
        return head[:, 0], head[:, 1], host[:, 16:]

    def flush(self) -> None:
        """Wait for every push so far to be in the file (raises a push's error here)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        self.file.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)


class Bank(Channel):
    """The loader's side of a saliency bank: the file, its background writer, the sync before each epoch's reads,
    its place in ``state_dict()``, and the temporary folder of a bank without a path."""

    def __init__(self, file: BankFile, rows_per_batch: int, num_shards: int, temp_dir: str | None):
        distributed = num_shards > 1 and dist.is_available() and dist.is_initialized()
        self.file, self.writer, self.temp_dir = file, BankWriter(file, rows_per_batch, distributed), temp_dir
        self.fresh = True  # emptied before the first batch unless restore() resumes it

    def before_epoch(self, epoch: int) -> None:
        """Every push of the previous epochs is in the file, on every rank (the reads of ``epoch`` use them)."""
        if self.fresh:
            self.file.clear()
            self.fresh = False
        self.writer.flush()
        if self.writer.distributed:
            dist.barrier()

    def state(self) -> dict:
        self.writer.flush()
        return {"bank": {"path": str(self.file.path), "generation": self.file.generation, "grid": self.file.grid,
                         "fingerprint": self.file.fingerprint}}

    def restore(self, state: dict, epoch: int, batch: int) -> None:
        """The bank the state names, unchanged since (same generation); the pushes it holds from the resumed
        position on are forgotten (the run makes them again)."""
        mine = self.state()["bank"]
        for key in ("path", "grid", "fingerprint", "generation"):
            if state["bank"].get(key) != mine[key]:
                raise ValueError(f"cannot resume: the state_dict's saliency bank has {key}="
                                 f"{state['bank'].get(key)!r}, this loader's bank has {mine[key]!r}"
                                 + (" (the bank file was emptied or replaced since the state was saved)"
                                    if key == "generation" else ""))
        self.file.forget_since(int(make_stamp(epoch, batch)))
        self.fresh = False

    def push(self, meta: dict, rows, maps) -> None:
        """The maps of batch ``rows`` reduced to the bank's grid on their device (:func:`push_cells`), stamped
        with the rows' position, written in the background."""
        g = self.file.grid
        if len(rows):
            cells = push_cells(maps, meta["crop"][rows].numpy(), meta["flip"][rows].numpy(),
                               meta["image_size"][rows].numpy(), g)
        else:
            cells = torch.zeros((0, g, g), dtype=torch.uint8, device=maps.device)
        position = meta["position"][rows].numpy()
        stamps = torch.from_numpy(make_stamp(position[:, 0], position[:, 1]))
        self.writer.push(meta["sample_id"][rows].to(torch.int64), stamps, cells)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            if self.temp_dir is not None:  # a temporary bank goes with its loader
                shutil.rmtree(self.temp_dir, ignore_errors=True)
