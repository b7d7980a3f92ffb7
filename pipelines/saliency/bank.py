"""The saliency bank: the model's saliency of every sample, kept from one visit of the sample to the next
(docs/model_saliency.md, "The saliency bank").

The training loop hands back maps it already has (NormGrad from hooks on its normal backward, the
attention of its forward: :class:`pipelines.saliency.extractors.SaliencyTap`) with ``loader.feedback(batch, maps)``;
the bank keeps one small grid per sample in *source-image* coordinates, and on the sample's next visit
the reader re-crops it to the new crop window and flip and hands it to the graph's search operators.

Layout. A memory-mapped file: a 4 KiB JSON header (format, dataset fingerprint, sample count, grid,
generation), then per sample two *slots*, each a ``grid`` x ``grid`` uint8 grid with an int64 stamp
``epoch << 32 | batch`` of the push that wrote it (-1: never). Cell ``(i, j)`` covers the source-image
rectangle ``[i H / g, (i+1) H / g) x [j W / g, (j+1) W / g)``. A stored byte ``v`` is ``1 + round(254 s)``
with ``s`` in ``[0, 1]`` the cell's saliency relative to the largest cell of the push that wrote it (maps
of different steps have different scales; the searches only compare values within a map); ``0`` marks a
cell no push has covered yet (read as saliency 0).

Why two slots: a read in epoch ``e`` uses the slot with the latest stamp of an epoch before ``e``; a push
in epoch ``e`` merges into the *other* slot (or into the slot it already wrote in epoch ``e``). Reads and
writes of one epoch never touch the same bytes, so the reader workers may prefetch while the training
loop pushes, a batch does not depend on how far the pushes had got (same seed, same batches), and a run
resumed anywhere in epoch ``e`` finds the maps the original run read. A push that comes after its epoch was
sealed (the next epoch's reads may have begun) is ignored by rule
(:meth:`pipelines.saliency.bank_writer.Bank.push`). With the default ``grid=22`` a sample takes
``2 * 22 * 22 + 16 = 984`` bytes, the largest square grid in the 1 KB budget with two slots; uint8 rather than
fp16 because a relative saliency needs no exponent and twice the cells fit.

Geometry (both directions follow ``fn.resize``'s pixel-centre convention, ``align_corners=False``):

* push (:func:`pipelines.saliency.bank_writer.push_cells`, torch, on the maps' device): the row's map is un-flipped; a cell whose
  centre lies inside the row's crop window takes the exact area average of the map over the part of
  the cell inside the window (an integral image read at fractional corners); other cells keep their
  older content (copies of a sample pushed together keep the larger value of a cell both cover);
* read: the reader workers send each row's grid (484 bytes at ``grid=22``) and its new crop window in grid units,
  x reversed for a flipped row; the graph (:meth:`BankSaliency.graph_map`, on the CPU or the GPU) makes each
  output pixel of the window bilinear between the four nearest cell centres (clamped at the border), at the
  resolution the search runs at. A row whose window holds no written cell centre falls back (``fallback``).
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nvidia.dali import fn, types

from kernels.checks import check_choice, check_int
from pipelines.saliency.base import CropInfo, ReadWaitTimeout, SaliencySource, SlotSpec, SourceFileError, SourceRead

FALLBACKS = ("image", "uniform")
HEADER_BYTES = 4096
MAGIC = "occlusion-saliency-bank"
FORMAT = 1
EMPTY = -1
HEADER_FIELDS = {"magic": str, "format": int, "num_samples": int, "grid": int, "fingerprint": str, "generation": str}


def make_stamp(epoch, batch):
    """The int64 stamp of a push made by the batch ``batch`` of ``epoch``."""
    return (np.asarray(epoch, np.int64) << 32) | np.asarray(batch, np.int64)


def stamp_epoch(stamp):
    """The epoch of a stamp (-1 for :data:`EMPTY`)."""
    return np.asarray(stamp, np.int64) >> 32


def _views(path, num_samples: int, grid: int, mode: str):
    """The file's ``stamps`` ``(n, 2)`` int64 and ``cells`` ``(n, 2, g, g)`` uint8 as memory maps."""
    return (np.memmap(path, np.int64, mode, HEADER_BYTES, (num_samples, 2)),
            np.memmap(path, np.uint8, mode, HEADER_BYTES + 16 * num_samples, (num_samples, 2, grid, grid)))


