"""dali_ops.mixing operators in CPU pipelines against the NumPy oracles of kernels.reference (sliced and
painted boxes, brute-force window sums, the SaliencyMix reference's box rule, KeepAugment restated)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from dali_ops import mixing
from kernels import reference as ref, search


def run_op(batches, op, batch_size):
    """Feed per-sample lists through external_source, apply ``op(*nodes)``, return the outputs as lists."""

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=None, seed=0)
    def pipe():
        nodes = [fn.external_source(source=_feeder(b), batch=True) for b in batches]
        out = op(*nodes)
        return tuple(out) if isinstance(out, (tuple, list)) else out

    p = pipe()
    p.build()
    outs = p.run()
    return [[np.array(t) for t in o] for o in outs]


def _feeder(batch):
    def source():
        return batch
    return source


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def random_boxes(rng, n, k, H, W):
    y0 = rng.integers(-3, H, size=(n, k))
    x0 = rng.integers(-3, W, size=(n, k))
    b = np.stack([y0, x0, y0 + rng.integers(0, H // 2 + 2, (n, k)), x0 + rng.integers(0, W // 2 + 2, (n, k))],
                 -1).astype(np.int32)
    b[rng.random((n, k)) < 0.3] = -1
    return b


@pytest.mark.parametrize("layout, dtype", [("CHW", "float32"), ("HWC", "uint8")])
def test_erase_boxes_matches_sliced_oracle(rng, layout, dtype):
    n, H, W = 4, 13, 17
    x = (rng.standard_normal((n, 3, H, W)).astype(np.float32) if dtype == "float32"
         else rng.integers(0, 256, (n, 3, H, W), dtype=np.uint8))
    boxes = random_boxes(rng, n, 3, H, W)
    fill = [0.5, -1.0, 2.0] if dtype == "float32" else [124, 116, 104]
    feed = x if layout == "CHW" else x.transpose(0, 2, 3, 1)
    (out,) = run_op([list(np.ascontiguousarray(feed)), list(boxes)],
                    lambda im, b: mixing.erase_boxes(im, b, fill, layout=layout, dtype=dtype), n)
    expect = ref.erase_nchw(x, boxes, np.array(fill, x.dtype))
    for i in range(n):
        got = out[i] if layout == "CHW" else out[i].transpose(2, 0, 1)
        np.testing.assert_array_equal(got, expect[i])
        assert got.dtype == x.dtype


@pytest.mark.parametrize("layout, dtype", [("CHW", "float32"), ("HWC", "uint8")])
def test_paste_boxes_with_permute_batch_matches_clovaai_slicing(rng, layout, dtype):
    n, H, W = 5, 11, 14
    x = (rng.standard_normal((n, 3, H, W)).astype(np.float32) if dtype == "float32"
         else rng.integers(0, 256, (n, 3, H, W), dtype=np.uint8))
    partner = np.array([3, -1, 0, 3, 4])
    boxes = random_boxes(rng, n, 2, H, W)
    boxes[partner < 0] = -1
    source = np.where(partner >= 0, partner, np.arange(n)).astype(np.int32)
    feed = x if layout == "CHW" else x.transpose(0, 2, 3, 1)

    def op(im, b, idx):
        return mixing.paste_boxes(im, fn.permute_batch(im, indices=idx), b, layout=layout, dtype=dtype)

    (out,) = run_op([list(np.ascontiguousarray(feed)), list(boxes), list(source)], op, n)
    expect = ref.paste_nchw(x, partner, boxes)
    for i in range(n):
        got = out[i] if layout == "CHW" else out[i].transpose(2, 0, 1)
        np.testing.assert_array_equal(got, expect[i])


@pytest.mark.parametrize("quantize", [True, False])
def test_saliency_peak_box_matches_official_saliency_bbox(rng, quantize):
    n, H, W = 6, 23, 31
    sal = rng.random((n, H, W)).astype(np.float32)
    sal[0] = np.round(sal[0] * 4) / 4  # ties: the first maximum wins
    lam = rng.beta(1.0, 1.0, n)
    cut = np.stack([(H * np.sqrt(1 - lam)).astype(np.int32), (W * np.sqrt(1 - lam)).astype(np.int32)], -1)
    (out,) = run_op([list(sal), list(cut.astype(np.int32))],
                    lambda s, c: mixing.saliency_peak_box(s, c, quantize=quantize), n)
    for i in range(n):
        assert out[i].shape == (1, 4) and out[i].dtype == np.int32
        np.testing.assert_array_equal(out[i][0], ref.saliencymix_bbox(sal[i], lam[i], quantize=quantize))


def test_max_window_matches_brute_force_and_never_overflows(rng):
    n, H, W, S, T = 5, 20, 26, 7, 3
    sal = rng.random((n, H, W)).astype(np.float32)
    jitter = rng.integers(-6, 7, (n, 2)).astype(np.int32)
    jitter[0] = 0
    (out,) = run_op([list(sal), list(jitter)], lambda s, j: mixing.max_window(s, S, T, j), n)
    for i in range(n):
        (y, x), _ = ref.max_window(sal[i], S, T)
        y0 = min(max(y + jitter[i, 0], 0), H - S)
        x0 = min(max(x + jitter[i, 1], 0), W - S)
        np.testing.assert_array_equal(out[i][0], [y0, x0, y0 + S, x0 + S])


def test_max_window_on_a_map_smaller_than_the_window_gives_no_box(rng):
    sal = [rng.random((6, 9)).astype(np.float32), rng.random((12, 12)).astype(np.float32)]
    (out,) = run_op([sal], lambda s: mixing.max_window(s, 8), 2)
    np.testing.assert_array_equal(out[0][0], [-1, -1, -1, -1])
    assert out[1][0][2] - out[1][0][0] == 8


def test_max_window_without_jitter_agrees_with_kernels(rng):
    sal = rng.random((3, 16, 16)).astype(np.float32)
    (out,) = run_op([list(sal)], lambda s: mixing.max_window(s, 5, 2), 3)
    np.testing.assert_array_equal(np.concatenate(out), search.max_window(sal, 5, 2))


@pytest.mark.parametrize("selective", ["cut", "paste"])
def test_keep_box_matches_restated_rule_and_kernels(rng, selective):
    n, H, W, size, tau, tries = 4, 15, 18, 6, 0.6, 8
    sal = rng.random((n, H, W)).astype(np.float32)
    sal[3] = 0.5  # constant map: no candidate qualifies, fallback to the first try
    draw = np.random.default_rng(11)
    cy = draw.integers(0, H, size=(n, tries))
    cx = draw.integers(0, W, size=(n, tries))
    t = np.stack([cy, cx], -1).astype(np.int32)
    (out,) = run_op([list(sal), list(t)], lambda s, c: mixing.keep_box(s, c, size=size, tau=tau,
                                                                       selective=selective), n)
    for i in range(n):
        scores = ref.keep_scores(sal[i], size)
        thr = np.quantile(scores, tau)
        tried = scores[cy[i], cx[i]]
        ok = tried < thr if selective == "cut" else tried > thr
        k = int(np.argmax(ok)) if ok.any() else int(np.argmin(tried) if selective == "cut" else np.argmax(tried))
        np.testing.assert_array_equal(out[i][0], ref.cutout_box(cy[i, k], cx[i, k], size, H, W))
    fn_k = search.selective_cut if selective == "cut" else search.selective_paste
    np.testing.assert_array_equal(np.concatenate(out), fn_k(np.random.default_rng(11), sal, size, tau, tries))


@pytest.mark.parametrize("call, match", [
    (lambda: mixing.erase_boxes(None, None, layout="NCHW"), "layout"),
    (lambda: mixing.erase_boxes(None, None, dtype="float16"), "dtype"),
    (lambda: mixing.erase_boxes(None, None, fill="red"), "fill"),
    (lambda: mixing.paste_boxes(None, None, None, device="tpu"), "device"),
    (lambda: mixing.max_window(None, 0), "S"),
    (lambda: mixing.max_window(None, 4, T=0), "T"),
    (lambda: mixing.keep_box(None, None, size=1), "size"),
    (lambda: mixing.keep_box(None, None, size=8, tau=2.0), "tau"),
    (lambda: mixing.keep_box(None, None, size=8, selective="x"), "selective"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------------------
# The GPU run functions (CUDA kernels DALI launches once per sample) cannot run here; under Numba's CUDA
# simulator they are launched directly, per sample, and compared with the same oracles.
# ------------------------------------------------------------------------------------------------------
SIM_SCRIPT = r'''
import json, warnings
import numpy as np
from numba import cuda
import numba
from dali_ops import mixing
from kernels import reference as ref
res = {"simulator": bool(numba.config.ENABLE_CUDASIM)}
rng = np.random.default_rng(0)
def launch(op, layout, outs, ins, blocks=2, threads=16):
    k = cuda.jit(mixing.run_function(op, layout, "gpu"))
    k[blocks, threads](*outs, *ins)
def check(name, f):
    try:
        res[name] = "ok" if f() else "mismatch"
    except Exception as e:
        res[name] = f"error: {e!r}"
x = rng.standard_normal((3, 7, 9)).astype(np.float32)
xp = rng.standard_normal((3, 7, 9)).astype(np.float32)
boxes = np.array([[1, 2, 5, 7], [-1, -1, -1, -1], [-2, 6, 3, 12]], np.int32)
fill = np.array([0.5, -1, 2], np.float32)
def erase_chw():
    out = np.empty_like(x); launch("erase", "CHW", [out], [x, boxes, fill])
    return np.array_equal(out, ref.erase_nchw(x[None], boxes[None], fill)[0])
def erase_hwc():
    u = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8); f = np.array([1, 2, 3], np.uint8)
    out = np.empty_like(u); launch("erase", "HWC", [out], [u, boxes, f])
    return np.array_equal(out, ref.erase_nchw(u.transpose(2, 0, 1)[None], boxes[None], f)[0].transpose(1, 2, 0))
def paste_chw():
    out = np.empty_like(x); launch("paste", "CHW", [out], [x, xp, boxes])
    both = np.stack([x, xp]); return np.array_equal(out, ref.paste_nchw(both, np.array([1, -1]), np.stack([boxes, boxes]))[0])
def paste_hwc():
    a = x.transpose(1, 2, 0).copy(); b = xp.transpose(1, 2, 0).copy(); out = np.empty_like(a)
    launch("paste", "HWC", [out], [a, b, boxes])
    both = np.stack([x, xp]); return np.array_equal(out.transpose(2, 0, 1), ref.paste_nchw(both, np.array([1, -1]), np.stack([boxes, boxes]))[0])
sal = rng.random((10, 13)).astype(np.float32)
def peak():
    out = np.zeros((1, 4), np.int32); lam = 0.55
    cut = np.array([int(10 * np.sqrt(1 - lam)), int(13 * np.sqrt(1 - lam))], np.int32)
    launch("peak", None, [out], [sal, cut, np.array([255.0], np.float32)], 1, 1)
    return np.array_equal(out[0], ref.saliencymix_bbox(sal, lam))
def maxwin():
    out = np.zeros((1, 4), np.int32); ii = np.full((11, 14), np.nan)
    launch("max_window", None, [out, ii], [sal, np.array([2, -3], np.int32), np.array([4, 2], np.int32)], 1, 8)
    (y, x0), _ = ref.max_window(sal, 4, 2)
    y, x0 = min(max(y + 2, 0), 6), min(max(x0 - 3, 0), 9)
    return np.array_equal(out[0], [y, x0, y + 4, x0 + 4])
def keep(selective):
    from kernels import search
    sal2 = rng.random((9, 11)).astype(np.float32)
    sal2[:3] = 0.25  # ties across the quantile position
    draw = np.random.default_rng(3)
    cy = draw.integers(0, 9, size=(1, 6))
    cx = draw.integers(0, 11, size=(1, 6))
    tries = np.stack([cy[0], cx[0]], -1).astype(np.int32)
    ok = True
    for tau in (0.6, 0.0, 1.0, 0.35):
        out = np.zeros((1, 4), np.int32)
        ii = np.full((10, 12), np.nan)
        sc = np.full((9, 11), np.nan)
        k = cuda.jit(mixing.run_function("keep", None, "gpu", tau))
        k[1, 8](out, ii, sc, sal2, tries, np.array([2, 1 if selective == "cut" else 0], np.int32))
        fn_k = search.selective_cut if selective == "cut" else search.selective_paste
        expect = fn_k(np.random.default_rng(3), sal2[None], 4, tau, 6)[0]
        ok = ok and np.array_equal(out[0], expect)
    return ok
def keep_cut():
    return keep("cut")
def keep_paste():
    return keep("paste")
for name, f in [("keep_cut", keep_cut), ("keep_paste", keep_paste), ("erase_chw", erase_chw), ("erase_hwc", erase_hwc), ("paste_chw", paste_chw), ("paste_hwc", paste_hwc), ("peak", peak), ("max_window", maxwin)]:
    check(name, f)
print("RESULTS " + json.dumps(res))
'''

SIM_CHECKS = ["erase_chw", "erase_hwc", "paste_chw", "paste_hwc", "peak", "max_window", "keep_cut", "keep_paste"]


@pytest.fixture(scope="module")
def sim_results():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    no_site = ["-S"] if sys.flags.no_site else []  # keep the parent's import set-up
    proc = subprocess.run([sys.executable, *no_site, "-c", SIM_SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and line, f"CUDA-sim subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(line[-1][len("RESULTS "):])


@pytest.mark.parametrize("name", SIM_CHECKS)
def test_gpu_run_function_under_cuda_simulator(sim_results, name):
    assert sim_results["simulator"] is True
    assert sim_results[name] == "ok", sim_results[name]
