"""DALI operators that take saliency maps and boxes as *regular* inputs: search and apply.

Why: named argument inputs of DALI operators (``fn.erase(anchor=, shape=)``, ``fn.multi_paste(in_ids=)``)
must be CPU nodes (DESIGN.md section 3), so boxes computed inside the graph -- on the GPU from a saliency
map -- cannot drive them. These operators take every tensor as a regular input instead, so the chain
``saliency -> search -> boxes -> apply`` stays on one device.

Built on DALI's numba plugin (``nvidia.dali.plugin.numba.fn.experimental.numba_function``): one call per
sample. The per-pixel and per-map logic is the twins of :mod:`kernels` (``kernels.apply._in_any_box``,
``kernels.search._peak_box_of_map``, ``_max_window_of_map``, ``_keep_pick``, ``_integral_row`` /
``_integral_col``, ``_centred_box_mean``), rebound per target by :func:`kernels._twin._rebind`: the CPU
operator's run function calls their ``njit`` builds, the GPU operator's CUDA kernel their
``cuda.jit(device=True)`` builds. Nothing here decides a pixel or a box on its own.

Operators (call them inside a ``pipeline_def``; ``device="cpu"`` runs here, ``device="gpu"`` needs a
GPU, numba >= 0.57 and DALI's CUDA numba support -- written, not run in this project's CI):

* :func:`erase_boxes` -- Cutout / Hide-and-Seek / Fong & Vedaldi fill (DeVries & Taylor 2017,
  uoguelph-mlrg/Cutout ``util/cutout.py``: fill 0 after normalisation).
* :func:`paste_boxes` -- CutMix / SaliencyMix paste at the same location (Yun et al. 2019 Algorithm A1,
  clovaai/CutMix-PyTorch ``train.py``: ``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]``),
  the partner image arriving through ``fn.permute_batch``.
* :func:`saliency_peak_box` -- SaliencyMix box (Uddin et al. 2021, ``saliency_bbox`` of the official code).
* :func:`max_window` -- Fong & Vedaldi's S x S max window, stride T, jitter given as an input.
* :func:`keep_box` -- KeepAugment selective-cut / selective-paste box (Gong et al. 2021), the candidate
  centres drawn upstream and given as an input.

Determinism (STYLE.md): every random quantity (cut sizes, jitter, candidate centres) is an input drawn
upstream from a seeded generator; the operators are pure functions of their inputs.

Layouts: images ``"CHW"`` (after ``crop_mirror_normalize``) or ``"HWC"`` (decoded), dtype float32 or
uint8 (``dtype=``; numba has no float16 path in DALI). Saliency maps ``(H, W)`` float32. Boxes
``(K, 4)`` int32 ``(y0, x0, y1, x1)``, half-open, -1 padded (:mod:`kernels` conventions); the search
operators return ``(1, 4)``.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from numba import float64

from kernels import _twin
from kernels._twin import twin
from kernels import apply as _apply
from kernels import search as _search

__all__ = ["erase_boxes", "paste_boxes", "saliency_peak_box", "max_window", "keep_box"]

# Names the run functions below refer to; ``_twin._rebind`` swaps each for its per-target build.
_in_any_box = _apply._in_any_box
_peak_box_of_map = _search._peak_box_of_map
_max_window_of_map = _search._max_window_of_map
_keep_pick = _search._keep_pick
_integral_row = _search._integral_row
_integral_col = _search._integral_col
_centred_box_mean = _search._centred_box_mean

_LAYOUTS = ("CHW", "HWC")
_GPU_THREADS = 256
_GPU_BLOCKS = 64


def _dali_types():
    from nvidia.dali import types

    return types


def _image_type(dtype):
    types = _dali_types()
    table = {"float32": types.FLOAT, "uint8": types.UINT8, types.FLOAT: types.FLOAT, types.UINT8: types.UINT8}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'uint8' (DALI's numba operators have no float16), "
                         f"got {dtype!r}")
    return table[dtype]


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _int_arg(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# run functions, CPU (one sample per call; DALI compiles them with njit after _rebind(..., "cpu"))
# --------------------------------------------------------------------------------------------------
def _erase_chw_cpu(out, img, boxes, fill):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    ch, h, w = out.shape
    for y in range(h):
        for x in range(w):
            if _in_any_box(b3, 0, y, x):
                for c in range(ch):
                    out[c, y, x] = fill[c]
            else:
                for c in range(ch):
                    out[c, y, x] = img[c, y, x]


def _erase_hwc_cpu(out, img, boxes, fill):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    h, w, ch = out.shape
    for y in range(h):
        for x in range(w):
            if _in_any_box(b3, 0, y, x):
                for c in range(ch):
                    out[y, x, c] = fill[c]
            else:
                for c in range(ch):
                    out[y, x, c] = img[y, x, c]


def _paste_chw_cpu(out, img, partner, boxes):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    ch, h, w = out.shape
    for y in range(h):
        for x in range(w):
            if _in_any_box(b3, 0, y, x):
                for c in range(ch):
                    out[c, y, x] = partner[c, y, x]
            else:
                for c in range(ch):
                    out[c, y, x] = img[c, y, x]


def _paste_hwc_cpu(out, img, partner, boxes):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    h, w, ch = out.shape
    for y in range(h):
        for x in range(w):
            if _in_any_box(b3, 0, y, x):
                for c in range(ch):
                    out[y, x, c] = partner[y, x, c]
            else:
                for c in range(ch):
                    out[y, x, c] = img[y, x, c]


def _peak_cpu(out, sal, cut, scale):
    s3 = sal.reshape((1, sal.shape[0], sal.shape[1]))
    _peak_box_of_map(s3, 0, scale, cut[0], cut[1], out[0])


@twin
def _integral_of(sal):
    """(1, H+1, W+1) float64 integral image of one (H, W) map (CPU only: it allocates)."""
    h, w = sal.shape
    s3 = sal.reshape((1, h, w))
    ii = np.zeros((1, h + 1, w + 1), dtype=np.float64)
    for y in range(h):
        _integral_row(s3, ii, 0, y)
    for x in range(1, w + 1):
        _integral_col(ii, 0, x)
    return ii


def _max_window_cpu(out, sal, jitter, params):
    ii = _integral_of(sal)
    _max_window_of_map(ii, 0, params[0], params[1], jitter[0], jitter[1], out[0])


def _keep_cpu(out, sal, tries, params):
    h, w = sal.shape
    ii = _integral_of(sal)
    scores = np.empty((1, h, w), dtype=np.float64)
    half = params[0]
    for cy in range(h):
        for cx in range(w):
            _centred_box_mean(ii, scores, half, 0, cy, cx)
    thr = np.quantile(scores.ravel(), _TAU)  # linear interpolation, as kernels.search.keep_threshold
    _keep_pick(scores, 0, thr, tries, params[1] == 1, half, out[0])


# --------------------------------------------------------------------------------------------------
# run functions, GPU (CUDA kernels launched once per sample by DALI after _rebind(..., "cuda"))
# --------------------------------------------------------------------------------------------------
def _erase_chw_cuda(out, img, boxes, fill):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    ch, h, w = out.shape
    for t in range(cuda.grid(1), h * w, cuda.gridsize(1)):  # noqa: F821 -- injected by _rebind
        y = t // w
        x = t - y * w
        inside = _in_any_box(b3, 0, y, x)
        for c in range(ch):
            out[c, y, x] = fill[c] if inside else img[c, y, x]


def _erase_hwc_cuda(out, img, boxes, fill):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    h, w, ch = out.shape
    for t in range(cuda.grid(1), h * w, cuda.gridsize(1)):  # noqa: F821
        y = t // w
        x = t - y * w
        inside = _in_any_box(b3, 0, y, x)
        for c in range(ch):
            out[y, x, c] = fill[c] if inside else img[y, x, c]


def _paste_chw_cuda(out, img, partner, boxes):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    ch, h, w = out.shape
    for t in range(cuda.grid(1), h * w, cuda.gridsize(1)):  # noqa: F821
        y = t // w
        x = t - y * w
        inside = _in_any_box(b3, 0, y, x)
        for c in range(ch):
            out[c, y, x] = partner[c, y, x] if inside else img[c, y, x]


def _paste_hwc_cuda(out, img, partner, boxes):
    b3 = boxes.reshape((1, boxes.shape[0], boxes.shape[1]))
    h, w, ch = out.shape
    for t in range(cuda.grid(1), h * w, cuda.gridsize(1)):  # noqa: F821
        y = t // w
        x = t - y * w
        inside = _in_any_box(b3, 0, y, x)
        for c in range(ch):
            out[y, x, c] = partner[y, x, c] if inside else img[y, x, c]


def _peak_cuda(out, sal, cut, scale):
    # One thread scans the map (serial, O(H*W) per sample): correct, not yet a block reduction.
    if cuda.grid(1) == 0:  # noqa: F821
        s3 = sal.reshape((1, sal.shape[0], sal.shape[1]))
        _peak_box_of_map(s3, 0, scale, cut[0], cut[1], out[0])


def _max_window_cuda(out, ii_out, sal, jitter, params):
    # ii_out (H+1, W+1) float64 is the integral-image scratch (a second output; CUDA kernels cannot
    # allocate). One block: row pass, column pass, then thread 0 scans the windows.
    h, w = sal.shape
    s3 = sal.reshape((1, h, w))
    ii = ii_out.reshape((1, h + 1, w + 1))
    t = cuda.threadIdx.x  # noqa: F821
    nt = cuda.blockDim.x  # noqa: F821
    if cuda.blockIdx.x == 0:  # noqa: F821
        for x in range(t, w + 1, nt):
            ii[0, 0, x] = 0.0
        for y in range(t, h + 1, nt):
            ii[0, y, 0] = 0.0
        cuda.syncthreads()  # noqa: F821
        for y in range(t, h, nt):
            _integral_row(s3, ii, 0, y)
        cuda.syncthreads()  # noqa: F821
        for x in range(t + 1, w + 1, nt):
            _integral_col(ii, 0, x)
        cuda.syncthreads()  # noqa: F821
        if t == 0:
            _max_window_of_map(ii, 0, params[0], params[1], jitter[0], jitter[1], out[0])


_KEEP_MAX_THREADS = 256  # shared-memory reduction buffers of _keep_cuda


def _block_reduce(buf, t, nt, op):
    """Thread 0 folds ``buf[0:nt]`` into ``buf[0]`` (op 0: sum, 1: min, 2: max); every thread then reads it."""
    cuda.syncthreads()  # noqa: F821
    if t == 0:
        acc = buf[0]
        for i in range(1, nt):
            v = buf[i]
            if op == 0:
                acc += v
            elif op == 1:
                if v < acc:
                    acc = v
            elif v > acc:
                acc = v
        buf[0] = acc
    cuda.syncthreads()  # noqa: F821
    r = buf[0]
    cuda.syncthreads()  # noqa: F821
    return r


def _order_statistic(vals, k, t, nt, buf):
    """The k-th smallest (0-based) of ``vals`` (1-D), by value bisection whose bounds are elements:
    ``hi`` is an element with ``count(v <= hi) >= k + 1``, ``lo`` a value with ``count(v <= lo) < k + 1``;
    each step halves the value range of the candidates strictly between them, and ends when none is left."""
    n = vals.shape[0]
    big = 1.0e308
    # hi = max(vals); lo = -inf
    m = -big
    for i in range(t, n, nt):
        if vals[i] > m:
            m = vals[i]
    buf[t] = m
    hi = _block_reduce(buf, t, nt, 2)
    lo = -big
    lo_valid = False
    while True:
        cnt = 0.0
        cmin = big
        cmax = -big
        for i in range(t, n, nt):
            v = vals[i]
            if v < hi and (not lo_valid or v > lo):
                cnt += 1.0
                if v < cmin:
                    cmin = v
                if v > cmax:
                    cmax = v
        buf[t] = cnt
        cnt = _block_reduce(buf, t, nt, 0)
        if cnt == 0.0:
            return hi
        buf[t] = cmin
        cmin = _block_reduce(buf, t, nt, 1)
        buf[t] = cmax
        cmax = _block_reduce(buf, t, nt, 2)
        mid = cmin + (cmax - cmin) * 0.5
        below = 0.0
        best = -big
        for i in range(t, n, nt):
            v = vals[i]
            if v <= mid:
                below += 1.0
                if v > best:
                    best = v
        buf[t] = below
        below = _block_reduce(buf, t, nt, 0)
        buf[t] = best
        best = _block_reduce(buf, t, nt, 2)
        if below >= k + 1:
            hi = best
        else:
            lo = mid
            lo_valid = True


def _keep_cuda(out, ii_out, scores_out, sal, tries, params):
    # One block of <= _KEEP_MAX_THREADS threads: integral image (scratch output), region scores (scratch
    # output), the tau-quantile by exact order statistics (numpy's linear method), then thread 0 picks.
    h, w = sal.shape
    s3 = sal.reshape((1, h, w))
    ii = ii_out.reshape((1, h + 1, w + 1))
    scores = scores_out.reshape((1, h, w))
    flat = scores_out.reshape((h * w,))
    t = cuda.threadIdx.x  # noqa: F821
    nt = cuda.blockDim.x  # noqa: F821
    buf = cuda.shared.array(_KEEP_MAX_THREADS, float64)  # noqa: F821
    if cuda.blockIdx.x != 0 or nt > _KEEP_MAX_THREADS:  # noqa: F821
        return
    half = params[0]
    for x in range(t, w + 1, nt):
        ii[0, 0, x] = 0.0
    for y in range(t, h + 1, nt):
        ii[0, y, 0] = 0.0
    cuda.syncthreads()  # noqa: F821
    for y in range(t, h, nt):
        _integral_row(s3, ii, 0, y)
    cuda.syncthreads()  # noqa: F821
    for x in range(t + 1, w + 1, nt):
        _integral_col(ii, 0, x)
    cuda.syncthreads()  # noqa: F821
    for i in range(t, h * w, nt):
        cy = i // w
        _centred_box_mean(ii, scores, half, 0, cy, i - cy * w)
    cuda.syncthreads()  # noqa: F821
    # numpy.quantile(method="linear"): virtual index tau * (n - 1), lerp with numpy's two-sided formula
    n = h * w
    pos = _TAU * (n - 1)
    k = int(math.floor(pos))
    if k > n - 1:
        k = n - 1
    k1 = k + 1 if k + 1 < n else n - 1
    gamma = pos - k
    a = _order_statistic(flat, k, t, nt, buf)
    b = _order_statistic(flat, k1, t, nt, buf)
    diff = b - a
    thr = a + diff * gamma
    if gamma >= 0.5:
        thr = b - diff * (1 - gamma)
    if t == 0:
        _keep_pick(scores, 0, thr, tries, params[1] == 1, half, out[0])


_RUN = {
    ("erase", "CHW", "cpu"): _erase_chw_cpu, ("erase", "HWC", "cpu"): _erase_hwc_cpu,
    ("paste", "CHW", "cpu"): _paste_chw_cpu, ("paste", "HWC", "cpu"): _paste_hwc_cpu,
    ("peak", None, "cpu"): _peak_cpu, ("max_window", None, "cpu"): _max_window_cpu,
    ("keep", None, "cpu"): _keep_cpu,
    ("erase", "CHW", "gpu"): _erase_chw_cuda, ("erase", "HWC", "gpu"): _erase_hwc_cuda,
    ("paste", "CHW", "gpu"): _paste_chw_cuda, ("paste", "HWC", "gpu"): _paste_hwc_cuda,
    ("peak", None, "gpu"): _peak_cuda, ("max_window", None, "gpu"): _max_window_cuda,
    ("keep", None, "gpu"): _keep_cuda,
}


@functools.cache
def run_function(op: str, layout: str | None, device: str, tau: float | None = None):
    """The run function of an operator for ``device``, its twins rebound to the matching builds.

    ``tau`` (KeepAugment) is baked in as the compile-time constant ``_TAU`` (DALI constants are float32,
    which would move the quantile level off the Python float the kernels use)."""
    key = (op, layout, device)
    if key not in _RUN:
        raise ValueError(f"no {device} implementation of {op!r} (layout {layout})")
    if device == "cpu":
        return _twin._rebind(_RUN[key], "cpu", {"_TAU": tau} if tau is not None else None)
    from numba import cuda

    helpers = {"cuda": cuda}
    helpers["_block_reduce"] = cuda.jit(device=True)(_twin._rebind(_block_reduce, "cuda", {"cuda": cuda}))
    helpers["_order_statistic"] = cuda.jit(device=True)(
        _twin._rebind(_order_statistic, "cuda", {"cuda": cuda, "_block_reduce": helpers["_block_reduce"]}))
    if tau is not None:
        helpers["_TAU"] = tau
    return _twin._rebind(_RUN[key], "cuda", helpers)


# setup functions: output shapes per sample (DALI compiles them with njit)
def _same_as_first_input(outs, ins):
    for i in range(len(outs[0])):
        for d in range(len(outs[0][i])):
            outs[0][i][d] = ins[0][i][d]


def _one_box(outs, ins):
    for i in range(len(outs[0])):
        outs[0][i][0] = 1
        outs[0][i][1] = 4


def _one_box_integral_and_scores(outs, ins):
    for i in range(len(outs[0])):
        outs[0][i][0] = 1
        outs[0][i][1] = 4
        outs[1][i][0] = ins[0][i][0] + 1
        outs[1][i][1] = ins[0][i][1] + 1
        outs[2][i][0] = ins[0][i][0]
        outs[2][i][1] = ins[0][i][1]


def _one_box_and_integral(outs, ins):
    for i in range(len(outs[0])):
        outs[0][i][0] = 1
        outs[0][i][1] = 4
        outs[1][i][0] = ins[0][i][0] + 1
        outs[1][i][1] = ins[0][i][1] + 1


def _numba_function(inputs, run, setup, out_types, in_types, outs_ndim, ins_ndim, device, grid=None):
    """Call a numba operator on ``inputs``; the operator object (its compiled run function) is cached.

    ``grid`` = (blocks, threads per block) of the GPU launch per sample (default: a grid-stride launch of
    ``_GPU_BLOCKS x _GPU_THREADS`` for the per-pixel operators)."""
    return _numba_op(run, setup, tuple(out_types), tuple(in_types), tuple(outs_ndim), tuple(ins_ndim), device,
                     _current_device_id(device), grid or (_GPU_BLOCKS, _GPU_THREADS))(*inputs)


def _current_device_id(device):
    if device != "gpu":
        return None
    from nvidia.dali.pipeline import Pipeline

    return Pipeline.current().device_id


@functools.cache
def _numba_op(run, setup, out_types, in_types, outs_ndim, ins_ndim, device, device_id, grid):
    """One ``NumbaFunction`` per operator signature (and GPU id): DALI compiles the run function when the
    object is built, and an ops-API object can be called in any number of pipelines, so a process compiles
    each operator once instead of once per pipeline."""
    from nvidia.dali.plugin.numba import NumbaFunction

    kw = {}
    if device == "gpu":
        kw = dict(blocks=[grid[0], 1, 1], threads_per_block=[grid[1], 1, 1])
    return NumbaFunction(run_fn=run, setup_fn=setup, out_types=list(out_types), in_types=list(in_types),
                         outs_ndim=list(outs_ndim), ins_ndim=list(ins_ndim), device=device, **kw)


def _constant(values, dtype, device):
    """A per-sample constant tensor node (the same small vector for every sample)."""
    from nvidia.dali import fn

    types = _dali_types()
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    kind = {np.dtype(np.float32): types.FLOAT, np.dtype(np.uint8): types.UINT8,
            np.dtype(np.int32): types.INT32, np.dtype(np.float64): types.FLOAT64}[arr.dtype]
    if arr.dtype.kind == "f":
        node = fn.constant(fdata=[float(v) for v in arr], shape=[arr.size], dtype=kind)
    else:
        node = fn.constant(idata=[int(v) for v in arr], shape=[arr.size], dtype=kind)
    return node.gpu() if device == "gpu" else node


def _device(device):
    return _check("device", device, ("cpu", "gpu"))


# --------------------------------------------------------------------------------------------------
# operators
# --------------------------------------------------------------------------------------------------
def erase_boxes(images, boxes, fill=0.0, *, layout: str = "CHW", dtype="float32", device: str = "cpu"):
    """Fill each sample's boxes with ``fill`` (Cutout, Hide-and-Seek, Fong & Vedaldi occlusion).

    Args:
        images: ``(C, H, W)`` / ``(H, W, C)`` samples of ``dtype``.
        boxes: ``(K, 4)`` int32 samples (``y0, x0, y1, x1``, -1 padded; may overflow the border).
        fill: scalar or per-channel values (0 after normalisation = the dataset mean, as the reference
            codes), or a DataNode of ``(C,)`` samples of ``dtype``.
        layout: ``"CHW"`` or ``"HWC"``; dtype: ``"float32"`` or ``"uint8"``; device: ``"cpu"`` or ``"gpu"``.
    """
    from nvidia.dali.data_node import DataNode

    layout = _check("layout", layout, _LAYOUTS)
    kind = _image_type(dtype)
    device = _device(device)
    types = _dali_types()
    if not isinstance(fill, DataNode):
        try:
            f = np.atleast_1d(np.asarray(fill, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"fill must be a finite scalar or 3 per-channel values, got {fill!r}") from None
        if f.ndim != 1 or f.size not in (1, 3) or not np.all(np.isfinite(f)):
            raise ValueError(f"fill must be a finite scalar or 3 per-channel values, got {fill!r}")
        f = np.broadcast_to(f, (3,))
        np_dtype = np.float32 if kind == types.FLOAT else np.uint8
        if np_dtype is np.uint8:
            if f.min() < 0 or f.max() > 255:
                raise ValueError(f"fill must lie in [0, 255] for uint8 images, got {fill!r}")
            f = np.rint(f)
        fill = _constant(f, np_dtype, device)
    return _numba_function([images, boxes, fill], run_function("erase", layout, device), _same_as_first_input,
                           [kind], [kind, types.INT32, kind], [3], [3, 2, 1], device)


def paste_boxes(images, partner_images, boxes, *, layout: str = "CHW", dtype="float32", device: str = "cpu"):
    """Inside each sample's boxes take ``partner_images``' pixels, elsewhere keep ``images`` (CutMix, SaliencyMix).

    ``partner_images`` is typically ``fn.permute_batch(images, indices=partner)``, so the partner pixels are
    the partner row's with its own crop and flip, at the same location (clovaai ``train.py``). A sample with
    only -1 boxes is returned unchanged (no partner).
    """
    layout = _check("layout", layout, _LAYOUTS)
    kind = _image_type(dtype)
    device = _device(device)
    types = _dali_types()
    return _numba_function([images, partner_images, boxes], run_function("paste", layout, device),
                           _same_as_first_input, [kind], [kind, kind, types.INT32], [3], [3, 3, 2], device)


def saliency_peak_box(saliency, cut, *, quantize: bool = True, device: str = "cpu"):
    """SaliencyMix box of each ``(H, W)`` float32 map: ``(1, 4)`` int32, the CutMix-sized box centred on the peak.

    ``cut`` holds ``(2,)`` int32 samples ``(cut_h, cut_w) = int(size * sqrt(1 - lam))`` drawn upstream; the
    peak is the first maximum of ``(map * 255).astype(uint8)`` (``quantize=True``, the official
    ``saliency_bbox``) or of the float map; box = ``clip(peak -+ cut // 2, 0, size)``. Same rule as
    :func:`kernels.search.saliency_peak_box`.
    """
    device = _device(device)
    types = _dali_types()
    scale = _constant([255.0 if quantize else 0.0], np.float32, device)
    return _numba_function([saliency, cut, scale], run_function("peak", None, device), _one_box,
                           [types.INT32], [types.FLOAT, types.INT32, types.FLOAT], [2], [2, 1, 1], device,
                           grid=(1, 32))


def max_window(saliency, S: int, T: int = 1, jitter=None, *, device: str = "cpu"):
    """Fong & Vedaldi box of each ``(H, W)`` float32 map: ``(1, 4)`` int32 ``(y0, x0, y0 + S, x0 + S)``.

    The S x S window of largest saliency sum on the stride-T grid (first in row-major order), its top-left
    moved by ``jitter`` (``(2,)`` int32 samples ``(dy, dx)``, drawn upstream in ``[-tau, tau]``; ``None`` =
    no jitter) and clipped so the window never leaves the image. Same rule as :func:`kernels.search.max_window`.
    A map smaller than S x S gets the box ``(-1, -1, -1, -1)`` (no occlusion; an operator cannot raise).
    """
    S = _int_arg("S", S, 1)
    T = _int_arg("T", T, 1)
    device = _device(device)
    types = _dali_types()
    if jitter is None:
        jitter = _constant([0, 0], np.int32, device)
    params = _constant([S, T], np.int32, device)
    if device == "cpu":
        return _numba_function([saliency, jitter, params], run_function("max_window", None, device), _one_box,
                               [types.INT32], [types.FLOAT, types.INT32, types.INT32], [2], [2, 1, 1], device)
    boxes, _ = _numba_function([saliency, jitter, params], run_function("max_window", None, device),
                               _one_box_and_integral, [types.INT32, types.FLOAT64],
                               [types.FLOAT, types.INT32, types.INT32], [2, 2], [2, 1, 1], device,
                               grid=(1, _GPU_THREADS))
    return boxes


def keep_box(saliency, tries, *, size: int, tau: float = 0.6, selective: str = "cut", device: str = "cpu"):
    """KeepAugment box of each ``(H, W)`` float32 map: ``(1, 4)`` int32 (Gong et al., CVPR 2021).

    Region scores are the mean saliency of the clipped Cutout box of side ``size`` around every pixel
    (:func:`kernels.search.keep_region_scores`), the threshold their ``tau``-quantile; the box is centred on
    the first of the upstream-drawn candidate centres ``tries`` (``(T, 2)`` int32 samples ``(cy, cx)``)
    whose score is below (``selective="cut"``) / above (``"paste"``) it, else the lowest / highest-scoring
    candidate. Same rule and draws as :func:`kernels.search.selective_cut` / ``selective_paste`` (give the
    op ``stack([cy[i], cx[i]], -1)`` of their ``rng.integers`` draws).

    GPU: one block per sample computes the integral image and the scores in parallel (two scratch outputs,
    as CUDA kernels cannot allocate) and the quantile from exact order statistics (value bisection with
    block reductions; numpy's linear interpolation), checked under the CUDA simulator.
    """
    size = _int_arg("size", size, 2)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be a quantile level in [0, 1], got {tau!r}")
    selective = _check("selective", selective, ("cut", "paste"))
    device = _device(device)
    types = _dali_types()
    params = _constant([size // 2, 1 if selective == "cut" else 0], np.int32, device)
    if device == "cpu":
        return _numba_function([saliency, tries, params], run_function("keep", None, "cpu", float(tau)), _one_box,
                               [types.INT32], [types.FLOAT, types.INT32, types.INT32], [2], [2, 2, 1], "cpu")
    boxes, _, _ = _numba_function([saliency, tries, params], run_function("keep", None, "gpu", float(tau)),
                                  _one_box_integral_and_scores, [types.INT32, types.FLOAT64, types.FLOAT64],
                                  [types.FLOAT, types.INT32, types.INT32], [2, 2, 2], [2, 2, 1], "gpu",
                                  grid=(1, _KEEP_MAX_THREADS))
    return boxes