def latest_before(stamps, epoch):
    """Per row of ``stamps`` ``(n, 2)``: the slot of the latest push made before ``epoch`` (what a read in
    ``epoch`` uses, and what a push in ``epoch`` merges into), and whether there is one."""
    usable = (stamps >= 0) & (stamp_epoch(stamps) < epoch)
    return np.argmax(np.where(usable, stamps, np.iinfo(np.int64).min), axis=1), usable.any(axis=1)


def fd_path(fd: int) -> str:
    """``/proc/<pid>/fd/<fd>``: a path other processes (the reader workers) open to reach this process's open file,
    named or not."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def bank_bytes(num_samples: int, grid: int) -> int:
    """The size of a bank file: its header, then each sample's row (:meth:`BankSaliency.bytes_per_sample`)."""
    return HEADER_BYTES + num_samples * BankSaliency.bytes_per_sample(grid)


def dataset_fingerprint(names, labels) -> str:
    """SHA-1 of the dataset's ``name<TAB>label`` lines: a bank is only read for the dataset it was written for.
    A name is hashed as the file system's bytes (``os.fsencode``): any file name works, a name that is not valid
    UTF-8 included, and a UTF-8 name hashes as it always did."""
    h = hashlib.sha1()
    for name, label in zip(names, labels):
        h.update(os.fsencode(name) + f"\t{int(label)}\n".encode())
    return h.hexdigest()


