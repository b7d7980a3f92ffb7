"""Fine-grained static saliency (SaliencyMix's saliency map), bit-exact with OpenCV contrib.

SaliencyMix (Uddin et al., "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better
Regularization", ICLR 2021) centres its paste box on the peak of
``cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(image)``: OpenCV contrib's
``StaticSaliencyFineGrained`` (``opencv_contrib/modules/saliency/src/staticSaliencyFineGrained.cpp``,
after Montabone & Soto, "Human detection using a mobile platform and novel features derived from a
visual saliency mechanism", Image and Vision Computing 2010). :func:`fine_grained` reproduces
opencv-contrib-python-headless 5.0.0 exactly:

1. gray = ``cvtColor(BGR2GRAY)`` in OpenCV 5's fixed point: ``(B*3735 + G*19235 + R*9798 + 2**14) >> 15``;
2. ``GaussianBlur(3x3, sigma=0)`` twice on uint8 with ``BORDER_REFLECT_101``; OpenCV's fixed-point
   path gives exactly ``(sum of [1 2 1] x [1 2 1] weighted pixels + 8) >> 4``;
3. a float32 integral image of size (H+1, W+1), accumulated like ``cv::integral``:
   ``I[y+1, x+1] = I[y, x+1] + (running sum of row y)`` rounded to float32 (above 2**24, i.e.
   images over about 65k pixels, this rounding changes results: float64 would not match);
4. for each neighbourhood n in (12, 24, 48, 28, 56, 112): box corners ``x-n+1`` and ``x+n+1`` (same
   in y) clamped to the integral image, surround mean ``(box - centre) / (area - 1)`` in float32,
   ``on = centre - mean`` and ``off = mean - centre`` truncated to uint8 where positive;
5. on and off summed over the scales, each sum scaled to uint8 by ``255 * (sum / max sum)``, then
   ``final = uint8(255 * (on + off) / max(max on, max off))``;
6. returned as ``final * float32(1/255)`` (what OpenCV 5 returns).

The DALI operator ``fn.occlusion.fine_grained_saliency`` (``dali_ops/csrc/fine_grained_saliency/``: the
CPU kernel ``fine_grained_saliency_cpu.cc``, the CUDA kernels ``fine_grained_saliency_gpu.cuh``)
computes the same numbers on CPU and GPU; ``tests/dali_ops/test_saliency.py`` checks this module, the
operator and OpenCV against each other. Images are RGB here (OpenCV is given the BGR version).

``max_side`` (both here and in the operator) trades exactness for speed on large images: the gray
image is box-averaged down so that its longer side is ``max_side`` (integer mean, rounded), the
saliency is computed at that size and the uint8 map is resized back bilinearly (half-pixel
centres, 8-bit fixed-point weights), giving ``q / (255 * 65536)`` as float32.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

__all__ = ["fine_grained", "NEIGHBOURHOODS", "working_size"]

#: Centre-surround neighbourhood half-sizes, in OpenCV's order.
NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)
_NEIGHBOURHOODS = np.array(NEIGHBOURHOODS, dtype=np.int64)

# error_model="numpy": a 1x1 image divides 0 by 0 like OpenCV (NaN, which then counts as 0).
_jit = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_jit)
def working_size(H, W, max_side):
    """Working resolution for ``max_side`` (<= 0: full size); never upsamples."""
    if max_side <= 0:
        return H, W
    if H >= W and H > max_side:
        return max_side, max(1, (W * max_side + H // 2) // H)
    if W > H and W > max_side:
        return max(1, (H * max_side + W // 2) // W), max_side
    return H, W


@njit(**_jit)
def _gray(r, g, b):
    return (np.int64(b) * 3735 + np.int64(g) * 19235 + np.int64(r) * 9798 + 16384) >> 15


@njit(**_jit)
def _reflect101(i, n):
    if n == 1:
        return 0
    if i < 0:
        return -i
    if i >= n:
        return 2 * n - 2 - i
    return i


@njit(**_jit)
def _gray_working(rgb, h, w):
    H, W = rgb.shape[0], rgb.shape[1]
    out = np.empty((h, w), np.uint8)
    if h == H and w == W:
        for y in range(H):
            for x in range(W):
                out[y, x] = _gray(rgb[y, x, 0], rgb[y, x, 1], rgb[y, x, 2])
        return out
    for i in range(h):
        y0, y1 = i * H // h, (i + 1) * H // h
        for j in range(w):
            x0, x1 = j * W // w, (j + 1) * W // w
            s = 0
            for y in range(y0, y1):
                for x in range(x0, x1):
                    s += _gray(rgb[y, x, 0], rgb[y, x, 1], rgb[y, x, 2])
            count = (y1 - y0) * (x1 - x0)
            out[i, j] = (s + count // 2) // count
    return out


@njit(**_jit)
def _blur3x3(src):
    h, w = src.shape
    dst = np.empty_like(src)
    for y in range(h):
        ys = (_reflect101(y - 1, h), y, _reflect101(y + 1, h))
        for x in range(w):
            xs = (_reflect101(x - 1, w), x, _reflect101(x + 1, w))
            s = 0
            for a in range(3):
                row = (np.int64(src[ys[a], xs[0]]) + 2 * np.int64(src[ys[a], xs[1]])
                       + np.int64(src[ys[a], xs[2]]))
                s += row * (2 if a == 1 else 1)
            dst[y, x] = (s + 8) >> 4
    return dst


@njit(**_jit)
def _integral(gray):
    h, w = gray.shape
    integral = np.zeros((h + 1, w + 1), np.float32)
    for y in range(h):
        run = 0
        for x in range(w):
            run += np.int64(gray[y, x])
            integral[y + 1, x + 1] = integral[y, x + 1] + np.float32(run)
    return integral


@njit(**_jit)
def _scale_sum(s, max_s):
    if max_s == 0:
        return 0
    q = np.float32(s) / np.float32(max_s)
    return np.int64(255.0 * np.float64(q)) & 0xFF


@njit(**_jit)
def _mix(k, max_val):
    if max_val == 0:
        return 0
    return np.int64(255.0 * np.float64(np.float32(k)) / np.float64(np.float32(max_val))) & 0xFF


@njit(**_jit)
def _saliency_u8(gray):
    """uint8 saliency map of a uint8 gray image (steps 2-5)."""
    h, w = gray.shape
    g = _blur3x3(_blur3x3(gray))
    integral = _integral(g)
    on = np.zeros((h, w), np.int64)
    off = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            c = np.float32(g[y, x])
            son = 0
            soff = 0
            for n in _NEIGHBOURHOODS:
                x1 = min(max(x - n + 1, 0), w)
                x2 = min(max(x + n + 1, 0), w)
                y1 = min(max(y - n + 1, 0), h)
                y2 = min(max(y + n + 1, 0), h)
                area = np.float32((x2 - x1) * (y2 - y1) - 1)
                v = ((integral[y2, x2] + integral[y1, x1]) - integral[y2, x1]) - integral[y1, x2]
                v = (v - c) / area
                m_on = c - v
                m_off = v - c
                if m_on > 0:
                    son += np.int64(m_on) & 0xFF
                if m_off > 0:
                    soff += np.int64(m_off) & 0xFF
            on[y, x] = son
            off[y, x] = soff
    max_on = on.max()
    max_off = off.max()
    max_val = max(_scale_sum(max_on, max_on), _scale_sum(max_off, max_off))
    out = np.empty((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            out[y, x] = _mix(_scale_sum(on[y, x], max_on) + _scale_sum(off[y, x], max_off), max_val)
    return out


@njit(**_jit)
def _bilinear_coord(i, n_in, n_out):
    s = ((2 * i + 1) * n_in * 128) // n_out - 128
    if s < 0:
        s = 0
    i0 = s >> 8
    frac = s & 255
    if i0 >= n_in - 1:
        i0 = n_in - 1
        frac = 0
    i1 = i0 + 1 if i0 + 1 < n_in else i0
    return i0, i1, frac


@njit(**_jit)
def _one(rgb, max_side, out):
    H, W = rgb.shape[0], rgb.shape[1]
    if H == 0 or W == 0:
        return
    h, w = working_size(H, W, max_side)
    m = _saliency_u8(_gray_working(rgb, h, w))
    scale = np.float32(1.0 / 255.0)
    if h == H and w == W:
        for y in range(H):
            for x in range(W):
                out[y, x] = np.float32(m[y, x]) * scale
        return
    denom = np.float32(255 * 65536)
    for Y in range(H):
        y0, y1, fy = _bilinear_coord(Y, h, H)
        for X in range(W):
            x0, x1, fx = _bilinear_coord(X, w, W)
            top = np.int64(m[y0, x0]) * (256 - fx) + np.int64(m[y0, x1]) * fx
            bottom = np.int64(m[y1, x0]) * (256 - fx) + np.int64(m[y1, x1]) * fx
            out[Y, X] = np.float32(top * (256 - fy) + bottom * fy) / denom


@njit(parallel=True, **_jit)
def _batch(images, max_side, out):
    for i in prange(images.shape[0]):
        _one(images[i], max_side, out[i])


def _check_image(img, where: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"fine_grained: {where} must be uint8 RGB, got dtype {img.dtype}")
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"fine_grained: {where} must be HWC with 3 channels (RGB), got shape {img.shape}")
    return np.ascontiguousarray(img)


def fine_grained(images, max_side: int = 0):
    """Fine-grained saliency (OpenCV contrib ``StaticSaliencyFineGrained``) of RGB images.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB array, or a sequence of ``(H, W, 3)`` uint8 RGB arrays
            of any sizes (a single ``(H, W, 3)`` array is treated as one image, not a batch).
        max_side: 0 (default): full resolution, equal to OpenCV's
            ``computeSaliency(bgr)`` bit for bit. > 0: compute at a working resolution whose longer
            side is ``max_side`` (images within it are unchanged) and resize back bilinearly;
            identical to ``fn.occlusion.fine_grained_saliency(max_side=...)``.

    Returns:
        ``(N, H, W)`` float32 in [0, 1] for an array input, a list of ``(H, W)`` float32 maps for
        a sequence input, an ``(H, W)`` map for a single ``(H, W, 3)`` image. Images are processed
        in parallel (Numba threads).
    """
    max_side = int(max_side)
    if max_side < 0:
        raise ValueError(f"fine_grained: max_side must be >= 0 (0 = full resolution), got {max_side}")
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            return fine_grained(images[None], max_side)[0]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError("fine_grained: images must be (N, H, W, 3) or (H, W, 3) RGB, "
                             f"got shape {images.shape}")
        if images.dtype != np.uint8:
            raise TypeError(f"fine_grained: images must be uint8 RGB, got dtype {images.dtype}")
        images = np.ascontiguousarray(images)
        out = np.zeros(images.shape[:3], np.float32)
        _batch(images, max_side, out)
        return out
    if not isinstance(images, Sequence):
        raise TypeError(f"fine_grained: images must be an array or a sequence of arrays, got {type(images)}")
    results = []
    for k, img in enumerate(images):
        img = _check_image(img, f"images[{k}]")
        out = np.zeros(img.shape[:2], np.float32)
        _one(img, max_side, out)
        results.append(out)
    return results
