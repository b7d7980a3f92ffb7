"""Reader-worker lifecycle: a worker must not outlive the training process.

DALI's parallel ``external_source`` workers are ``spawn``-ed processes that wait on shared-memory
queues; when the training process dies without closing the pipeline (SIGKILL, SIGTERM's default
action, SIGHUP, a crash) they are re-parented and idle forever, holding ~300 MB each, ``/dev/shm``
objects and the parent's stdout (so ``subprocess.communicate()`` on the job never returns).

Each worker runs a watchdog thread that polls ``os.getppid()`` against the pid of the process that
built the pipeline and SIGKILLs itself as soon as they differ (within :data:`POLL_S`). This covers
every way the parent can die. ``prctl(PR_SET_PDEATHSIG)`` is deliberately not used: it fires when the
*thread* that started the worker exits, and the pipeline is built by whichever thread first iterates
the loader, so a loader iterated from a short-lived thread would lose its workers while still in use.
The multiprocessing resource tracker exits by itself once every process holding its pipe (the parent
and the workers) is gone.

The worker-side set-up also applies the parent's Pillow pixel limit (``max_image_pixels``), which
would otherwise be Pillow's default in the freshly spawned worker.
"""
from __future__ import annotations

import os
import signal
import threading
import time

POLL_S = 0.2

_watchdog_started = False


def worker_setup_for(max_image_pixels) -> dict:
    """What a reader worker needs to know about its parent (stored on the source, pickled to workers)."""
    return {"parent_pid": os.getpid(), "max_image_pixels": max_image_pixels}


def on_worker_start(setup) -> None:
    """Called when the source is unpickled. Does nothing in the process that built the pipeline."""
    if not setup or os.getpid() == setup["parent_pid"]:
        return
    if setup.get("max_image_pixels") is not None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = setup["max_image_pixels"]
    start_parent_watchdog(setup["parent_pid"])


def start_parent_watchdog(parent_pid: int, poll_s: float = POLL_S) -> None:
    """Kill this process when its parent is no longer ``parent_pid`` (once per process)."""
    global _watchdog_started
    if _watchdog_started:
        return
    _watchdog_started = True
    thread = threading.Thread(target=_watch, args=(parent_pid, poll_s), daemon=True,
                              name="dali-occlusion-parent-watchdog")
    thread.start()


def _watch(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGKILL)  # nothing to flush: the batches were for the dead parent
