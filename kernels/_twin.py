"""CPU/CUDA twins compiled from one Python source, and the NumPy/CuPy dispatch used by ``kernels``.

A per-element function (one pixel, one row, one window) is written once as plain Python and
decorated with :func:`twin`. The returned :class:`Twin` is callable as plain Python (slow; handy
when debugging) and compiles lazily to

* ``Twin.cpu``  -- ``numba.njit`` (called from a CPU driver that loops over all elements), and
* ``Twin.cuda`` -- ``numba.cuda.jit(device=True)`` (called from a CUDA kernel, one thread per element).

Names in a twin's source that refer to other twins are rebound per target, so a twin may call
another twin and each target gets the matching compiled callee. Drivers (the CPU loop nest and the
CUDA kernel) are plain module functions turned into compiled objects by :func:`cpu_driver` and
:func:`cuda_kernel`; they are built on first use behind ``functools.cache`` getters (the cuCIM
pattern), so importing ``kernels`` never touches CUDA.

Writing twins: keep them to scalar code that both targets type the same way (no allocation, no
Python objects). Start float accumulators from a float64 array element rather than a literal (the
simulator runs the source as Python under NumPy 2 promotion), and prefer explicit ``if`` returns to
``return a and b`` (which Numba compiles into a loop nest ~10x slower).

``numba.cuda`` is imported only when a CUDA kernel is first needed. Under
``NUMBA_ENABLE_CUDASIM=1`` (set before ``numba.cuda`` is first imported) the kernels run in Numba's
simulator on NumPy arrays; ``tests/test_cudasim.py`` uses that with :data:`force_target` to compare
every kernel with its CPU twin.
"""
from __future__ import annotations

import functools
import os
import types

import numpy as np
from numba import njit

#: ``None``: pick the target from the array type (CuPy -> "cuda", else "cpu"). Tests set "cuda" to run
#: the CUDA kernels on NumPy arrays under the CUDA simulator.
force_target: str | None = None

#: Threads per block for the 1-D launches of every kernel here.
threads_per_block: int = 256

#: CPU drivers use ``numba.prange`` over rows; they are compiled with ``parallel=True`` only when
#: ``KERNELS_NUMBA_PARALLEL=1``. Serial is the default: the CPU path runs inside DALI's / the loader's own
#: worker threads and processes (nested thread pools oversubscribe, and Numba's GNU-OpenMP layer is not
#: fork-safe). Where the CPU path owns the machine (e.g. a training script's own step), threads help.
cpu_parallel: bool = os.environ.get("KERNELS_NUMBA_PARALLEL", "0") == "1"


def array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (CuPy is imported only then)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def target_for(xp) -> str:
    """Which compiled twin runs for arrays of module ``xp``: ``"cuda"`` for CuPy, ``"cpu"`` otherwise."""
    if force_target is not None:
        return force_target
    return "cuda" if xp is not np else "cpu"


class Twin:
    """A plain Python per-element function with lazily compiled CPU (njit) and CUDA (device) versions."""

    def __init__(self, fn):
        self.py = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        return self.py(*args)

    @functools.cached_property
    def cpu(self):
        # inline="always": Numba-IR inlining into the caller's loop nest; without it the per-element call
        # is not hoisted/vectorised and the CPU twins run several times slower.
        return njit(cache=True, inline="always")(_rebind(self.py, "cpu"))

    @functools.cached_property
    def cuda(self):
        from numba import cuda

        return cuda.jit(device=True)(_rebind(self.py, "cuda"))


def twin(fn) -> Twin:
    """Decorator: mark ``fn`` as per-element logic shared by the CPU twin and the CUDA kernel."""
    return Twin(fn)


def _rebind(fn, target: str, extra: dict | None = None):
    """Copy of ``fn`` whose global names that are :class:`Twin` objects point at their ``target`` build."""
    glb = dict(fn.__globals__)
    for name in fn.__code__.co_names:
        val = glb.get(name)
        if isinstance(val, Twin):
            glb[name] = getattr(val, target)
    if extra:
        glb.update(extra)
    new = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__qualname__ = fn.__qualname__
    new.__module__ = fn.__module__
    new.__doc__ = fn.__doc__
    return new


def cpu_driver(fn):
    """Compile a CPU loop nest (plain module function calling twins) with ``numba.njit``, threaded when
    :data:`cpu_parallel`."""
    driver = _rebind(fn, "cpu")
    if cpu_parallel:  # Numba's on-disk cache is keyed by qualname and signature, not by compile flags
        driver.__qualname__ += "_parallel"
    return njit(cache=True, parallel=cpu_parallel)(driver)


def cuda_kernel(fn):
    """Compile a CUDA kernel (plain module function calling twins; ``cuda`` is injected) with ``cuda.jit``."""
    from numba import cuda

    return cuda.jit(_rebind(fn, "cuda", {"cuda": cuda}))


def launch_1d(kernel, total: int, *args) -> None:
    """Launch ``kernel`` with one thread per element of a flattened index space of size ``total``."""
    if total <= 0:
        return
    tpb = int(threads_per_block)
    blocks = (total + tpb - 1) // tpb
    ptr = 0
    if array_module(*args) is not np:  # run on CuPy's current stream, ordered with the caller's work
        import cupy

        ptr = cupy.cuda.get_current_stream().ptr
    if ptr:
        from numba import cuda

        kernel[blocks, tpb, cuda.external_stream(ptr)](*args)
    else:  # CuPy's default (legacy null) stream is numba's default stream too
        kernel[blocks, tpb](*args)
