"""The GPU fine-grained saliency kernels (``dali_ops/csrc/fine_grained_saliency/fine_grained_saliency_gpu.cuh``)
run on the host, through their own launch sequence (``LaunchFineGrainedSaliency``), against the CPU operator's
maps (the committed GPU vectors) and OpenCV: uint8 input at full and reduced resolution, float32 input
(SaliencyMix's official call), mirrored, odd sizes.

No GPU is needed: ``tests/cuda_emulation`` runs each thread block as host threads with barriers for
``__syncthreads``, block-wide exchanges for the warp shuffles and ``cub::BlockScan``, and the kernel source is
compiled unchanged with g++. This checks the kernels' arithmetic and indexing bit for bit; it cannot check what
only a GPU shows (races the emulation's barriers hide, nvcc's code, launch limits, speed) --
``tests/dali_ops/test_saliency.py``'s GPU tests and ``make gpu-check`` do that where a GPU is lent.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from conftest import build_emulation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    lib = build_emulation(tmp_path_factory.mktemp("emu"), "saliency_emu")
    lib.emu_fine_grained_saliency.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                              ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
                                              ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_void_p),
                                              ctypes.c_int, ctypes.c_int]
    return lib


def emulated(lib, images, mirror, max_side=0):
    """The CUDA kernels' maps of ``images`` (all uint8 RGB or all float32 HWC, non-empty)."""
    images = [np.ascontiguousarray(i) for i in images]
    n = len(images)
    outs = [np.full(i.shape[:2], np.nan, np.float32) for i in images]
    ints = lambda v: (ctypes.c_int * n)(*[int(x) for x in v])  # noqa: E731
    rc = lib.emu_fine_grained_saliency((ctypes.c_void_p * n)(*[i.ctypes.data for i in images]),
                                       int(images[0].dtype == np.float32), ints([i.shape[0] for i in images]),
                                       ints([i.shape[1] for i in images]), ints(mirror),
                                       (ctypes.c_void_p * n)(*[o.ctypes.data for o in outs]), n, max_side)
    assert rc == 0
    return outs


def _ragged(z, key):
    return [z[f"{key}.{i}"] for i in range(int(z[f"{key}.n"]))]


def test_emulated_kernels_equal_the_cpu_operator_on_the_gpu_vectors(emu):
    """tests/gpu_vectors/saliency.npz holds the CPU operator's maps (make gpu-vectors). One sample per launch:
    a batch's grid spans its largest sample, and emulating the 224^2 sample's grid for every sample costs
    minutes; the tests below launch mixed-size batches."""
    with np.load(ROOT / "tests" / "gpu_vectors" / "saliency.npz") as z:
        cases = sorted(k[: -len(".max_side")] for k in z.files if k.endswith(".max_side"))
        assert cases == ["float", "max_side0", "max_side64"]
        for case in cases:
            images, mirror = _ragged(z, f"{case}.image"), z[f"{case}.mirror"]
            for i, want in enumerate(_ragged(z, f"{case}.out")):
                (got,) = emulated(emu, [images[i]], [mirror[i]], int(z[f"{case}.max_side"]))
                np.testing.assert_array_equal(got, want, err_msg=f"{case} sample {i}")


def test_emulated_float_kernels_equal_opencv_on_every_rounding_case(emu):
    """float32 input at widths 1..39 (every case of OpenCV's float gray rounding and integral blocks) and
    heights 1..9, some mirrored: OpenCV's map of the array as it is (through the NumPy oracle, which
    tests/dali_ops/test_saliency.py proves equal to cv2)."""
    from oracles_saliency import fine_grained_float

    rng = np.random.default_rng(4)
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    imgs = [((rng.integers(0, 256, (1 + w % 9, w, 3)).astype(np.float32) / np.float32(255) - mean) / std)
            .astype(np.float32) for w in range(1, 40)]
    mirror = [w % 3 == 0 for w in range(1, 40)]
    for img, flag, got in zip(imgs, mirror, emulated(emu, imgs, mirror)):
        seen = np.ascontiguousarray(img[:, ::-1]) if flag else img
        np.testing.assert_array_equal(got, fine_grained_float(seen), err_msg=str(img.shape))


def test_emulated_uint8_kernels_equal_the_kernel_module(emu):
    """uint8 input (full and reduced resolution): kernels.saliency.fine_grained, which equals OpenCV."""
    from kernels.saliency import fine_grained

    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in rng.integers(1, 40, (8, 2))]
    for max_side in (0, 17):
        for img, got in zip(imgs, emulated(emu, imgs, [0] * len(imgs), max_side)):
            np.testing.assert_array_equal(got, fine_grained(img, max_side=max_side), err_msg=str(img.shape))
