"""The GPU ``normalize_occlude`` kernels (``dali_ops/csrc/normalize_occlude/normalize_occlude_gpu.cuh``: the colour
transform's mean-colour launch and the per-pixel launch) run on the host, against the CPU operator (DALI): the
Random Erasing fills ("const", "rand", "pixel"), ColorJitter + Lighting on own and pasted pixels, MixUp's blend,
mirrors, partners of -1, float32 and float16, bit for bit. float16 is compared with the CPU operator's float32
values rounded to nearest even, the device's ``__float2half_rn``: DALI's host float16 conversion rounds an exact
tie the other way (seen here: 2.2900390625 -> 2.291015625), so the two devices' float16 outputs can differ by one
unit in the last place on such ties.

No GPU is needed: ``tests/cuda_emulation/cuda_runtime.h`` runs each thread block as host threads and the kernel
source is compiled unchanged with g++ (``__CUDA_ARCH__`` unset, so the shared per-pixel rules of
``normalize_occlude_math.h`` use plain float operations without FMA contraction, as the ``_rn`` intrinsics do on
the device). It checks the kernels' arithmetic and indexing, not what only a GPU shows (``make gpu-check``).
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from conftest import build_emulation
from dali_ops import mixing
from helpers import feeder
from kernels.color import color_params, draw_color

P = ctypes.c_void_p
MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    lib = build_emulation(tmp_path_factory.mktemp("emu"), "normalize_occlude_emu")
    lib.emu_normalize_occlude.argtypes = [P, P, P, P, P, P, P, P, P, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                          P, P, P, ctypes.c_int, ctypes.c_int]
    return lib


def pointers(arrays):
    return (ctypes.c_void_p * len(arrays))(*[None if a is None else a.ctypes.data for a in arrays])


def emulated(lib, imgs, boxes, index, mirror, blend, seeds, color, fill, fill_mode, dtype):
    n, H, W, _ = imgs.shape
    outs = [np.empty((3, H, W), np.float16 if dtype == "float16" else np.float32) for _ in range(n)]
    K = np.array([b.shape[0] for b in boxes], np.int32)
    inv = (np.float32(1) / np.asarray(STD, np.float32)).astype(np.float32)  # the operator's 1.f / std
    mean, fill = np.asarray(MEAN, np.float32), np.asarray(fill, np.float32)  # alive through the call
    keep = [np.ascontiguousarray(b, np.int32) for b in boxes]
    lib.emu_normalize_occlude(pointers(list(imgs)), pointers(outs), pointers([b if b.size else None for b in keep]),
                              K.ctypes.data, None if index is None else index.ctypes.data, mirror.ctypes.data,
                              blend.ctypes.data, seeds.ctypes.data, None if color is None else color.ctypes.data,
                              n, H, W, mean.ctypes.data, inv.ctypes.data, fill.ctypes.data,
                              mixing.FILL_MODES.index(fill_mode),
                              dtype == "float16")
    return np.stack(outs)


def operator(imgs, boxes, index, mirror, blend, seeds, color, fill, fill_mode, dtype):
    n = len(imgs)

    @pipeline_def(batch_size=n, num_threads=2, device_id=None, seed=0)
    def pipe():
        def node(b, layout=None):
            return fn.external_source(source=feeder(b), batch=True, layout=layout)

        args = dict(mirror=node(list(mirror)), mean=MEAN, std=STD, fill=fill, fill_mode=fill_mode, dtype=dtype,
                    noise_seed=node([np.int32(np.uint32(s).view(np.int32)) for s in seeds]))
        if color is not None:
            args["color"] = node(list(color))
        if index is not None:
            args["blend"] = node(list(blend))
        extra = [node(list(index))] if index is not None else []
        return mixing.normalize_occlude(node(list(imgs), "HWC"), node(list(boxes)), *extra, **args)

    p = pipe()
    p.build()
    (out,) = p.run()
    return np.stack([np.array(t) for t in out])


@pytest.mark.parametrize("fill_mode", ["const", "rand", "pixel"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", ["erase", "erase+color", "paste+color", "blend+color"])
def test_emulated_kernel_equals_the_cpu_operator(emu, fill_mode, dtype, case):
    rng = np.random.default_rng(len(case) * 7 + len(fill_mode))
    n, H, W = 5, 23, 29  # 667 pixels: three blocks of 256 threads, the last one partial
    imgs = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    boxes = [np.array([[2, 3, 15, 20], [8, 10, 30, 25], [-1, -1, -1, -1]], np.int32)]
    boxes += [np.stack([rng.integers(-2, 12, 2), rng.integers(-2, 12, 2), rng.integers(8, 25, 2),
                        rng.integers(8, 31, 2)], -1).astype(np.int32) for _ in range(n - 2)]
    boxes.append(np.zeros((0, 4), np.int32))
    mirror = rng.integers(0, 2, n).astype(np.int32)
    seeds = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    index = None
    blend = np.ones(n, np.float32)
    if case.startswith(("paste", "blend")):
        index = np.array([3, -1, 0, 4, 1], np.int32)
        if case.startswith("blend"):
            blend = rng.random(n).astype(np.float32)
    color = None
    if "color" in case:
        d = draw_color(rng, n, 0.4, 0.1)
        color = np.ascontiguousarray(color_params(d["order"], d["alpha"], d["light"]))
    fill = [0.5, -1.0, 2.0]
    want = operator(imgs, boxes, index, mirror, blend, seeds, color, fill, fill_mode, "float32").astype(dtype)
    got = emulated(emu, imgs, boxes, index, mirror, blend, seeds, color, fill, fill_mode, dtype)
    np.testing.assert_array_equal(got, want)
