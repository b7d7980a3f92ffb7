"""Turn a failed ``pipeline.run()`` into an error whose first line names the real cause.

DALI reports a reader-worker exception as a bare ``Exception`` whose text is the worker's traceback,
raised by the ``run()`` of an *earlier* batch than the one being read (the workers run ``prefetch``
batches ahead). The old message blamed that earlier batch's innocent files. Here the worker's
:class:`~pipelines.data.imagefiles.BadImageError` is found in the traceback text, its file is located in
the serving order (so the batches before it can still be served, see ``OcclusionLoader._run``), and
a dead worker is reported as such.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.data.imagefiles import BadImageError
from pipelines.saliency.base import SourceFileError

# The last line of a worker traceback: "pipelines.data.imagefiles.BadImageError: <path>: <reason>"
_BAD_IMAGE = re.compile(r"^\S*BadImageError: (.*)$", re.MULTILINE)
_SOURCE_FILE = re.compile(r"^\S*SourceFileError: (.*)$", re.MULTILINE)
_WORKER_EXC = re.compile(r"Exception traceback received from worker", re.IGNORECASE)
_DEAD_WORKER = ("Worker data receiving interrupted", "Cannot receive data from the pool that has been closed",
                "Sending tasks to worker")


class ReaderFileError(BadImageError, RuntimeError):
    """A file that failed while an epoch was read (a ``BadImageError`` and, as before, a ``RuntimeError``)."""


class ReaderWorkerDied(RuntimeError):
    """A reader worker process exited (killed, out of memory) while the pipeline was running."""


@dataclass
class Failure:
    error: BaseException                    # what to raise
    bad_batch: tuple[int, int] | None = None  # (epoch, batch) holding the bad file, when it is known


def describe_failure(exc: BaseException, source, epoch: int, batch: int) -> Failure:
    """Classify the exception of ``run()`` for batch ``batch`` of ``epoch``; ``source`` is the loader's
    :class:`~pipelines.loader.source.ImageSource` (paths and serving order)."""
    text = str(exc)
    where = f"epoch {epoch}, batch {batch}"
    hint = ("Find all unreadable files with `python -m pipelines.data.verify ROOT` (it checks them all), or "
            "construct the loader with runtime=Runtime(on_bad='skip') to serve the rest without them.")
    source_file = _SOURCE_FILE.findall(text)
    if source_file:  # a file of the saliency source (the bank), not the batch's images
        return Failure(SourceFileError(f"{source_file[-1]} (read by a reader worker at {where} or a batch after it)"))
    found = _BAD_IMAGE.findall(text) if _WORKER_EXC.search(text) or "BadImageError" in text else []
    if found:
        path, _, reason = found[-1].partition(": ")
        for p in sorted(source.paths, key=len, reverse=True):  # a path may itself hold ": "
            if found[-1].startswith(p + ": "):
                path, reason = p, found[-1][len(p) + 2:]
                break
        bad = _locate(source, path, epoch, batch)
        at = f"epoch {bad[0]}, batch {bad[1]}" if bad else f"a batch after {where}"
        return Failure(ReaderFileError(path, f"{reason} (read by a reader worker for {at}). {hint}"), bad)
    if any(s in text for s in _DEAD_WORKER):
        return Failure(ReaderWorkerDied(
            f"a reader worker process died while serving {where} (killed, or out of memory: see the kernel "
            f"log / dmesg); DALI says: {text.strip()}. The loader dropped its pipeline: iterating again "
            f"rebuilds it at {where}."))
    ids = source.shard_plan(epoch).ids[batch * source.batch_size:][:source.batch_size]
    match = re.search(r"sample #(\d+)", text)
    if match and int(match.group(1)) < len(ids):
        path = source.paths[ids[int(match.group(1))]]
        return Failure(ReaderFileError(path, f"decoding failed at {where}: {text.strip()}\n{hint}"))
    files = ", ".join(source.paths[i] for i in ids)
    return Failure(RuntimeError(f"the pipeline failed at {where} (files of that batch: {files}): {text.strip()}\n"
                                f"{hint}"))


def dead_worker(pipe, epoch: int, batch: int) -> ReaderWorkerDied | None:
    """A :class:`ReaderWorkerDied` when one of ``pipe``'s reader worker processes has exited, else None.

    Checked before every ``run()``: scheduling a batch notifies the workers' shared-memory queue through a
    ``multiprocessing.Condition``, whose ``notify`` waits for a sleeping worker to wake up -- a worker
    killed while it slept makes that wait, and so the training loop, hang forever. A worker that dies
    during a ``run()`` can still do so (DALI's pool cannot tell); between batches it cannot."""
    pool = getattr(getattr(pipe, "_py_pool", None), "pool", None)  # DALI's ProcPool of the reader workers
    for proc in getattr(pool, "_processes", ()):
        if proc.exitcode is not None:
            where = f"epoch {epoch}, batch {batch}"
            return ReaderWorkerDied(
                f"a reader worker process died before {where} (pid {proc.pid}, exit code {proc.exitcode}: "
                f"killed, or out of memory: see the kernel log / dmesg). The loader dropped its pipeline: "
                f"iterating again rebuilds it at {where}.")
    return None


def _locate(source, path: str, epoch: int, batch: int, epochs: int = 2):
    """``(epoch, batch)`` of the first occurrence of ``path`` at or after ``(epoch, batch)`` (this epoch
    or the next: the workers run a few batches ahead, possibly into the next epoch)."""
    try:
        sid = source.paths.index(path)
    except ValueError:
        return None
    b = source.batch_size
    for e in range(epoch, epoch + epochs):
        ids = source.shard_plan(e).ids
        start = batch * b if e == epoch else 0
        hits = (ids[start:] == sid).nonzero()[0]
        if hits.size:
            return e, (start + int(hits[0])) // b
    return None