def reserve(fd: int, size: int, path) -> None:
    """Allocate the first ``size`` bytes of the open file ``fd`` on the disk (``posix_fallocate``): a bank is
    written through memory maps, and a write into a hole of a sparse file on a full disk is a SIGBUS that kills
    the process without a traceback. A full disk is named here instead, before any work."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(exc.errno, f"cannot reserve {size} bytes for the saliency bank {path} "
                                     f"({os.strerror(exc.errno)}): free disk space or give the bank another "
                                     f"path") from None
        raise


def _lock(fd: int, slot: int, how: str) -> bool:
    """An open-file-description (OFD) write lock on bytes ``[8 slot, 8 slot + 8)`` of ``fd``: ``how`` is
    ``"wait"``, ``"try"`` (False when another open file holds it) or ``"unlock"``. OFD locks belong to the open
    file, not the process: a second loader in the same process conflicts with the first, closing another
    descriptor of the file (NumPy's memmap does) releases nothing, and the kernel frees them when the holder
    exits, however it dies."""
    command = {"wait": fcntl.F_OFD_SETLKW, "try": fcntl.F_OFD_SETLK, "unlock": fcntl.F_OFD_SETLK}[how]
    kind = fcntl.F_UNLCK if how == "unlock" else fcntl.F_WRLCK
    try:  # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks)
        fcntl.fcntl(fd, command, struct.pack("hhqqi4x", kind, os.SEEK_SET, 8 * slot, 8, 0))
    except OSError as exc:
        if how == "try" and exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


@dataclass(frozen=True)
class BankSaliency(SaliencySource):
    """The saliency bank as a method's source (``saliency=BankSaliency(path)``, or the shorthand
    ``saliency="bank", bank=path``): how a loader keeps the model's maps.

    ``path``: the bank file (``None``: a temporary file, one process only, unlinked as soon as it is open so
    that nothing of it outlives the process). Ranks of one node give the same path and share the file (one writer
    slot per shard: :meth:`BankFile.claim`); each node keeps its own copy. ``grid``: cells per side of a sample's
    grid. ``fallback``: the map of a row whose window holds no pushed cell -- ``"image"`` (the
    method's image saliency, computed in the graph for those rows only) or ``"uniform"`` (no saliency
    information: i.i.d. uniform cells from the batch's seed, re-cropped like a map, so the search picks a
    place at random, as the unguided method would)."""

    name = "bank"

    path: str | os.PathLike | None = None
    grid: int = 22
    fallback: str = "image"
    #: bound by :meth:`attach`: the reader workers' view of the file (opened lazily in each worker)
    reader: "BankReader | None" = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self):
        if self.path is not None and not isinstance(self.path, (str, os.PathLike)):
            raise ValueError(f"bank path must be a file path (str or os.PathLike) or None, got {self.path!r}")
        check_int("bank grid", self.grid, lo=2, hi=255)
        check_choice("bank fallback", self.fallback, FALLBACKS)

    @staticmethod
    def bytes_per_sample(grid: int) -> int:
        return 2 * grid * grid + 2 * 8

    # -- reader side ----------------------------------------------------------------------------
    def slots(self):
        # per row: its grid (g x g x 1 uint8, 484 bytes at g = 22: no full-size map crosses from the workers) and its
        # window in grid units, flipped rows with x reversed; with the image fallback, whether the row uses its map
        return (SlotSpec("bank_grid", np.uint8), SlotSpec("bank_roi_start", np.float32),
                SlotSpec("bank_roi_end", np.float32)) + (
            (SlotSpec("bank_use", np.int32),) if self.fallback == "image" else ())

    def read(self, crop: CropInfo, rng):
        """The crop's grid as stored and its window in grid units, x reversed on flipped rows (the graph re-crops:
        :meth:`graph_map`). Rows with no pushed
        cell centre in their window (and pad rows) fall back: an empty grid, whose zeros the graph adds to their image
        saliency (``"image"``), or random cells from ``rng`` (``"uniform"``)."""
        cells, age, found = self.reader.lookup(crop.sample_id, crop.epoch, crop.shard)
        use = found & window_holds_pushed_cell(cells, crop.crop, crop.image_size) & (crop.valid > 0)
        cells[~use] = (rng.integers(1, 256, size=(int((~use).sum()),) + cells.shape[1:], dtype=np.uint8)
                       if self.fallback == "uniform" else 0)
        start, end = grid_window(crop.crop, crop.flip, crop.image_size, self.grid)
        arrays = {"bank_grid": cells[..., None], "bank_roi_start": start, "bank_roi_end": end,
                  "bank_use": use.astype(np.int32)}
        return SourceRead({s.name: arrays[s.name] for s in self.slots()}, use, np.where(use, age, -1))

    # -- graph side -----------------------------------------------------------------------------
    def graph_map(self, g, u8, mirror, nodes):
        """The row's map at the output size, on the graph's device: the grid's bytes as saliency (``v`` ->
        ``(v - 1) / 254``, 0 for the uncovered ``v = 0``; on the ``g x g`` cells), then ``fn.resize`` of the grid as a
        one-channel image over the row's window in grid units (linear, no antialiasing: each output pixel bilinear
        between the four nearest cell centres, clamped at the border -- the rule of the push's cells, see the module
        docstring; a window whose x runs backwards comes out flipped). With the image fallback, the fine-grained
        saliency operator computes the rows that have no map and passes the others' through (``skip``, ``prior``):
        no full-size arithmetic merges the two."""
        grid = g.on(fn.reshape(nodes["bank_grid"], layout="HWC"))
        values = fn.lookup_table(grid, keys=list(range(1, 256)), values=[(v - 1) / 254.0 for v in range(1, 256)],
                                 default_value=0.0, dtype=types.FLOAT)
        crop = fn.resize(values, size=(g.size, g.size), roi_start=nodes["bank_roi_start"],
                         roi_end=nodes["bank_roi_end"], roi_relative=False, interp_type=types.INTERP_LINEAR,
                         antialias=False)
        prior = fn.reshape(crop, shape=(g.size, g.size), layout="HW")
        if self.fallback == "image":
            return fn.occlusion.fine_grained_saliency(u8, prior, mirror=mirror, skip=nodes["bank_use"])
        return prior

    # -- loader side ----------------------------------------------------------------------------
    def attach(self, dataset, *, rows_per_batch: int, num_shards: int, last_batch: str):
        temp_dir = None
        path = self.path
        if path is None:
            if num_shards > 1:
                raise ValueError("a saliency bank shared by shards needs a path every rank of a node can open: "
                                 "bank=BankSaliency('/local/disk/bank.bin') or bank='/local/disk/bank.bin'")
            temp_dir = tempfile.mkdtemp(prefix="occlusion-bank-")
            path = Path(temp_dir) / "bank.bin"
        if num_shards > 1 and last_batch == "partial":
            raise ValueError("a saliency bank with num_shards > 1 needs last_batch='drop' or 'pad': every rank must "
                             "push the same number of batches (each push is one exchange among the ranks)")
        # the writing side needs torch, which the reader workers (they unpickle this source) never import
        from pipelines.saliency.bank_writer import Bank

        n = len(dataset.paths)
        file = BankFile(path, n, self.grid, dataset.fingerprint)
        progress = EpochProgress(progress_path(file.path), num_shards, create=True)
        if temp_dir is not None:  # a temporary bank lives by its open descriptors only: nothing of it outlives the
            file.unlink()         # process, however it ends (kill -9 included)
            shutil.rmtree(temp_dir, ignore_errors=True)
        bound = dataclasses.replace(self, path=file.path)
        object.__setattr__(bound, "reader", BankReader(file.open_path, n, self.grid, self.fallback, num_shards,
                                                       progress=progress.open_path, name=file.path))
        return bound, Bank(file, progress, num_shards)


#: the name the bank's spec had before it became a source (``pipelines.SaliencyBank``)
SaliencyBank = BankSaliency


class BankFile:
    """The bank's memory-mapped file (see the module docstring for its layout), opened for writing.

    ``path`` is resolved to its real path (a relative path, a symlinked or moved folder name the same file). The
    file is created when missing, complete or not at all: under the creation lock of its ``<bank>.lock`` side file
    one process builds it as ``<bank>.creating`` -- its space reserved on the disk (:func:`reserve`), every stamp
    empty, the header last -- and renames it into place, so a file at the path is always a whole bank or a foreign
    one, named at once (empty, damaged header, other dataset or grid, truncated). One writer per rank slot:
    :meth:`claim`. The file stays open for the object's life; the reader workers open it as
    :attr:`open_path`."""

    def __init__(self, path, num_samples: int, grid: int, fingerprint: str):
        self.path = Path(os.path.realpath(path))
        self.num_samples, self.grid, self.fingerprint = int(num_samples), int(grid), fingerprint
        self.size = bank_bytes(self.num_samples, self.grid)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        self.fd = None
        try:
            _lock(self._lock_fd, 0, "wait")  # slot 0: creation (ranks of a node race to create the file)
            try:
                if not os.path.lexists(self.path):
                    self._create()
            finally:
                _lock(self._lock_fd, 0, "unlock")
            self.fd = os.open(self.path, os.O_RDWR)
            self._check()
            reserve(self.fd, self.size, self.path)  # also a file left sparse by an older version
        except BaseException:
            self.close()
            raise
        self.stamps, self.cells = _views(self.path, self.num_samples, self.grid, "r+")

    def _create(self) -> None:
        part = Path(f"{self.path}.creating")
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            reserve(fd, self.size, self.path)  # the cells read as zeros: "no push"
            os.pwrite(fd, np.full((self.num_samples, 2), EMPTY, np.int64).tobytes(), HEADER_BYTES)
            self._write_header(fd, uuid.uuid4().hex)
            os.rename(part, self.path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def _check(self) -> None:
        """The file at the path is this loader's bank: a clear error naming it otherwise."""
        actual = os.fstat(self.fd).st_size
        if actual == 0:
            raise ValueError(f"saliency bank {self.path} is an empty file (0 bytes); a bank for this dataset and grid "
                             f"is a {self.size}-byte file that starts with its header. Delete it (a new bank is "
                             f"created there) or give the loader another bank path.")
        header = self.header()
        mine = {"num_samples": self.num_samples, "grid": self.grid, "fingerprint": self.fingerprint}
        for key, value in mine.items():
            if header[key] != value:
                raise ValueError(f"saliency bank {self.path} was written for another dataset or grid: its {key} is "
                                 f"{header[key]!r}, this loader's is {value!r}. Give the loader another bank "
                                 f"path (or delete the file to start afresh).")
        self.check_size(actual)

    def check_size(self, actual: int | None = None) -> None:
        """The file still has its full size (a bank truncated under a memory map would be a SIGBUS)."""
        actual = os.fstat(self.fd).st_size if actual is None else actual
        if actual != self.size:
            raise ValueError(f"saliency bank {self.path} has {actual} bytes, expected {self.size}: a truncated or "
                             f"foreign file. Delete it (a new bank is created there) or give another path.")

    @property
    def open_path(self) -> str:
        """The path the reader workers open: this process's descriptor of the file, which stays valid after the
        names are gone (:meth:`unlink`, a temporary bank)."""
        return fd_path(self.fd)

    def claim(self, shard: int) -> None:
        """Take the writer slot of ``shard`` (slot ``shard + 1`` of ``<bank>.lock``), held until :meth:`close` or
        the process ends. Ranks of one node share the file with one slot each; a second loader on the slot --
        a re-run notebook cell, a peek loader, a second job given the same path -- is refused, before it empties
        or forgets any map of the first."""
        if not _lock(self._lock_fd, shard + 1, "try"):
            raw = os.pread(self._lock_fd, 8, 8 * (shard + 1))
            pid = int.from_bytes(raw, "little") if len(raw) == 8 else 0
            holder = ("another loader of this process" if pid == os.getpid() else
                      f"process {pid}" if pid else "another process")
            raise RuntimeError(
                f"saliency bank {self.path} is in use: {holder} writes the maps of shard {shard} into it. Two loaders "
                f"on one bank would empty and overwrite each other's maps. Give this loader another bank path, or "
                f"end the other loader first (`del loader`; its process exiting frees the bank too); the ranks of "
                f"one node share a bank with distinct shard_id.")
        os.pwrite(self._lock_fd, os.getpid().to_bytes(8, "little"), 8 * (shard + 1))

    def unlink(self) -> None:
        """Remove the bank's names (the file, its ``.progress`` and ``.lock``): the open loader goes on with its
        descriptors, and the disk space is freed when the last of them closes."""
        for name in (self.path, progress_path(self.path), lock_path(self.path)):
            Path(name).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file and free its writer slot."""
        for name in ("fd", "_lock_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def _write_header(self, fd, generation: str) -> None:
        text = json.dumps({"magic": MAGIC, "format": FORMAT, "num_samples": self.num_samples, "grid": self.grid,
                           "fingerprint": self.fingerprint, "generation": generation}).encode()
        os.pwrite(fd, text.ljust(HEADER_BYTES, b" "), 0)

    def header(self) -> dict:
        """The file's header, checked: a clear ``ValueError`` naming the file for anything but a bank header."""
        raw = os.pread(self.fd, HEADER_BYTES, 0)
        try:
            header = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the limit
            header = None
        if not isinstance(header, dict) or header.get("magic") != MAGIC:
            raise ValueError(f"{self.path} is not a saliency bank file (no bank header in its first {HEADER_BYTES} "
                             f"bytes): give the loader another bank path, or delete the file if it is a damaged bank")
        damaged = [key for key, kind in HEADER_FIELDS.items()
                   if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool)]
        if damaged or header["format"] != FORMAT:
            raise ValueError(f"saliency bank {self.path} has a damaged header (" + (
                f"{', '.join(damaged)} missing or of the wrong type" if damaged else
                f"format {header['format']!r}, this version reads {FORMAT}") + "): delete it or give another path")
        return header

    @property
    def generation(self) -> str:
        """Changes whenever the bank is emptied (:meth:`clear`): a saved state names the generation it read."""
        return self.header()["generation"]

    def clear(self) -> None:
        """Forget every map (a new generation)."""
        self.stamps[:] = EMPTY
        self.stamps.flush()
        self._write_header(self.fd, uuid.uuid4().hex)

    def forget_since(self, stamp: int) -> None:
        """Forget the pushes made at or after ``stamp`` (a resume at that position makes them again).

        Refuses when the bank holds pushes of a later epoch: their merges may have overwritten the maps
        that epoch ``stamp_epoch(stamp)`` reads, so the resumed run could not read what the original did."""
        epoch = int(stamp_epoch(stamp))
        latest = int(stamp_epoch(self.stamps.max())) if self.num_samples else -1
        if latest > epoch:
            raise ValueError(f"cannot resume at epoch {epoch}: the saliency bank {self.path} already holds maps "
                             f"pushed in epoch {latest}, which replaced some that epoch {epoch} reads. Resume from "
                             f"the latest checkpoint, or give the loader a new bank path to start the maps afresh.")
        late = self.stamps >= stamp
        if late.any():
            self.stamps[late] = EMPTY
            self.stamps.flush()

    def write(self, ids, stamps, cells) -> None:
        """Merge pushed ``cells`` ``(n, g, g)`` uint8 (0: not covered) of samples ``ids`` made at ``stamps``, in
        one vectorised pass. Rows of one sample in one push (its copies) are combined first by the larger value
        of each cell: a stored byte is 0 where a copy did not cover the cell and ``1 + round(254 s)`` where it did,
        so the maximum keeps whatever any copy saw (a copy whose window cut a cell short must not erase it).
        Each sample then writes one slot: the one it already wrote in this epoch (another push of its copies),
        else the other slot than the latest push of an earlier epoch, whose cells it starts from."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if ids.size == 0:
            return
        self.check_size()  # a write past the end of a truncated file would be a SIGBUS
        stamps = np.asarray(stamps, np.int64).reshape(-1)
        samples, row = np.unique(ids, return_inverse=True)
        new = np.zeros((samples.size,) + self.cells.shape[2:], np.uint8)
        np.maximum.at(new, row, np.asarray(cells, np.uint8).reshape((ids.size,) + new.shape[1:]))
        stamp = np.full(samples.size, np.iinfo(np.int64).min)
        np.maximum.at(stamp, row, stamps)
        slots = np.array(self.stamps[samples])  # (m, 2)
        same = (slots >= 0) & (stamp_epoch(slots) == stamp_epoch(stamp)[:, None])
        latest, found = latest_before(slots, stamp_epoch(stamp)[:, None])
        again = same.any(axis=1)
        target = np.where(again, np.argmax(same, axis=1), np.where(found, 1 - latest, 0))
        base = np.where(again, target, latest)
        merged = np.array(self.cells[samples, base])
        merged[~(again | found)] = 0  # nothing pushed before: the uncovered cells stay unwritten
        np.copyto(merged, new, where=new > 0)
        self.cells[samples, target] = merged
        self.stamps[samples, target] = stamp  # after the cells: a reader that sees the stamp sees the cells

    def flush(self) -> None:
        self.cells.flush()
        self.stamps.flush()


class EpochProgress:
    """The bank's side file ``<bank>.progress``: per shard, the last epoch whose pushes for the samples that shard
    serves next are all in the bank file (:meth:`pipelines.saliency.bank_writer.Bank.end_epoch` writes it after
    flushing; a read of epoch ``e`` waits for ``e - 1``). One aligned int64 per shard in a memory map, so a reader
    worker polls it without a system call. :data:`CLOSED` tells workers of a dropped pipeline to stop waiting."""

    CLOSED = np.iinfo(np.int64).max

    def __init__(self, path, num_shards: int, *, create: bool):
        self.path, self.num_shards = Path(path), int(num_shards)
        # kept open: the reader workers open it as open_path (a temporary bank's names are gone)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o644)
        if create:  # ranks of a node share the file: each may grow it, none shrinks it
            if os.fstat(self.fd).st_size < 8 * self.num_shards:
                os.ftruncate(self.fd, 8 * self.num_shards)
            reserve(self.fd, 8 * self.num_shards, self.path)
        self.epochs = np.memmap(self.path, np.int64, "r+" if create else "r", 0, (self.num_shards,))

    @property
    def open_path(self) -> str:
        return fd_path(self.fd)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def set(self, shard: int, epoch: int) -> None:
        self.epochs[shard] = epoch

    def wait(self, shard: int, epoch: int, timeout: float, bank) -> None:
        """Until shard ``shard``'s pushes of epoch ``epoch`` are written (every epoch up to it)."""
        deadline, pause = time.monotonic() + timeout, 0.001
        while True:
            done = int(self.epochs[shard])
            if done == self.CLOSED:
                raise RuntimeError(f"the loader dropped this pipeline while a reader worker of shard {shard} waited "
                                   f"for epoch {epoch}'s saliency-bank pushes")
            if done >= epoch:
                return
            if time.monotonic() > deadline:
                raise ReadWaitTimeout(
                    f"a reader worker of shard {shard} waited {timeout:.0f} s for the saliency-bank pushes of epoch "
                    f"{epoch} (bank {bank}; {self.path} says epoch {done} is the last written): the training loop "
                    f"stopped near the end of epoch {epoch} for longer than that")
            time.sleep(pause)
            pause = min(2 * pause, 0.02)


