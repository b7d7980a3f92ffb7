"""Every Numba CUDA kernel and device function in ``kernels`` compiles to PTX for sm_80 and sm_90.

Numba's CUDA simulator (tests/test_cudasim.py) runs the kernels as plain Python, so it cannot show that
they compile: e.g. the builtins ``max``/``min`` with two arguments work in the simulator but Numba's CUDA
target rejects them. ``numba.cuda.compile_ptx`` compiles without a GPU; with no driver Numba still asks
for the current device, so ``numba.cuda.dispatcher.get_current_device`` is stubbed with a device of the
target compute capability (DESIGN.md section 3). Each kernel is compiled with the argument types
``kernels.apply`` launches it with (C-contiguous arrays from NumPy, any layout from CuPy views), each
device twin on its own as well.
"""
from __future__ import annotations

import importlib
import inspect
import types as pytypes

import pytest

cuda = pytest.importorskip("numba.cuda")
from numba import types  # noqa: E402

from kernels import _twin, apply  # noqa: E402

#: every module of kernels/ whose functions could hold a CUDA kernel or a twin
MODULES = [importlib.import_module(f"kernels.{m}") for m in ("apply", "boxes", "crops", "labels", "saliency", "search")]

CCS = [(8, 0), (9, 0)]
A = types.Array
I = types.int64
B = types.boolean


@pytest.fixture(autouse=True)
def no_driver(monkeypatch, request):
    """compile_ptx without a GPU: Numba asks the (absent) driver for the current device's CC."""
    import numba
    import numba.cuda.dispatcher as dispatcher

    assert not numba.config.ENABLE_CUDASIM, "run this file without NUMBA_ENABLE_CUDASIM (the simulator compiles nothing)"
    cc = getattr(request, "param", (9, 0))
    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: pytypes.SimpleNamespace(compute_capability=cc), raising=False)


def _images(dtype, layout):
    return A(dtype, 4, layout)


IMAGE_TYPES = [types.uint8, types.float16, types.float32, types.float64]


def _kernel_cases():
    """(name, python driver, signature) of every CUDA kernel, with the types its launcher passes."""
    cases = []
    boxes = A(types.int32, 3, "C")        # apply.as_row_boxes: C-contiguous int32 (N, K, 4)
    partner = A(types.int64, 1, "C")      # apply._partner: int64
    for dt in IMAGE_TYPES:
        for layout in ("C", "A"):         # NumPy (copied to the device) / CuPy views with strides
            img = _images(dt, layout)
            tag = f"{dt}-{layout}"
            cases.append((f"erase[{tag}]", apply._erase_cuda, (img, img, boxes, A(dt, 1, "C"), B, B)))
            cases.append((f"paste_cells[{tag}]", apply._paste_cells_cuda,
                          (img, img, partner, A(types.boolean, 3, "C"), B)))
    return cases


def _device_cases():
    """(name, twin, signature) of every device twin, with the types the kernels call it with."""
    boxes = A(types.int32, 3, "C")
    partner = A(types.int64, 1, "C")
    img = _images(types.float32, "A")
    return [
        ("_in_any_box", apply._in_any_box, (boxes, I, I, I)),
        ("_cell_of", apply._cell_of, (I, I, I)),
        ("_takes_partner_cell", apply._takes_partner_cell, (partner, A(types.boolean, 3, "C"), I, I, I, I, I)),
        ("_copy_pixel", apply._copy_pixel, (img, img, B, partner, I, I, I, I, B)),
    ]


def test_the_cases_cover_every_cuda_kernel_and_twin():
    """A new kernel or twin in kernels/ must be added here (so it is compiled for real)."""
    drivers = {d[2] for d in apply._DRIVERS.values()}
    assert drivers == {fn for _, fn, _ in _kernel_cases()}
    twins = {obj for mod in MODULES for _, obj in inspect.getmembers(mod) if isinstance(obj, _twin.Twin)}
    assert twins == {tw for _, tw, _ in _device_cases()}
    # every module function of kernels/ that uses `cuda.` is a registered driver
    for mod in MODULES:
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ == mod.__name__ and "cuda.grid" in inspect.getsource(fn):
                assert fn in drivers, f"{mod.__name__}.{name} launches on CUDA but is not compiled here"


@pytest.mark.parametrize("no_driver", CCS, indirect=True, ids=lambda cc: f"sm{cc[0]}{cc[1]}")
@pytest.mark.parametrize("name, driver, sig", _kernel_cases(), ids=[c[0] for c in _kernel_cases()])
def test_kernel_compiles_to_ptx(no_driver, name, driver, sig):
    from numba import cuda as nb_cuda

    cc = nb_cuda.dispatcher.get_current_device().compute_capability
    fn = _twin._rebind(driver, "cuda", {"cuda": nb_cuda})
    ptx, restype = nb_cuda.compile_ptx(fn, sig, cc=cc)
    assert restype == types.none
    assert f".target sm_{cc[0]}{cc[1]}" in ptx and ".entry" in ptx


@pytest.mark.parametrize("no_driver", CCS, indirect=True, ids=lambda cc: f"sm{cc[0]}{cc[1]}")
@pytest.mark.parametrize("name, tw, sig", _device_cases(), ids=[c[0] for c in _device_cases()])
def test_device_twin_compiles_to_ptx(no_driver, name, tw, sig):
    from numba import cuda as nb_cuda

    cc = nb_cuda.dispatcher.get_current_device().compute_capability
    ptx, _ = nb_cuda.compile_ptx(_twin._rebind(tw.py, "cuda"), sig, device=True, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx and ".func" in ptx


def test_builtin_max_is_what_this_test_catches():
    """The failure mode the test exists for: Numba's built-in CUDA target (numba <= 0.6x without numba-cuda)
    does not compile a two-argument ``max`` in device code; the maintained ``numba-cuda`` target (the pinned
    stack) does. Either way the stub above reaches the real compiler."""
    from numba import cuda as nb_cuda

    def bad(x, a, b):
        x[0] = max(a, b)

    sig = (A(types.int64, 1, "C"), I, I)
    if "numba_cuda" in nb_cuda.__file__:
        ptx, _ = nb_cuda.compile_ptx(bad, sig, cc=(9, 0))
        assert ".target sm_90" in ptx
    else:
        with pytest.raises(Exception, match="Signature mismatch|max"):
            nb_cuda.compile_ptx(bad, sig, cc=(9, 0))
