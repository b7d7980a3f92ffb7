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

Spawn also re-imports the main script in every worker: :func:`check_spawn_safe_main` refuses, before any
worker starts, a script that would build the loader again in each of them.

A process that ``fork()``s while a loader's pipeline is live hands the child a copy of the pipeline without DALI's
threads or the reader workers' connections: using it would hang, and destroying it would join threads and release
shared memory that belong to the parent. So in a forked child every live loader is disowned
(:func:`track` / the at-fork hook): its pipeline and bank channel are kept, untouched, until the child exits,
and iterating the loader raises a ``RuntimeError`` saying to build a new loader in the child.
"""
from __future__ import annotations

import ast
import ctypes
import multiprocessing.process
import os
import signal
import sys
import threading
import time
import weakref

from nvidia.dali.pipeline import Pipeline
from PIL import Image

POLL_S = 0.2

_watchdog_started = False
_live_loaders: weakref.WeakSet = weakref.WeakSet()


def track(loader) -> None:
    """Disown ``loader`` in any child this process forks (it must have a ``disown_after_fork()`` method)."""
    _live_loaders.add(loader)


def _after_fork_in_child() -> None:
    if not _live_loaders:
        return
    for loader in list(_live_loaders):
        loader.disown_after_fork()
    _live_loaders.clear()
    # The reader workers are the parent's children: this process's exit must not terminate and join them (what
    # multiprocessing's exit handler does with the children it knows of; its own fork start forgets them likewise).
    multiprocessing.process._children = set()


os.register_at_fork(after_in_child=_after_fork_in_child)


def keep_until_exit(obj) -> None:
    """Never clean ``obj`` up in this process (the parent's DALI pipeline in a forked child): one more reference that
    nothing holds, so neither a collection nor the interpreter's shutdown frees it; out of DALI's list of pipelines to
    shut down at exit; and without the exit-time finalizers attached to it (DALI closes a pipeline's reader-worker
    pool from one: in the child that would stop the parent's workers). ``weakref.finalize`` keeps its finalizers in
    a private registry; ``peek`` / ``detach`` are its public handles on each."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    Pipeline._pipes.discard(weakref.ref(obj))
    for fin in list(weakref.finalize._registry):
        info = fin.peek()
        if info is not None and info[0] is obj:
            fin.detach()


def worker_setup_for(max_image_pixels) -> dict:
    """What a reader worker needs to know about its parent (stored on the source, pickled to workers)."""
    return {"parent_pid": os.getpid(), "max_image_pixels": max_image_pixels}


def on_worker_start(setup) -> None:
    """Called when the source is unpickled. Does nothing in the process that built the pipeline."""
    if not setup or os.getpid() == setup["parent_pid"]:
        return
    Image.MAX_IMAGE_PIXELS = setup["max_image_pixels"]  # None too: no limit, as in the parent's Runtime
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


def check_spawn_safe_main() -> None:
    """Refuse, before any worker starts, a main script the reader workers cannot re-import safely.

    The reader workers are started with ``spawn``: each re-imports the main module as
    ``__mp_main__``. If the loader is built or iterated by top-level code of that module outside
    ``if __name__ == "__main__":``, every worker would run it again and DALI only reports
    ``Workers initialization failed`` after a long traceback; a script piped on stdin cannot be
    re-imported at all. Interactive sessions and notebooks (no ``__file__``) are fine: spawn does
    not re-import them.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return
    if getattr(main, "__spec__", None) is None and not os.path.isfile(path):
        raise RuntimeError(
            f"the main script {path!r} cannot be re-imported by the loader's reader workers (they are "
            f"started with 'spawn', which re-imports the main script): a script piped on stdin or "
            f"otherwise without a file. Save it to a file, put the loader code under "
            f"`if __name__ == \"__main__\":`, and run `python file.py`.")
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            if not _in_main_guard(path, frame.f_lineno):
                raise RuntimeError(
                    f"the loader is used by top-level code of the main script {path} (line "
                    f"{frame.f_lineno}) outside `if __name__ == \"__main__\":`. Its reader workers are "
                    f"started with 'spawn' and re-import {os.path.basename(path)}, so each would run "
                    f"that code again. Move the code that builds and iterates the loader under "
                    f"`if __name__ == \"__main__\":`.")
        frame = frame.f_back


def _in_main_guard(path: str, lineno: int) -> bool:
    """True when line ``lineno`` of ``path`` lies inside a top-level ``if __name__ == "__main__":``
    block (unknown source: assume it does, rather than refuse a script we cannot read)."""
    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return True
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            end = max(getattr(n, "end_lineno", n.lineno) for n in node.body)
            if node.lineno <= lineno <= end:
                return True
    return False


def _is_main_test(test) -> bool:
    """Any ``__name__ == "__main__"`` comparison in the test (either order, possibly inside ``and``): a
    lenient reading, so that only scripts with no guard at all around the loader are refused."""
    for node in ast.walk(test):
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            sides = [node.left, node.comparators[0]]
            if any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and \
                    any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides):
                return True
    return False