#: how long a reader worker waits for the previous epoch's pushes (the loader then rebuilds and waits again)
WAIT_S = 600.0


class BankReader:
    """The reader workers' view of a bank: opened read-only, lazily, in each worker (picklable). A read of epoch
    ``e`` first waits until the shard's pushes of epoch ``e - 1`` are in the file (:class:`EpochProgress`): the
    pipeline and its workers live across epochs, and the next epoch's first batches are read while this one ends.
    ``path`` and ``progress`` are the names to open (the loader's descriptors, :attr:`BankFile.open_path`);
    ``name`` the bank's own path, for messages."""

    def __init__(self, path, num_samples: int, grid: int, fallback: str, num_shards: int = 1, *, progress=None,
                 name=None):
        self.path, self.num_samples, self.grid, self.fallback = str(path), int(num_samples), int(grid), fallback
        self.num_shards = int(num_shards)
        self.progress = str(progress_path(path) if progress is None else progress)
        self.name = str(path if name is None else name)
        self.size = bank_bytes(self.num_samples, self.grid)
        self._maps = self._progress = None

    def __getstate__(self):
        return {**self.__dict__, "_maps": None, "_progress": None}

    def _open(self):
        # every read: a bank truncated while the loader runs is named here, not met as a SIGBUS in the memory map
        size = os.stat(self.path).st_size
        if size != self.size:
            raise SourceFileError(f"saliency bank {self.name} has {size} bytes, expected {self.size}: it was "
                                  f"truncated or replaced while the loader ran (the batch's image files are fine)")
        if self._maps is None:
            self._maps = _views(self.path, self.num_samples, self.grid, "r")
            self._progress = EpochProgress(self.progress, self.num_shards, create=False)
        return self._maps

    def lookup(self, ids, epoch: int, shard: int = 0):
        """Per sample of ``ids`` the grid an epoch-``epoch`` read uses: ``(cells (n, g, g) uint8, age (n,) int,
        found (n,) bool)``; ``age`` is ``epoch`` minus the epoch of the push (-1 where nothing was pushed)."""
        stamps_all, cells_all = self._open()
        if epoch > 0:
            self._progress.wait(shard, epoch - 1, WAIT_S, self.name)
        ids = np.asarray(ids, np.int64)
        stamps = np.array(stamps_all[ids])
        slot, found = latest_before(stamps, epoch)
        cells = np.array(cells_all[ids, slot])
        cells[~found] = 0
        age = np.where(found, epoch - stamp_epoch(stamps[np.arange(ids.size), slot]), -1)
        return cells, age.astype(np.int32), found


