"""``Runtime``: how an :class:`~pipelines.loader.OcclusionLoader` runs, apart from what it yields.

The loader's own arguments say what a batch is (method, copies, size, seed, shard, ...); these say how
the work is spread and guarded: DALI's CPU threads, the reader's worker processes, the queue depth, and
the checks on the image files. No draw depends on them (every random choice comes from the seed, see
:mod:`pipelines.loader.plan`), so a run can retune them without changing its batches.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from kernels.checks import check_choice, check_int

VERIFY_MODES = ("full", "header", "none")
#: Pillow's own default decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), in pixels.
PILLOW_PIXEL_LIMIT = 89_478_485


@dataclass(frozen=True)
class Runtime:
    """``OcclusionLoader(..., runtime=Runtime(num_threads=8, verify="header"))`` (or a dict of these fields).

    ``num_threads``: DALI CPU threads (``None``: one per core, ``os.cpu_count()``). ``py_workers``: the
    reader's worker processes (``fn.external_source(parallel=True)``). ``prefetch``: DALI's queue depth
    (batches prepared ahead).

    ``verify``: ``"full"`` (default) decodes every file before the first batch (truncated and corrupt data)
    and raises one error listing all bad files; a file that decoded cleanly is remembered by size and mtime
    (:func:`pipelines.data.verify.verify_cached`), so later runs only ``stat`` it. ``"header"`` checks headers only
    (misses corrupt scan data); ``"none"`` skips the check (a bad file then stops the epoch where it is met).
    ``max_image_pixels``: Pillow's decompression-bomb limit for the checks and in the reader workers
    (Pillow's default, 89.5 Mpx; ``None``: no limit).
    """

    num_threads: int | None = None
    py_workers: int = 2
    prefetch: int = 2
    verify: str = "full"
    max_image_pixels: int | None = PILLOW_PIXEL_LIMIT

    def __post_init__(self):
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads)
        check_int("py_workers", self.py_workers)
        check_int("prefetch", self.prefetch)
        check_choice("verify", self.verify, VERIFY_MODES)
        if self.max_image_pixels is not None:
            check_int("max_image_pixels", self.max_image_pixels)

    @property
    def threads(self) -> int:
        """DALI's CPU threads: ``num_threads``, or one per core."""
        return int(self.num_threads or max(1, os.cpu_count() or 1))

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
