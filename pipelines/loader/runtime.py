"""``Runtime``: how an :class:`~pipelines.loader.OcclusionLoader` runs, apart from what it yields.

The loader's own arguments say what a batch is (method, copies, size, seed, shard, ...); these say how
the work is spread and guarded: DALI's CPU threads, the reader's worker processes and how far they read ahead,
the queue depth, and the checks on the image files. No draw depends on them (every random choice comes from the
seed, see :mod:`pipelines.loader.plan`), so a run can retune them without changing its batches -- except
``on_bad="skip"``, which decides what a bad file's row becomes.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from kernels.checks import check_bool, check_choice, check_int

VERIFY_MODES = ("full", "header", "none")
ON_BAD = ("raise", "skip")
#: Pillow's own default decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), in pixels.
PILLOW_PIXEL_LIMIT = 89_478_485
#: default reader workers per rank: half the rank's cores, at most this many (each is a process of ~130 MB)
MAX_DEFAULT_WORKERS = 8
DEVICES = ("auto", "cpu", "gpu")


def resolve_device(device: str, device_id: int | None) -> tuple[str, int | None]:
    """The loader's ``device`` and ``device_id`` as it runs on them: ``"auto"`` is ``"gpu"`` when CUDA is usable,
    else ``"cpu"``; on the GPU, ``device_id`` ``None`` is the current CUDA device (``None`` on the CPU)."""
    import torch  # here only: the reader workers import this module without torch

    check_choice("device", device, DEVICES)
    if device_id is not None:
        check_int("device_id", device_id, lo=0)
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    elif device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("device='gpu' was requested but CUDA is not available; use device='cpu' or 'auto'")
    if device != "gpu":
        return device, None
    return device, torch.cuda.current_device() if device_id is None else int(device_id)


def local_world_size() -> int:
    """The ranks of this node: ``LOCAL_WORLD_SIZE`` (set by ``torchrun``), else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def cores_per_rank() -> int:
    """The cores this process may use: the machine's (its CPU affinity) shared by the ranks of the node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // local_world_size())


@dataclass(frozen=True)
class Runtime:
    """``OcclusionLoader(..., runtime=Runtime(num_threads=8, verify="header"))`` (or a dict of these fields).

    Every default is per rank: the node's cores are shared by its ``LOCAL_WORLD_SIZE`` ranks (``torchrun`` sets it),
    so eight ranks of a 112-core node get 14 cores each, not 112.

    ``num_threads``: DALI CPU threads (``None``: the rank's cores). ``py_workers``: the reader's worker processes
    (``fn.external_source(parallel=True)``; ``None``: half the rank's cores, 1 to 8). ``reader_depth``: batches the
    workers prepare ahead (the parallel source's own queue, apart from ``prefetch``; ``None``: ``2 * py_workers``).
    A batch-mode parallel source keeps at most this many batches in flight, so it must be at least ``py_workers``
    or workers sit idle: with storage latency, throughput grows with the workers only while they all have a batch.
    ``prefetch``: DALI's queue depth (batches the graph prepares ahead of the training loop).

    ``/dev/shm``: each batch in flight between the workers and the graph lives in a shared-memory chunk; a rank holds
    ``prefetch + reader_depth`` chunks, each grown to up to twice the largest batch it carried (the file bytes
    plus the small per-row arrays). ImageNet at 110 KB per file, 256 images per batch, the defaults on a 112-core
    node of 8 ranks (``py_workers`` 7, ``reader_depth`` 14, ``prefetch`` 2): 16 chunks of up to about 60 MB, so
    plan about 1 GB of ``/dev/shm`` per rank (Docker's default is 64 MB: run with ``--shm-size``).

    ``verify``: how each file is checked the first time the reader reads it, in the order it is served (each rank
    its own shard; nothing is read before the first batch): ``"full"`` (default) walks a JPEG's entropy-coded data
    (:mod:`pipelines.data.jpeg_scan`: also the corrupt scan data that libjpeg only warns about and decodes grey) and
    decodes other formats with Pillow, strictly; ``"header"`` checks the header only; ``"none"`` reads the size
    from the header and checks nothing else. Verdicts and image sizes are cached for later epochs and runs
    (:mod:`pipelines.data.file_cache`), keyed by each file's device, inode, size, mtime and ctime, so a replaced
    file is checked again. ``on_bad``: ``"raise"`` (default) stops at a bad file's batch, naming the file, after
    the batches before it are served; ``"skip"`` serves its row as a repeat of a good sample of the same batch,
    flagged ``meta["valid"] == 0`` like a pad row, with a warning naming the file, and records it in
    ``state_dict()`` (a resumed run skips it again). ``max_image_pixels``: Pillow's decompression-bomb limit for
    the checks (Pillow's default, 89.5 Mpx; ``None``: no limit). It also bounds the file size read: a file larger
    than 8 bytes per pixel of twice the limit is refused before it is read (``pipelines.data.imagefiles``).

    ``progress``: a wait of more than a few seconds (listing a large tree; ``python -m pipelines.data.verify``'s
    pass) shows a tqdm bar on stderr. ``None`` (default): on rank 0 only (``RANK`` unset or 0), and only when stderr
    is a terminal, so a job's log and the other ranks stay quiet; ``True``: always, on this rank; ``False``: never.
    The reader's checks make no wait of their own: each file is checked in the batch that first serves it.
    """

    num_threads: int | None = None
    py_workers: int | None = None
    reader_depth: int | None = None
    prefetch: int = 2
    verify: str = "full"
    on_bad: str = "raise"
    max_image_pixels: int | None = PILLOW_PIXEL_LIMIT
    progress: bool | None = None

    def __post_init__(self):
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads)
        if self.py_workers is not None:
            check_int("py_workers", self.py_workers)
        if self.reader_depth is not None:
            check_int("reader_depth", self.reader_depth)
        check_int("prefetch", self.prefetch)
        check_choice("verify", self.verify, VERIFY_MODES)
        check_choice("on_bad", self.on_bad, ON_BAD)
        if self.max_image_pixels is not None:
            check_int("max_image_pixels", self.max_image_pixels)
        check_bool("progress", self.progress, optional=True)

    @property
    def threads(self) -> int:
        """DALI's CPU threads: ``num_threads``, or the rank's cores."""
        return int(self.num_threads or cores_per_rank())

    @property
    def workers(self) -> int:
        """The reader's worker processes: ``py_workers``, or half the rank's cores (1 to 8)."""
        return int(self.py_workers or min(MAX_DEFAULT_WORKERS, max(1, cores_per_rank() // 2)))

    @property
    def depth(self) -> int:
        """Batches the reader workers prepare ahead: ``reader_depth``, or twice the workers."""
        return int(self.reader_depth or 2 * self.workers)

    @classmethod
    def of(cls, runtime) -> "Runtime":
        """``None`` (the defaults), a :class:`Runtime`, or a mapping of its fields."""
        if runtime is None:
            return cls()
        if isinstance(runtime, cls):
            return runtime
        if isinstance(runtime, Mapping):
            fields = [f.name for f in dataclasses.fields(cls)]
            unknown = sorted(set(runtime) - set(fields))
            if unknown:
                raise ValueError(f"runtime has no field(s) {', '.join(map(str, unknown))}; its fields are "
                                 f"{', '.join(fields)}")
            return cls(**runtime)
        raise ValueError(f"runtime must be None, a Runtime or a dict of its fields, got {runtime!r}")
