"""The writing side of the saliency bank (:mod:`pipelines.saliency.bank`), in the training process: the model's
maps reduced to the bank's grid on their device (:func:`push_cells`), written in the background
(:class:`BankWriter`, each map sent to the rank that serves its sample next), and the loader's :class:`Bank` channel
(the epochs whose pushes are written, which the reader workers wait on; the rule for late pushes; ``state_dict``; the
writer slot). Apart from the reading side so that the reader workers never import torch."""
from __future__ import annotations

import concurrent.futures
import warnings

import numpy as np
import torch
import torch.distributed as dist

from pipelines.saliency.bank import BankFile, EpochProgress, make_stamp, stamp_epoch
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
    """Pushes maps into a :class:`BankFile` off the training loop's critical path: the device-to-host copy, the
    exchange among ranks and the file writes run in one background thread, in push order.

    Under ``torch.distributed`` with more than one shard, a pushed map goes to the one rank that serves its sample
    next epoch -- known in advance from that epoch's order and shards (``owner_of``, bound by the loader through
    :meth:`Bank.route`) -- in one ``all_to_all`` per push on the bank's own gloo group: each rank receives and
    writes about one batch of rows per step whatever the number of ranks (the ``all_gather`` it replaced sent every
    map to every rank). The ranks of a node share one file and write disjoint samples; a node keeps the maps of
    the samples its ranks serve next (a sample that moves to another node starts from its fallback there).
    ``traffic`` counts pushes, rows sent, rows and bytes received (the rows' 16-byte header and grid, plus the
    8-byte row count each rank sends every other), rows written, and pushes ignored as late (:meth:`Bank.push`)."""

    def __init__(self, file: BankFile, group=None):
        self.file = file
        self.group = group  # the gloo process group of the exchange; None: one process writes what it pushes
        self.owner_of = None  # (ids, epoch) -> the shard serving each sample in that epoch (Bank.route)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="saliency-bank")
        self._pending: list = []  # futures of the writes not yet waited for (push and flush: the caller's thread)
        self.traffic = dict(pushes=0, rows_sent=0, rows_received=0, bytes_received=0, rows_written=0, late_pushes=0)

    def push(self, ids, stamps, cells) -> None:
        """``ids``/``stamps`` (n,) int64 CPU tensors, ``cells`` (n, g, g) uint8 on any device."""

        event = None
        if cells.is_cuda:
            host = torch.empty(cells.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(cells, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(cells.device))
            cells = host
        ids, stamps = ids.to(torch.int64).numpy(), stamps.to(torch.int64).numpy()

        def write():
            if event is not None:
                event.synchronize()
            rows = (ids, stamps, cells.numpy().reshape(len(ids), self.file.grid, self.file.grid))
            if self.group is not None:
                rows = self._exchange(*rows)
            self.file.write(*rows)
            self.traffic["pushes"] += 1
            self.traffic["rows_written"] += len(rows[0])

        self._pending.append(self._pool.submit(write))

    def _exchange(self, ids, stamps, cells):
        """Send each row to the rank serving its sample next epoch; returns the rows this rank received."""
        g2 = self.file.grid ** 2
        world = dist.get_world_size(self.group)
        owner = np.zeros(len(ids), np.int64)
        epochs = stamp_epoch(stamps)
        for epoch in np.unique(epochs):  # one, the batch's: its samples go to their server of the next epoch
            owner[epochs == epoch] = self.owner_of(ids[epochs == epoch], int(epoch) + 1)
        order = np.argsort(owner, kind="stable")
        send_counts = np.bincount(owner, minlength=world).astype(np.int64)
        packed = np.empty((len(ids), 16 + g2), np.uint8)
        packed[:, :16] = np.stack([ids, stamps], 1)[order].view(np.uint8).reshape(-1, 16)
        packed[:, 16:] = cells.reshape(len(ids), g2)[order]
        recv_counts = torch.empty(world, dtype=torch.int64)
        dist.all_to_all_single(recv_counts, torch.from_numpy(send_counts), group=self.group)
        received = torch.empty((int(recv_counts.sum()), 16 + g2), dtype=torch.uint8)
        dist.all_to_all_single(received, torch.from_numpy(packed), output_split_sizes=recv_counts.tolist(),
                               input_split_sizes=send_counts.tolist(), group=self.group)
        out = received.numpy()
        head = np.ascontiguousarray(out[:, :16]).view(np.int64).reshape(-1, 2)
        self.traffic["rows_sent"] += len(ids)
        self.traffic["rows_received"] += len(out)
        self.traffic["bytes_received"] += out.nbytes + 8 * (world - 1)
        return head[:, 0], head[:, 1], out[:, 16:].reshape(-1, self.file.grid, self.file.grid)

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
    """The loader's side of a saliency bank: the file, its background writer, the epochs whose pushes are written
    (:class:`~pipelines.saliency.bank.EpochProgress`, which the reader workers wait on), the rule for late pushes,
    its place in ``state_dict()``, and its writer slot (:meth:`~pipelines.saliency.bank.BankFile.claim`, taken by
    :meth:`route`)."""

    def __init__(self, file: BankFile, progress: EpochProgress, num_shards: int):
        group = None
        if num_shards > 1 and dist.is_available() and dist.is_initialized():
            if dist.get_world_size() != num_shards:
                raise ValueError(f"a saliency bank under torch.distributed needs one shard per rank: num_shards="
                                 f"{num_shards}, world size {dist.get_world_size()}")
            # its own gloo group: the exchange runs in the writer's thread, apart from the training's collectives
            group = dist.new_group(backend="gloo")
        self.file, self.progress = file, progress
        self.writer = BankWriter(file, group)
        self.shard = 0
        self.sealed = -1  # the last epoch whose pushes are written: a push of it or an earlier one comes too late
        self.fresh = True  # emptied before the first batch unless restore() resumes it

    def route(self, owner_of, shard: int) -> None:
        if self.writer.group is not None and dist.get_rank(self.writer.group) != shard:
            raise ValueError(f"a saliency bank under torch.distributed needs shard_id == rank: this loader has "
                             f"shard_id={shard} on rank {dist.get_rank(self.writer.group)}")
        self.file.claim(int(shard))  # before this loader empties or forgets anything in the file
        self.writer.owner_of, self.shard = owner_of, int(shard)

    def before_epoch(self, epoch: int) -> None:
        """Every push of the epochs before ``epoch`` is in the file (the reads of ``epoch`` on use them)."""
        if self.fresh:
            self.file.clear()
            self.fresh = False
            if self.writer.group is not None:  # no rank pushes before every rank has emptied the shared file
                dist.barrier(self.writer.group)
        self.writer.flush()
        self._seal(epoch - 1)

    def end_epoch(self, epoch: int) -> None:
        """This rank's pushes of ``epoch`` are in the file: its reader workers may read epoch ``epoch + 1``."""
        self.writer.flush()
        self._seal(epoch)

    def _seal(self, epoch: int) -> None:
        self.file.check_size()
        self.sealed = epoch
        self.progress.set(self.shard, epoch)

    def reader_stopped(self) -> None:
        """The loader dropped its pipeline: workers waiting for an epoch's pushes stop waiting."""
        self.progress.set(self.shard, self.progress.CLOSED)

    def state(self) -> dict:
        self.writer.flush()
        return {"bank": {"path": str(self.file.path), "generation": self.file.generation, "grid": self.file.grid,
                         "fingerprint": self.file.fingerprint}}

    def restore(self, state: dict, epoch: int, batch: int) -> None:
        """The bank the state names, unchanged since; the pushes it holds from the resumed position on are
        forgotten (the run makes them again). A bank is named by its generation (a fresh random token each time
        a file is created or emptied), not by its path: the same file reached by another path (a relative path
        from another folder, a symlink, a moved run folder) resumes; another file, or this one emptied since, is
        refused."""
        mine = self.state()["bank"]
        theirs = state["bank"]
        for key in ("grid", "fingerprint", "generation"):
            if theirs.get(key) != mine[key]:
                raise ValueError(f"cannot resume: the state_dict's saliency bank ({theirs.get('path')}) has {key}="
                                 f"{theirs.get(key)!r}, this loader's bank ({mine['path']}) has {mine[key]!r}"
                                 + (": another bank file, or this one emptied or replaced since the state was saved"
                                    if key == "generation" else ""))
        self.file.forget_since(int(make_stamp(epoch, batch)))
        self.fresh = False

    def push(self, meta: dict, rows, maps) -> None:
        """The maps of batch ``rows`` reduced to the bank's grid on their device (:func:`push_cells`), stamped
        with the rows' position, written in the background.

        The rule for late pushes: a push for a batch of an epoch the loader has sealed (it served that epoch's last
        batch and was asked for the next one: :meth:`end_epoch`), or of any earlier epoch, is ignored with a
        warning. The next epoch's reads may have begun by then, so whether its batches saw the push would depend
        on timing and ``prefetch``; ignoring it keeps every batch a function of the seed and the pushes made in
        time. Every rank applies the rule to the same batch, so the ranks' exchanges stay paired."""
        epoch = int(meta["position"][:, 0].min()) if len(meta["position"]) else self.sealed + 1
        if epoch <= self.sealed:
            self.writer.traffic["late_pushes"] += 1
            warnings.warn(f"saliency-bank feedback for a batch of epoch {epoch} came after the loader sealed epoch "
                          f"{self.sealed} (it served the last batch and was asked for the next): ignored, so that "
                          f"no batch depends on when a push arrives. Call feedback before the loop asks the loader "
                          f"for the batch after the epoch's last one.", stacklevel=4)
            return
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
        """Write what was pushed, then close the files and free the writer slot."""
        try:
            self.writer.close()
        finally:
            self.file.close()
            self.progress.close()
