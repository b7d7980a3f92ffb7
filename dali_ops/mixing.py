"""DALI operators that take saliency maps and boxes as *regular* inputs: search and apply.

Why: named argument inputs of DALI operators (``fn.erase(anchor=, shape=)``, ``fn.multi_paste(in_ids=)``)
must be CPU nodes (DESIGN.md section 3), so boxes computed inside the graph -- on the GPU from a saliency
map -- cannot drive them. These operators take every tensor as a regular input instead, so the chain
``saliency -> search -> boxes -> apply`` stays on one device.

Implementations:

* apply (:func:`erase_boxes`, :func:`paste_boxes`): the plugin's C++/CUDA operators
  ``fn.occlusion.erase_boxes`` / ``fn.occlusion.paste_boxes`` (``dali_ops/csrc/box_ops.*``) on both
  devices -- one sample per pool thread as row memcpy + box fill on the CPU, one launch per batch on the
  GPU; the partner row is an index into the batch, so CutMix needs no ``fn.permute_batch`` copy.
* search (:func:`saliency_peak_box`, :func:`max_window`, :func:`keep_box`): on the CPU the plugin's
  ``fn.occlusion.box_search`` (C++, one map per pool thread); on the GPU CUDA kernels built from the
  :mod:`kernels` twins (``kernels.search._peak_box_of_map``, ``_max_window_of_map``, ``_keep_pick``,
  ``_integral_row`` / ``_integral_col``, ``_centred_box_sum``, rebound by :func:`kernels._twin._rebind`)
  and launched per sample by DALI's numba plugin (``numba_function``; needs numba >= 0.57 and DALI's
  CUDA numba support -- written and checked under the CUDA simulator, not run on a GPU in this project's
  CI). Tests check both against the NumPy oracles of :mod:`kernels.reference`.

Operators (call them inside a ``pipeline_def``; ``device="cpu"`` runs here, ``device="gpu"`` needs a GPU):

* :func:`erase_boxes` -- Cutout / Hide-and-Seek / Fong & Vedaldi fill (DeVries & Taylor 2017,
  uoguelph-mlrg/Cutout ``util/cutout.py``: fill 0 after normalisation).
* :func:`paste_boxes` -- CutMix / SaliencyMix paste at the same location (Yun et al. 2019 Algorithm A1,
  clovaai/CutMix-PyTorch ``train.py``: ``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]``).
* :func:`saliency_peak_box` -- SaliencyMix box (Uddin et al. 2021, ``saliency_bbox`` of the official code).
* :func:`max_window` -- Fong & Vedaldi's S x S max window, stride T, jitter uniform over the in-image shifts
  (its random integers given as an input).
* :func:`keep_box` -- KeepAugment selective-cut / selective-paste box (Gong et al. 2021), the candidate
  centres drawn upstream and given as an input.

Determinism (STYLE.md): every random quantity (cut sizes, jitter, candidate centres) is an input drawn
upstream from a seeded generator; the operators are pure functions of their inputs.

Images are ``"CHW"`` (after ``crop_mirror_normalize``) or ``"HWC"`` (decoded) -- the layout travels with
the data -- uint8, float16 or float32. Saliency maps ``(H, W)`` float32. Boxes ``(K, 4)`` int32
``(y0, x0, y1, x1)``, half-open, -1 padded (:mod:`kernels` conventions); the search operators return
``(1, 4)``.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from numba import float64

from kernels import _twin
from kernels import search as _search

__all__ = ["normalize_occlude", "erase_boxes", "paste_boxes", "saliency_peak_box", "max_window", "keep_box"]

# Names the CUDA run functions below refer to; ``_twin._rebind`` swaps each for its device build.
_peak_box_of_map = _search._peak_box_of_map
_max_window_of_map = _search._max_window_of_map
_keep_pick = _search._keep_pick
_integral_row = _search._integral_row
_integral_col = _search._integral_col
_centred_box_sum = _search._centred_box_sum

_GPU_THREADS = 256


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _int_arg(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def _plugin():
    """``fn.occlusion`` of the loaded plugin."""
    import dali_ops
    from nvidia.dali import fn

    dali_ops.load()
    return fn.occlusion


# --------------------------------------------------------------------------------------------------
# GPU search run functions (CUDA kernels launched once per sample by DALI's numba plugin)
# --------------------------------------------------------------------------------------------------
def _peak_cuda(out, sal, cut, scale):
    # One thread scans the map (serial, O(H*W) per sample): correct, not yet a block reduction.
    if cuda.grid(1) == 0:  # noqa: F821
        s3 = sal.reshape((1, sal.shape[0], sal.shape[1]))
        _peak_box_of_map(s3, 0, scale, cut[0], cut[1], out[0])


def _block_integral(s3, ii, t, nt):
    """One block builds the (H+1, W+1) integral image ``ii[0]`` of ``s3[0]``: zero borders, row pass
    (thread per row), column pass (thread per column), each followed by a barrier."""
    h = s3.shape[1]
    w = s3.shape[2]
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


def _max_window_cuda(out, ii_out, sal, draws, params):
    # ii_out (H+1, W+1) float64 is the integral-image scratch (a second output; CUDA kernels cannot
    # allocate). One block: row pass, column pass, then thread 0 scans the windows.
    h, w = sal.shape
    s3 = sal.reshape((1, h, w))
    ii = ii_out.reshape((1, h + 1, w + 1))
    t = cuda.threadIdx.x  # noqa: F821
    nt = cuda.blockDim.x  # noqa: F821
    if cuda.blockIdx.x == 0:  # noqa: F821
        _block_integral(s3, ii, t, nt)
        if t == 0:
            _max_window_of_map(ii, 0, params[0], params[1], params[2], draws[0], draws[1], out[0])


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
    _block_integral(s3, ii, t, nt)
    for i in range(t, h * w, nt):
        cy = i // w
        _centred_box_sum(ii, scores, half, 0, cy, i - cy * w)
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


_RUN = {"peak": _peak_cuda, "max_window": _max_window_cuda, "keep": _keep_cuda}


@functools.cache
def run_function(op: str, tau: float | None = None):
    """The CUDA run function of a search operator, its twins rebound to their device builds.

    ``tau`` (KeepAugment) is baked in as the compile-time constant ``_TAU`` (DALI constants are float32,
    which would move the quantile level off the Python float the kernels use)."""
    if op not in _RUN:
        raise ValueError(f"no GPU search operator {op!r}; expected one of {sorted(_RUN)}")
    from numba import cuda

    helpers = {"cuda": cuda}
    helpers["_block_integral"] = cuda.jit(device=True)(_twin._rebind(_block_integral, "cuda", {"cuda": cuda}))
    helpers["_block_reduce"] = cuda.jit(device=True)(_twin._rebind(_block_reduce, "cuda", {"cuda": cuda}))
    helpers["_order_statistic"] = cuda.jit(device=True)(
        _twin._rebind(_order_statistic, "cuda", {"cuda": cuda, "_block_reduce": helpers["_block_reduce"]}))
    if tau is not None:
        helpers["_TAU"] = tau
    return _twin._rebind(_RUN[op], "cuda", helpers)


# setup functions: output shapes per sample (DALI compiles them with njit)
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


def _numba_gpu(inputs, run, setup, out_types, in_types, outs_ndim, ins_ndim, grid):
    """Call a GPU numba operator on ``inputs``; the operator object (its compiled run function) is cached.
    ``grid`` = (blocks, threads per block) of the launch per sample."""
    from nvidia.dali.pipeline import Pipeline

    return _numba_op(run, setup, tuple(out_types), tuple(in_types), tuple(outs_ndim), tuple(ins_ndim),
                     Pipeline.current().device_id, grid)(*inputs)


@functools.cache
def _numba_op(run, setup, out_types, in_types, outs_ndim, ins_ndim, device_id, grid):
    """One ``NumbaFunction`` per operator signature and GPU id: DALI compiles the run function when the
    object is built, and an ops-API object can be called in any number of pipelines, so a process compiles
    each operator once instead of once per pipeline."""
    from nvidia.dali.plugin.numba import NumbaFunction

    return NumbaFunction(run_fn=run, setup_fn=setup, out_types=list(out_types), in_types=list(in_types),
                         outs_ndim=list(outs_ndim), ins_ndim=list(ins_ndim), device="gpu",
                         blocks=[grid[0], 1, 1], threads_per_block=[grid[1], 1, 1])


def _gpu_constant(values, dtype):
    """A per-sample constant GPU tensor (the same small vector for every sample)."""
    from nvidia.dali import fn, types

    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.dtype.kind == "f":
        return fn.constant(fdata=[float(v) for v in arr], shape=[arr.size], dtype=types.FLOAT).gpu()
    return fn.constant(idata=[int(v) for v in arr], shape=[arr.size], dtype=types.INT32).gpu()


def _device(device):
    return _check("device", device, ("cpu", "gpu"))


def _search(saliency, draws, map_index, device, cpu_kwargs, gpu_search):
    """One search operator call. CPU: ``fn.occlusion.box_search`` (``map_index`` handled inside). GPU: the
    numba kernel on ``saliency`` permuted to ``map_index`` (``permute_batch``; index -1 searches row 0),
    then -1 boxes for the rows whose index is -1 -- the same result."""
    if _device(device) == "cpu":
        inputs = [saliency, draws] + ([] if map_index is None else [map_index])
        return _plugin().box_search(*inputs, **cpu_kwargs)
    if map_index is None:
        return gpu_search(saliency)
    from nvidia.dali import fn, types
    from nvidia.dali import math as dali_math

    boxes = gpu_search(fn.permute_batch(saliency, indices=dali_math.max(map_index, 0)))
    a = fn.cast(map_index >= 0, dtype=types.INT32).gpu()  # 1: occluded, 0: box -> -1
    return fn.cast(boxes * a + (a - 1), dtype=types.INT32)


def _channel_values(name, value):
    """A finite scalar or per-channel list as floats (a ValueError naming ``name`` otherwise)."""
    try:
        f = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        f = None
    if f is None or f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)):
        raise ValueError(f"{name} must be a finite scalar or one value per channel, got {value!r}")
    return [float(v) for v in f]


# --------------------------------------------------------------------------------------------------
# operators
# --------------------------------------------------------------------------------------------------
def normalize_occlude(images, boxes=None, partner_index=None, *, mirror=0, mean, std, fill=0.0,
                      dtype="float32", device: str = "cpu"):
    """``crop_mirror_normalize`` (HWC uint8 -> CHW, per-sample ``mirror``, ``mean`` / ``std`` in pixel units)
    fused with the occlusion of each row's ``boxes``: erase with ``fill`` (normalised units; 0 = the mean,
    Cutout / Hide-and-Seek / Fong & Vedaldi) or, with ``partner_index``, paste the partner row's normalised
    pixels with the partner's own mirror (CutMix / SaliencyMix, clovaai ``input[rand_index]``).

    Rows without boxes equal ``fn.crop_mirror_normalize``'s output bit for bit; every value is written
    once (no second float copy for the occlusion). ``dtype``: ``"float32"`` or ``"float16"``.
    """
    from nvidia.dali import types

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if partner_index is not None and boxes is None:
        raise ValueError("normalize_occlude: partner_index needs boxes")
    inputs = [images] + [x for x in (boxes, partner_index) if x is not None]
    return _plugin().normalize_occlude(*inputs, mirror=mirror, mean=_channel_values("mean", mean),
                                       std=_channel_values("std", std), fill=_channel_values("fill", fill), device=_device(device),
                                       dtype=types.FLOAT if dtype == "float32" else types.FLOAT16)


def erase_boxes(images, boxes, fill=0.0, *, device: str = "cpu"):
    """Fill each sample's boxes with ``fill`` (Cutout, Hide-and-Seek, Fong & Vedaldi occlusion).

    Args:
        images: ``CHW`` / ``HWC`` samples (uint8, float16 or float32; the layout must be set).
        boxes: ``(K, 4)`` int32 samples (``y0, x0, y1, x1``, -1 padded; may overflow the border).
        fill: scalar or per-channel values in the images' units (0 after normalisation = the dataset mean,
            as the reference codes; integers in [0, 255] for uint8).
        device: ``"cpu"`` or ``"gpu"`` (inputs on that device).
    """
    return _plugin().erase_boxes(images, boxes, fill=_channel_values("fill", fill), device=_device(device))


def paste_boxes(images, boxes, partners=None, partner_index=None, *, device: str = "cpu"):
    """Inside each sample's boxes take the partner's pixels, elsewhere keep ``images`` (CutMix, SaliencyMix,
    KeepAugment selective-paste).

    The partner of row i is ``partners[partner_index[i]]`` (``partners`` defaults to ``images``: the
    clovaai ``input[rand_index]`` with the partner row's own crop and flip, no ``permute_batch`` copy), or
    ``partners[i]`` without ``partner_index``. An index of -1 leaves the row unchanged.
    """
    if partners is None and partner_index is None:
        raise ValueError("paste_boxes needs `partners`, `partner_index` or both")
    inputs = [images, boxes, images if partners is None else partners]
    if partner_index is not None:
        inputs.append(partner_index)
    return _plugin().paste_boxes(*inputs, device=_device(device))


def saliency_peak_box(saliency, cut, map_index=None, *, quantize: bool = True, device: str = "cpu"):
    """SaliencyMix box of each ``(H, W)`` float32 map: ``(1, 4)`` int32, the CutMix-sized box centred on the peak.

    ``cut`` holds ``(2,)`` int32 samples ``(cut_h, cut_w) = int(size * sqrt(1 - lam))`` drawn upstream; the
    peak is the first maximum of ``(map * 255).astype(uint8)`` (``quantize=True``, the official
    ``saliency_bbox``) or of the float map; box = ``clip(peak -+ cut // 2, 0, size)``. Same rule as
    :func:`kernels.search.saliency_peak_box`. ``map_index`` (CPU int32 scalar per row): row i searches map
    ``map_index[i]`` (SaliencyMix: the partner's), -1 gives it the box ``(-1, -1, -1, -1)``.
    """
    from nvidia.dali import types

    def gpu(sal):
        scale = _gpu_constant([255.0 if quantize else 0.0], np.float32)
        return _numba_gpu([sal, cut, scale], run_function("peak"), _one_box, [types.INT32],
                          [types.FLOAT, types.INT32, types.FLOAT], [2], [2, 1, 1], grid=(1, 32))

    return _search(saliency, cut, map_index, device, dict(method="peak", quantize=bool(quantize)), gpu)


def max_window(saliency, size: int, stride: int = 1, draws=None, map_index=None, *, jitter: int = 0,
               device: str = "cpu"):
    """Fong & Vedaldi box (arXiv 1910.10651) of each ``(H, W)`` float32 map: ``(1, 4)`` int32
    ``(y0, x0, y0 + size, x0 + size)``.

    The ``size x size`` window of largest saliency sum on the ``stride`` grid (first in row-major order), at
    ``(y0, x0)``, then jittered by a shift uniform over the integer shifts in ``[-jitter, jitter]`` that keep
    it inside the ``H x W`` map: ``draws`` are ``(2,)`` int32 samples ``(ry, rx)`` uniform in
    ``[0, 2**31 - 1)`` drawn upstream (``rng.integers(0, 2**31 - 1, size=(N, 2))``), ``lo_y = max(-jitter,
    -y0)``, ``hi_y = min(jitter, H - size - y0)``, ``dy = lo_y + ry % (hi_y - lo_y + 1)`` (same for x). Same
    rule as :func:`kernels.search.max_window` with ``tau=jitter``. ``jitter`` defaults to 0 (no jitter; the
    draws are then not read, and ``draws=None`` is allowed); the paper uses 16 at 224 px. A map smaller than
    the window gets the box ``(-1, -1, -1, -1)`` (no occlusion; an operator cannot raise).
    ``map_index`` as in :func:`saliency_peak_box` (-1: row not occluded).
    """
    from nvidia.dali import fn, types

    S = _int_arg("size", size, 1)
    T = _int_arg("stride", stride, 1)
    jitter = _int_arg("jitter", jitter, 0)
    device = _device(device)
    if draws is None:
        if jitter > 0:
            raise ValueError("max_window: jitter > 0 needs `draws` ((2,) int32 (ry, rx) per sample)")
        draws = fn.constant(idata=[0, 0], shape=[2], dtype=types.INT32)
        draws = draws.gpu() if device == "gpu" else draws

    def gpu(sal):
        boxes, _ = _numba_gpu([sal, draws, _gpu_constant([S, T, jitter], np.int32)], run_function("max_window"),
                              _one_box_and_integral, [types.INT32, types.FLOAT64],
                              [types.FLOAT, types.INT32, types.INT32], [2, 2], [2, 1, 1], grid=(1, _GPU_THREADS))
        return boxes

    return _search(saliency, draws, map_index, device,
                   dict(method="max_window", size=S, stride=T, jitter=jitter), gpu)


def keep_box(saliency, tries, map_index=None, *, size: int, tau: float = 0.6, selective: str = "cut",
             device: str = "cpu"):
    """KeepAugment box of each ``(H, W)`` float32 map: ``(1, 4)`` int32 (Gong et al., CVPR 2021).

    Region scores are the saliency sum over the clipped Cutout box of side ``size`` around every pixel
    (the paper's Eq. 1, arXiv 2011.11778)
    (:func:`kernels.search.keep_region_scores`), the threshold their ``tau``-quantile; the box is centred on
    the first of the upstream-drawn candidate centres ``tries`` (``(T, 2)`` int32 samples ``(cy, cx)``)
    whose score is below (``selective="cut"``) / above (``"paste"``) it, else the lowest / highest-scoring
    candidate. Same rule and draws as :func:`kernels.search.selective_cut` / ``selective_paste`` (give the
    op ``stack([cy[i], cx[i]], -1)`` of their ``rng.integers`` draws).

    CPU: ``std::nth_element`` selections give NumPy's linear quantile. GPU: one block per sample computes
    the integral image and the scores in parallel (two scratch outputs, as CUDA kernels cannot allocate)
    and the quantile from exact order statistics (value bisection with block reductions), checked under
    the CUDA simulator. ``map_index`` as in :func:`saliency_peak_box` (-1: row not occluded).
    """
    from nvidia.dali import types

    size = _int_arg("size", size, 2)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be a quantile level in [0, 1], got {tau!r}")
    selective = _check("selective", selective, ("cut", "paste"))

    def gpu(sal):
        params = _gpu_constant([size // 2, 1 if selective == "cut" else 0], np.int32)
        boxes, _, _ = _numba_gpu([sal, tries, params], run_function("keep", float(tau)),
                                 _one_box_integral_and_scores, [types.INT32, types.FLOAT64, types.FLOAT64],
                                 [types.FLOAT, types.INT32, types.INT32], [2, 2, 2], [2, 2, 1],
                                 grid=(1, _KEEP_MAX_THREADS))
        return boxes

    # tau as a decimal string: DALI's float arguments are float32 (see box_search's schema)
    return _search(saliency, tries, map_index, device,
                   dict(method=f"keep_{selective}", size=size, tau=repr(float(tau))), gpu)