def progress_path(bank_path) -> Path:
    """The bank's :class:`EpochProgress` file, beside it."""
    return Path(f"{bank_path}.progress")


def lock_path(bank_path) -> Path:
    """The bank's lock file, beside it: slot 0 guards the file's creation, slot ``s + 1`` is shard ``s``'s writer
    (:meth:`BankFile.claim`), holding the pid of the process that took it."""
    return Path(f"{bank_path}.lock")


def grid_window(crop, flip, image_size, grid: int):
    """``(roi_start, roi_end)`` ``(n, 2)`` float32: the crop windows ``(n, 4)`` ``y0, x0, h, w`` of source images of
    ``image_size`` ``(n, 2)`` in the coordinates of their ``grid`` x ``grid`` cells (cell ``i`` spans ``[i, i + 1)``,
    its centre at ``i + 0.5``); where ``flip`` ``(n,)`` is set, x runs from the window's right edge to its left
    (``fn.resize`` then mirrors its output: pixel ``o`` samples where the unflipped ``S - 1 - o`` does)."""
    crop = np.asarray(crop, np.float64).reshape(-1, 4)
    scale = grid / np.asarray(image_size, np.float64).reshape(-1, 2)
    start, end = crop[:, :2] * scale, (crop[:, :2] + crop[:, 2:]) * scale
    flipped = np.asarray(flip).reshape(-1).astype(bool)
    start[flipped, 1], end[flipped, 1] = end[flipped, 1], start[flipped, 1].copy()
    return start.astype(np.float32), end.astype(np.float32)


def window_holds_pushed_cell(cells, crop, image_size):
    """Per row: whether the window ``crop`` ``(n, 4)`` holds the centre of a written cell of ``cells`` ``(n, g, g)``
    (a row whose window holds none falls back)."""
    cells = np.asarray(cells)
    g = cells.shape[-1]
    crop = np.asarray(crop, np.int64).reshape(-1, 4)
    hw = np.asarray(image_size, np.int64).reshape(-1, 2)
    centres = (np.arange(g) + 0.5)[None, :]
    in_y = (centres * hw[:, :1] / g >= crop[:, :1]) & (centres * hw[:, :1] / g < crop[:, :1] + crop[:, 2:3])
    in_x = (centres * hw[:, 1:] / g >= crop[:, 1:2]) & (centres * hw[:, 1:] / g < crop[:, 1:2] + crop[:, 3:4])
    return ((cells > 0) & in_y[:, :, None] & in_x[:, None, :]).any(axis=(1, 2))
