"""The GPU ``box_search`` kernel (``dali_ops/csrc/box_search/box_search_gpu.cuh``) run on the host, against the CPU
operator: every method, odd and 224^2 maps, ties, -1 rows, maps smaller than the window.

No GPU is needed: ``tests/cuda_emulation/cuda_runtime.h`` runs each thread block as 256 host threads with a
barrier for ``__syncthreads`` and block-wide exchanges for the warp shuffles, and the kernel source is
compiled unchanged with g++. This checks the kernel's algorithm (integral order, reductions, tie rules,
radix select, the quantile decision) bit for bit; it cannot check what only a GPU shows (races the
emulation's barriers hide, launch limits, speed) -- ``tests/dali_ops/test_dali_mixing.py``'s GPU tests and
``make gpu-check`` do that where a GPU is lent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import oracles as ref
from helpers import emulated_box_search as emulated, search_both

ROOT = Path(__file__).resolve().parents[2]
def _ragged(z, key):
    return [z[f"{key}.{i}"] for i in range(int(z[f"{key}.n"]))]


def test_emulated_kernel_equals_the_cpu_operator_on_the_gpu_vectors(box_search_emu):
    """tests/gpu_vectors/box_search.npz holds the CPU operator's boxes (make gpu-vectors)."""
    with np.load(ROOT / "tests" / "gpu_vectors" / "box_search.npz") as z:
        cases = sorted(k[: -len(".kwargs")] for k in z.files if k.endswith(".kwargs"))
        assert len(cases) == 24
        for case in cases:
            kw = json.loads(str(z[f"{case}.kwargs"]))
            got = emulated(box_search_emu, _ragged(z, f"{z[f'{case}.maps']}.map"), _ragged(z, f"{case}.draws"),
                           [int(v) for v in z[f"{case}.index"]], kw)
            np.testing.assert_array_equal(got, z[f"{case}.out"], err_msg=case)


@pytest.mark.parametrize("method", ["peak_q", "peak_f", "max_window", "keep_cut", "keep_paste"])
def test_emulated_kernel_equals_the_cpu_operator_on_random_tied_maps(box_search_emu, method):
    """Fresh inputs through the CPU operator (DALI) and the emulated kernel: few saliency levels (ties at the
    maximum and at the quantile's order statistics), quantile levels at both ends, more rows than threads."""
    rng = np.random.default_rng(sum(map(ord, method)))
    for trial in range(4):
        big = 300 if trial == 3 else 40  # 300: more rows and columns than the block has threads
        shapes = [(int(rng.integers(1, big)), int(rng.integers(1, big))) for _ in range(5)]
        levels = int(rng.integers(2, 6))
        sal = [(np.floor(rng.random(s) * levels) / levels).astype(np.float32) for s in shapes]
        index = [int(v) for v in rng.integers(-1, 5, 5)]
        if method.startswith("peak"):
            draws = [rng.integers(0, 40, 2).astype(np.int32) for _ in shapes]
            kw = dict(method="peak", quantize=method == "peak_q")
        elif method == "max_window":
            draws = [rng.integers(0, 2**31 - 1, 2).astype(np.int32) for _ in shapes]
            kw = dict(method="max_window", size=int(rng.integers(1, 9)), stride=int(rng.integers(1, 4)),
                      jitter=int(rng.integers(0, 6)))
        else:
            draws = [rng.integers(0, 40, (int(rng.integers(1, 12)), 2)).astype(np.int32) for _ in shapes]
            kw = dict(method=method, size=int(rng.integers(2, 12)),
                      tau=repr(float(rng.choice([0.0, 1.0, 0.5, float(rng.random())]))))
        cpu = search_both(sal, draws, list(np.array(index, np.int32)), kw, devices=("cpu",))["cpu"][:, 0]
        np.testing.assert_array_equal(emulated(box_search_emu, sal, draws, index, kw), cpu, err_msg=f"{kw} {shapes} {index}")


@pytest.mark.parametrize("method", ["keep_cut", "keep_paste"])
def test_tries_on_the_order_statistics_around_the_quantile(box_search_emu, method):
    """A try whose score is exactly s_(k) (cut) or s_(k+1) (paste), the two scores numpy.quantile interpolates
    between: counting cannot decide it, the lerp does (it passes when gamma is strictly inside (0, 1)). The
    emulated kernel, the CPU operator and the NumPy restatement (numpy.quantile) must agree."""
    rng = np.random.default_rng(41 if method == "keep_cut" else 43)
    size, tau = 6, 0.37
    below = method == "keep_cut"
    sal, draws = [], []
    for H, W in [(13, 17), (20, 9), (31, 31), (8, 8)]:
        m = rng.random((H, W)).astype(np.float32)
        scores = ref.keep_scores(m, size)
        flat = np.sort(scores.ravel())
        pos = (flat.size - 1) * tau
        k = int(np.floor(pos))
        assert 0 < pos - k < 1 and flat[k] < flat[k + 1]
        target = flat[k] if below else flat[k + 1]
        cy, cx = np.argwhere(scores == target)[0]
        later = rng.integers(0, min(H, W), (3, 2))
        d = np.concatenate([[[cy, cx]], later]).astype(np.int32)
        assert ref.keep_pick(scores, [tuple(t) for t in d], tau, below) == 0  # the oracle passes try 0
        sal.append(m)
        draws.append(d)
    kw = dict(method=method, size=size, tau=repr(tau))
    index = list(range(len(sal)))
    cpu = search_both(sal, draws, list(np.array(index, np.int32)), kw, devices=("cpu",))["cpu"][:, 0]
    for i, m in enumerate(sal):
        np.testing.assert_array_equal(cpu[i], ref.cutout_box(draws[i][0, 0], draws[i][0, 1], size, *m.shape))
    np.testing.assert_array_equal(emulated(box_search_emu, sal, draws, index, kw), cpu)


def test_emulated_kernel_searches_each_rows_own_region_side(box_search_emu):
    """KeepCutMix: a per-row ``size`` (the row's CutMix side, 0 and 1 included) on the GPU kernel, against
    KeepAugment restated (region sums of that side, numpy.quantile)."""
    rng = np.random.default_rng(3)
    n, H, W, tau = 6, 13, 17, 0.6
    maps = [rng.random((H, W)).astype(np.float32) for _ in range(n)]
    sizes = [5, 0, 1, 9, 2, 13]
    draws = [np.stack([rng.integers(0, H, 7), rng.integers(0, W, 7)], -1) for _ in range(n)]
    got = emulated(box_search_emu, maps, draws, list(range(n)), dict(method="keep_cut", size=56, tau=str(tau)), sizes)
    for i in range(n):
        t = ref.keep_pick(ref.keep_scores(maps[i], sizes[i]), draws[i], tau, below=True)
        assert tuple(got[i]) == ref.cutout_box(draws[i][t][0], draws[i][t][1], sizes[i], H, W)
