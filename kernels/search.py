"""Search saliency maps for boxes and cells: SaliencyMix peak, Attentive CutMix top-k, Fong & Vedaldi max
window, KeepAugment selective cut / paste.

* :func:`saliency_peak_box` -- SaliencyMix (Uddin et al., ICLR 2021; ``saliency_bbox`` in
  afm-shahab-uddin/SaliencyMix and openmixup ``augments/saliencymix.py``).
* :func:`topk_cells` -- Attentive CutMix (Walawalkar et al., ICASSP 2020; openmixup
  ``augments/attentivemix.py``).
* :func:`max_window` -- Fong & Vedaldi's saliency-guided occlusion (the S x S window of largest
  saliency, stride T, jittered by up to tau; "``avg_pool2d(sal, S, T)`` -> argmax -> jitter").
* :func:`keep_region_scores`, :func:`selective_cut`, :func:`selective_paste` -- KeepAugment (Gong et al.,
  CVPR 2021). No official code exists; cjf8899/KeepAugment_Pytorch is the unofficial reference
  (fixed threshold 0.6 on a min-max normalised map) -- we follow the paper's adaptive threshold.

Box sums come from an integral image (summed-area table) built by two Numba kernels with CPU twins
(:mod:`kernels._twin`): a row pass (one thread per image row: running sum along x) then a column
pass (one thread per column: running sum along y), in float64. Window sums and the KeepAugment
region sums are one thread per output element, each O(1) from four integral-image reads. Argmax,
top-k, quantiles and gathers are NumPy/CuPy array code. Random draws come from the
``numpy.random.Generator`` passed in (on the host, also for CuPy inputs).

Saliency maps are ``(N, H, W)`` (or one ``(H, W)`` map, which gives one ``(4,)`` box -- the
reference "batch" mode); boxes are ``(y0, x0, y1, x1)`` int32 half-open.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import prange

from . import _twin
from ._twin import twin

__all__ = ["integral_image", "window_sums", "saliency_peak_box", "topk_cells", "max_window",
           "keep_region_scores", "keep_threshold", "selective_cut", "selective_paste"]


# --------------------------------------------------------------------------------------------------
# per-element logic (one source: njit for the CPU twin, cuda.jit(device=True) for the kernels)
# --------------------------------------------------------------------------------------------------
@twin
def _integral_row(sal, ii, n, y):
    """Row pass: ``ii[n, y+1, x+1] = sum(sal[n, y, :x+1])`` (float64 running sum)."""
    # Start from the zero first column of ``ii`` (float64) rather than a literal 0.0: under NumPy 2
    # promotion (the CUDA simulator runs this as Python) 0.0 + float32 stays float32, njit/CUDA widen.
    acc = ii[n, y + 1, 0]
    for x in range(sal.shape[2]):
        acc += sal[n, y, x]
        ii[n, y + 1, x + 1] = acc


@twin
def _integral_col(ii, n, x):
    """Column pass (after the row pass): running sum of column x down the rows of ``ii[n]``."""
    acc = ii[n, 0, x]  # the zero first row, float64 in every target (see _integral_row)
    for y in range(1, ii.shape[1]):
        acc += ii[n, y, x]
        ii[n, y, x] = acc


@twin
def _box_sum(ii, n, y0, x0, y1, x1):
    """Sum of ``sal[n, y0:y1, x0:x1]`` from the (H+1, W+1) integral image."""
    return ii[n, y1, x1] - ii[n, y0, x1] - ii[n, y1, x0] + ii[n, y0, x0]


@twin
def _window_sum(ii, out, size, stride, n, i, j):
    """``out[n, i, j]`` = sum of the size x size window with top-left (i*stride, j*stride)."""
    y0 = i * stride
    x0 = j * stride
    out[n, i, j] = _box_sum(ii, n, y0, x0, y0 + size, x0 + size)


@twin
def _centred_box_sum(ii, out, half, n, cy, cx):
    """``out[n, cy, cx]`` = saliency sum over the Cutout box centred on (cy, cx), clipped to the image
    (KeepAugment's region score, Gong et al. 2021, arXiv 2011.11778, Eq. 1)."""
    h = ii.shape[1] - 1
    w = ii.shape[2] - 1
    # conditionals, not the builtins max/min: Numba's CUDA target does not compile their varargs overload
    y0 = cy - half if cy > half else 0
    x0 = cx - half if cx > half else 0
    y1 = cy + half if cy + half < h else h
    x1 = cx + half if cx + half < w else w
    out[n, cy, cx] = _box_sum(ii, n, y0, x0, y1, x1)


# --------------------------------------------------------------------------------------------------
# drivers
# --------------------------------------------------------------------------------------------------
def _integral_cpu(sal, ii):
    n_rows, h, w = sal.shape
    for n in prange(n_rows):
        for y in range(h):
            _integral_row(sal, ii, n, y)
        for x in range(1, w + 1):
            _integral_col(ii, n, x)


def _integral_row_cuda(sal, ii):
    t = cuda.grid(1)  # noqa: F821 -- `cuda` is injected by _twin.cuda_kernel
    n_rows, h, _ = sal.shape
    if t < n_rows * h:
        n = t // h
        _integral_row(sal, ii, n, t - n * h)


def _integral_col_cuda(ii):
    t = cuda.grid(1)  # noqa: F821
    n_rows, _, w1 = ii.shape
    if t < n_rows * (w1 - 1):
        n = t // (w1 - 1)
        _integral_col(ii, n, t - n * (w1 - 1) + 1)


def _windows_cpu(ii, out, size, stride):
    n_rows, ny, nx = out.shape
    for n in prange(n_rows):
        for i in range(ny):
            for j in range(nx):
                _window_sum(ii, out, size, stride, n, i, j)


def _windows_cuda(ii, out, size, stride):
    t = cuda.grid(1)  # noqa: F821
    n_rows, ny, nx = out.shape
    if t < n_rows * ny * nx:
        n = t // (ny * nx)
        r = t - n * (ny * nx)
        i = r // nx
        _window_sum(ii, out, size, stride, n, i, r - i * nx)


def _centred_sums_cpu(ii, out, half):
    n_rows, h, w = out.shape
    for n in prange(n_rows):
        for cy in range(h):
            for cx in range(w):
                _centred_box_sum(ii, out, half, n, cy, cx)


def _centred_sums_cuda(ii, out, half):
    t = cuda.grid(1)  # noqa: F821
    n_rows, h, w = out.shape
    if t < n_rows * h * w:
        n = t // (h * w)
        r = t - n * (h * w)
        cy = r // w
        _centred_box_sum(ii, out, half, n, cy, r - cy * w)


_CPU = {"integral": _integral_cpu, "windows": _windows_cpu, "centred_sums": _centred_sums_cpu}
_CUDA = {"integral_row": _integral_row_cuda, "integral_col": _integral_col_cuda,
         "windows": _windows_cuda, "centred_sums": _centred_sums_cuda}


@functools.cache
def _cpu(name):
    return _twin.cpu_driver(_CPU[name])


@functools.cache
def _cuda(name):
    return _twin.cuda_kernel(_CUDA[name])


# --------------------------------------------------------------------------------------------------
# argument helpers
# --------------------------------------------------------------------------------------------------
def _as_maps(saliency, name="saliency"):
    """(float (N, H, W) array, was_2d). Integer maps are cast to float32."""
    xp = _twin.array_module(saliency)
    s = xp.asarray(saliency)
    if s.ndim not in (2, 3) or s.shape[-1] < 1 or s.shape[-2] < 1:
        raise ValueError(f"{name} must be an (N, H, W) or (H, W) array with H, W >= 1, got shape {tuple(s.shape)}")
    if s.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be a real array, got dtype {s.dtype}")
    if s.dtype.kind != "f":
        s = s.astype(xp.float32)
    was_2d = s.ndim == 2
    return (s[None] if was_2d else s), was_2d, xp


def _int_arg(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo \
            or (hi is not None and value > hi):
        span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an int {span}, got {value!r}")
    return int(value)


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _box_from_centre(cy, cx, half_h, half_w, h, w, xp):
    """Boxes ``clip(c - half, 0, size), clip(c + half, 0, size)`` per axis, as (..., 4) int32."""
    return xp.stack([xp.clip(cy - half_h, 0, h), xp.clip(cx - half_w, 0, w),
                     xp.clip(cy + half_h, 0, h), xp.clip(cx + half_w, 0, w)], axis=-1).astype(xp.int32)


# --------------------------------------------------------------------------------------------------
# integral image and window sums
# --------------------------------------------------------------------------------------------------
def integral_image(saliency):
    """Summed-area table ``(N, H+1, W+1)`` float64: ``ii[n, y, x] = sal[n, :y, :x].sum()`` (zero first row/col).

    NumPy input runs the CPU twin, CuPy input the two CUDA kernels (row pass, then column pass).
    """
    s, _, xp = _as_maps(saliency)
    n_rows, h, w = s.shape
    ii = xp.zeros((n_rows, h + 1, w + 1), dtype=xp.float64)
    if _twin.target_for(xp) == "cpu":
        _cpu("integral")(s, ii)
    else:
        _twin.launch_1d(_cuda("integral_row"), n_rows * h, s, ii)
        _twin.launch_1d(_cuda("integral_col"), n_rows * w, ii)
    return ii


def window_sums(saliency, size: int, stride: int = 1):
    """Sums of every ``size x size`` window with top-left on the stride grid: ``(N, (H-S)//T+1, (W-S)//T+1)``.

    ``out[n, i, j] = sal[n, i*T : i*T+S, j*T : j*T+S].sum()`` (float64, from the integral image) --
    ``avg_pool2d(sal, S, T) * S^2`` without padding. Windows never leave the image.
    """
    s, _, xp = _as_maps(saliency)
    n_rows, h, w = s.shape
    size = _int_arg("S", size, 1, min(h, w))
    stride = _int_arg("T", stride, 1)
    ii = integral_image(s)
    out = xp.empty((n_rows, (h - size) // stride + 1, (w - size) // stride + 1), dtype=xp.float64)
    if _twin.target_for(xp) == "cpu":
        _cpu("windows")(ii, out, size, stride)
    else:
        _twin.launch_1d(_cuda("windows"), out.size, ii, out, size, stride)
    return out


# --------------------------------------------------------------------------------------------------
# SaliencyMix
# --------------------------------------------------------------------------------------------------
def saliency_peak_box(saliency, lam=None, *, cut=None, quantize=True):
    """SaliencyMix box: the CutMix-sized box centred on the saliency peak, clipped (not shifted).

    Follows ``saliency_bbox`` of the official code (and openmixup) on a given map:
    ``cut = int(size * sqrt(1 - lam))`` per axis, ``peak = argmax(map)`` (the *first* maximum in
    row-major order, ``np.argmax`` / ``np.unravel_index``), box = ``clip(peak - cut // 2, 0, size)``,
    ``clip(peak + cut // 2, 0, size)``; then CutMix's correction ``lam = 1 - box_area / (H * W)``.
    (The reference names the row axis ``x``/``W``; the geometry is the same.)

    Args:
        saliency: ``(N, H, W)`` maps (one box per row, "elem") or one ``(H, W)`` map (one box, the
            reference "batch" mode, where the official code uses the map of ``input[rand_index[0]]``
            for the whole batch). Typically :func:`kernels.saliency.fine_grained` output in [0, 1].
        lam: scalar or ``(N,)`` in [0, 1], the CutMix lambda drawn by the caller (``rng.beta(a, a, ...)``).
        cut: alternatively ``(cut_h, cut_w)`` or ``(N, 2)`` ints, the box sides before ``// 2``.
        quantize: reproduce the reference's ``(map * 255).astype(uint8)`` before the argmax (default).
            Quantisation merges nearby values, so the first maximum can move to an earlier pixel than
            the float argmax. We compute ``clip(map * 255, 0, 255)`` in the map's dtype and truncate,
            which equals the reference for maps in [0, 1] (``astype(uint8)`` of values outside [0, 255]
            is undefined in NumPy). ``quantize=False`` uses the float argmax.

    Returns:
        ``(boxes, lam)``: ``(N, 4)`` int32 and ``(N,)`` float64 -- or ``(4,)`` and a float for a 2-D map.
    """
    s, was_2d, xp = _as_maps(saliency)
    n_rows, h, w = s.shape
    if (lam is None) == (cut is None):
        raise ValueError("saliency_peak_box needs exactly one of lam= or cut=, got "
                         f"lam={lam!r}, cut={cut!r}")
    if lam is not None:
        lam_arr = np.asarray(lam, dtype=np.float64)
        if lam_arr.ndim > 1 or (lam_arr.ndim == 1 and lam_arr.shape[0] != n_rows):
            raise ValueError(f"lam must be a scalar or have shape ({n_rows},), got shape {lam_arr.shape}")
        if not np.all((lam_arr >= 0) & (lam_arr <= 1)):
            raise ValueError(f"lam must lie in [0, 1], got {lam!r}")
        cut_rat = np.sqrt(1.0 - np.broadcast_to(lam_arr, (n_rows,)))
        cut_h = (h * cut_rat).astype(np.int64)
        cut_w = (w * cut_rat).astype(np.int64)
    else:
        c = np.asarray(cut)
        if c.dtype.kind not in "iu" or c.shape not in ((2,), (n_rows, 2)) or np.any(c < 0):
            raise ValueError(f"cut must be non-negative ints of shape (2,) or ({n_rows}, 2), got {cut!r}")
        c = np.broadcast_to(c.astype(np.int64), (n_rows, 2))
        cut_h, cut_w = c[:, 0], c[:, 1]
    if quantize:
        scored = xp.clip(s * s.dtype.type(255), 0, 255).astype(xp.uint8)
    else:
        scored = s
    flat = xp.argmax(scored.reshape(n_rows, -1), axis=1)
    py, px = flat // w, flat % w
    boxes = _box_from_centre(py, px, xp.asarray(cut_h // 2), xp.asarray(cut_w // 2), h, w, xp)
    area = (boxes[:, 2] - boxes[:, 0]).astype(xp.float64) * (boxes[:, 3] - boxes[:, 1])
    lam_out = 1.0 - area / float(h * w)
    if was_2d:
        return boxes[0], float(lam_out[0])
    return boxes, lam_out


# --------------------------------------------------------------------------------------------------
# Attentive CutMix
# --------------------------------------------------------------------------------------------------
def topk_cells(attention, k: int = 6):
    """Attentive CutMix: the ``k`` largest cells of each ``(Gh, Gw)`` attention map.

    The attention map is the channel mean of a pretrained extractor's last conv features (7 x 7 for a
    ResNet-50 at 224 px); openmixup takes ``features.mean(1)`` -> ``topk(k)`` -> binary mask, upsamples it
    nearest to the image and mixes ``mask * img + (1 - mask) * img[perm]``: the top-k cells of image i
    are **kept**, everything else comes from the partner, and ``lam = mask.mean() = k / G^2`` weights
    ``y_i``. So in our convention (``lam`` = share of the row's own label) ``lam = k / (Gh * Gw)`` and
    the cells pasted from the partner are ``~mask``: ``apply.paste_cells(images, perm, ~mask)``.
    (``apply.lam_from_cells(~mask, H, W)`` gives the exact pixel share when H is not a multiple of G.)

    Ties: among equal values the cell with the lower row-major index wins (a stable sort of the
    negated values); torch.topk's tie order is unspecified.

    Args:
        attention: ``(N, Gh, Gw)`` real array (NumPy or CuPy); NaNs are rejected.
        k: number of cells, ``0 <= k <= Gh * Gw`` (the papers use k = 6 of 49).

    Returns:
        ``(mask, lam)``: ``(N, Gh, Gw)`` bool with exactly k True per row, and the float ``k / (Gh * Gw)``.
    """
    xp = _twin.array_module(attention)
    a = xp.asarray(attention)
    if a.ndim != 3 or a.shape[1] < 1 or a.shape[2] < 1 or a.dtype.kind not in "fiub":
        raise ValueError(f"attention must be a real (N, Gh, Gw) array, got shape {tuple(a.shape)} dtype {a.dtype}")
    n_rows, gh, gw = a.shape
    k = _int_arg("k", k, 0, gh * gw)
    flat = a.reshape(n_rows, gh * gw).astype(xp.float64)
    if bool(xp.isnan(flat).any()):
        raise ValueError("attention contains NaN")
    if xp is np:
        order = np.argsort(-flat, axis=1, kind="stable")
    else:  # CuPy's sort is stable (CUB radix sort)
        order = xp.argsort(-flat, axis=1)
    mask = xp.zeros((n_rows, gh * gw), dtype=bool)
    mask[xp.arange(n_rows)[:, None], order[:, :k]] = True
    return mask.reshape(n_rows, gh, gw), k / float(gh * gw)


# --------------------------------------------------------------------------------------------------
# Fong & Vedaldi max window
# --------------------------------------------------------------------------------------------------
def max_window(saliency, S: int, T: int = 1, tau: int = 0, rng=None):
    """Fong & Vedaldi (arXiv 1910.10651): the S x S window of largest total saliency on a stride-T grid,
    jittered by <= tau.

    Window sums come from the integral image (:func:`window_sums`, same as ``avg_pool2d(sal, S, T)``
    up to the factor S^2); the winner is the first maximum in row-major order of the stride grid
    (top-left ``(i*T, j*T)``). Exact ties between windows are resolved on float64 sums, so two windows
    whose true sums differ by less than rounding may swap. Then, if ``tau > 0``, the top-left ``(y0, x0)``
    moves by a shift uniform over the integer shifts in ``[-tau, tau]`` that keep the window inside:
    ``r = rng.integers(0, 2**31 - 1, size=(N, 2))`` (column 0 for y), ``lo = max(-tau, -y0)``,
    ``hi = min(tau, H - S - y0)``, ``dy = lo + r % (hi - lo + 1)`` (same for x) -- the rule of
    ``fn.occlusion.box_search(method="max_window", jitter=tau)`` with ``draws = r``. (Clipping a uniform
    draw instead would pile the mass of every outside shift on the border position.) The window never
    leaves the image and always keeps its S x S size. With ``tau == 0`` no random numbers are drawn.

    Args:
        saliency: ``(N, H, W)`` (or one ``(H, W)``) map, e.g. NormGrad at image resolution.
        S: window side, ``1 <= S <= min(H, W)`` (the paper uses 56 at 224 px).
        T: stride of the candidate grid, ``>= 1``.
        tau: jitter amplitude in pixels, ``>= 0`` (16 in the paper); needs ``rng`` when > 0.

    Returns:
        ``(N, 4)`` int32 boxes ``(y0, x0, y0 + S, x0 + S)`` (``(4,)`` for a 2-D map).
    """
    s, was_2d, xp = _as_maps(saliency)
    n_rows, h, w = s.shape
    S = _int_arg("S", S, 1, min(h, w))
    T = _int_arg("T", T, 1)
    tau = _int_arg("tau", tau, 0)
    if tau > 0:
        _check_rng(rng)
    sums = window_sums(s, S, T)
    nx = sums.shape[2]
    flat = xp.argmax(sums.reshape(n_rows, -1), axis=1)
    y0 = (flat // nx) * T
    x0 = (flat % nx) * T
    if tau > 0:
        r = xp.asarray(rng.integers(0, 2**31 - 1, size=(n_rows, 2)))
        y0 = y0 + _uniform_shift(y0, h - S, tau, r[:, 0], xp)
        x0 = x0 + _uniform_shift(x0, w - S, tau, r[:, 1], xp)
    boxes = xp.stack([y0, x0, y0 + S, x0 + S], axis=-1).astype(xp.int32)
    return boxes[0] if was_2d else boxes


def _uniform_shift(at, last, tau, r, xp):
    """Array form of :func:`_jitter_shift`."""
    lo = xp.maximum(-tau, -at)
    hi = xp.minimum(tau, last - at)
    return lo + r % (hi - lo + 1)


# --------------------------------------------------------------------------------------------------
# KeepAugment
# --------------------------------------------------------------------------------------------------
def keep_region_scores(saliency, size: int):
    """KeepAugment importance score of every candidate region: ``(N, H, W)`` float64.

    Candidate set: the boxes our Cutout-style sampler can draw -- one per centre pixel (cy, cx), box
    ``clip(c - size // 2, 0, H|W)`` .. ``clip(c + size // 2, 0, H|W)`` per axis (uoguelph-mlrg Cutout /
    cjf8899), so border boxes are clipped and smaller. ``scores[n, cy, cx]`` is the **sum** of saliency
    over that clipped box: the paper's region score (Gong et al. 2021, arXiv 2011.11778, Eq. 1,
    ``S(x) = sum over the region of g_ij(x)``). A clipped border box sums fewer pixels, so selective-cut
    favours it slightly, as the paper's score does.
    """
    s, _, xp = _as_maps(saliency)
    n_rows, h, w = s.shape
    size = _int_arg("size", size, 2)
    ii = integral_image(s)
    out = xp.empty((n_rows, h, w), dtype=xp.float64)
    if _twin.target_for(xp) == "cpu":
        _cpu("centred_sums")(ii, out, size // 2)
    else:
        _twin.launch_1d(_cuda("centred_sums"), out.size, ii, out, size // 2)
    return out


def keep_threshold(scores, tau: float = 0.6):
    """Per-row tau-quantile of all candidate scores (``xp.quantile``, linear interpolation): ``(N,)``."""
    xp = _twin.array_module(scores)
    tau = _tau(tau)
    return xp.quantile(scores.reshape(scores.shape[0], -1), tau, axis=1)


def _tau(tau):
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating, np.integer)) \
            or not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be a quantile level in [0, 1], got {tau!r}")
    return float(tau)


def selective_cut(rng, saliency, size: int, tau: float = 0.6, max_tries: int = 32):
    """KeepAugment selective-cut: a Cutout box whose importance score is below the tau-quantile.

    Paper (Gong et al., Sec. 3): the threshold is the tau-quantile of the importance scores of all
    candidate regions, and "we uniformly keep sampling a mask region S until its score is smaller
    than the threshold". Scores and candidates are :func:`keep_region_scores` (saliency sum over the
    clipped box around each centre pixel, Eq. 1), so the threshold is a quantile of exactly the distribution
    the sampler draws from and each draw is accepted with probability ~tau.

    Sampling (bounded, fully vectorised, reproducible): ``cy = rng.integers(0, H, size=(N, max_tries))``
    then ``cx = rng.integers(0, W, size=(N, max_tries))`` are always drawn (the generator advances by the
    same amount whatever the saliency); row n takes its first try with ``score < threshold``. If none of
    the ``max_tries`` qualifies (probability ~(1 - tau)^max_tries, or always when more than a 1 - tau share
    of the scores tie at the threshold, e.g. a constant map), the fallback is the lowest-scoring try
    drawn (the first one among equal scores).

    Returns:
        ``(N, 4)`` int32 boxes (``(4,)`` for a 2-D map), to erase with :func:`kernels.apply.erase`.
    """
    return _selective(rng, saliency, size, tau, max_tries, below=True)


def selective_paste(rng, saliency, size: int, tau: float = 0.6, max_tries: int = 32):
    """KeepAugment selective-paste: a box whose importance score is above the tau-quantile.

    Paper: "we uniformly sample a region S with importance score greater than the threshold", paste it
    from the original image onto the augmented one (RandAugment/AutoAugment). Same candidates, scores,
    draws and bounded retries as :func:`selective_cut`, with ``score > threshold`` and the fallback the
    highest-scoring try drawn. (cjf8899 instead accepts ``max(slc[box]) >= 0.6``.)

    Returns:
        ``(N, 4)`` int32 boxes (``(4,)`` for a 2-D map): the region of the original to paste back.
    """
    return _selective(rng, saliency, size, tau, max_tries, below=False)


def _selective(rng, saliency, size, tau, max_tries, below):
    _check_rng(rng)
    s, was_2d, xp = _as_maps(saliency)
    n_rows, h, w = s.shape
    size = _int_arg("size", size, 2)
    tau = _tau(tau)
    max_tries = _int_arg("max_tries", max_tries, 1)
    scores = keep_region_scores(s, size)
    thr = keep_threshold(scores, tau)
    cy = xp.asarray(rng.integers(0, h, size=(n_rows, max_tries)))
    cx = xp.asarray(rng.integers(0, w, size=(n_rows, max_tries)))
    rows = xp.arange(n_rows)[:, None]
    tried = scores[rows, cy, cx]
    ok = tried < thr[:, None] if below else tried > thr[:, None]
    fallback = xp.argmin(tried, axis=1) if below else xp.argmax(tried, axis=1)
    pick = xp.where(ok.any(axis=1), xp.argmax(ok, axis=1), fallback)[:, None]
    half = size // 2
    boxes = _box_from_centre(xp.take_along_axis(cy, pick, 1)[:, 0], xp.take_along_axis(cx, pick, 1)[:, 0],
                             half, half, h, w, xp)
    return boxes[0] if was_2d else boxes
