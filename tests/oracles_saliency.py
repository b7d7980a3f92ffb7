"""NumPy oracle of OpenCV contrib's fine-grained saliency on a *float32* image, the call SaliencyMix's
official code makes (Uddin et al. 2021, arXiv 2006.01791; ``afm-shahab-uddin/SaliencyMix``,
``saliency_bbox``: ``computeSaliency(img.cpu().numpy().transpose(1, 2, 0))`` on the mean/std-normalised
tensor).

``StaticSaliencyFineGrained::calcIntensityChannel`` (opencv_contrib ``modules/saliency/src/
staticSaliencyFineGrained.cpp``) never converts a float image to 8 bits: ``cvtColor(BGR2GRAY)`` gives a
float32 gray plane (its ``Mat::zeros(CV_8UC1)`` destination is reallocated), both ``GaussianBlur`` calls and
``integral(CV_32F)`` run on floats, and ``getIntensityScaled`` then reads ``gray.at<uchar>(y, x)``: byte ``x``
of row ``y`` of the float32 buffer (rows of ``4 * W`` bytes, of which the first ``W`` are read). The steps,
each checked bit for bit against opencv-contrib-python-headless 5.0.0 on x86-64 (``tests/dali_ops/test_saliency.py``;
the roundings of steps 1 and 3 were found by experiment against it, other builds may differ):

1. gray = ``fma(c2, 0.299f, fma(c0, 0.114f, c1 * 0.587f))`` in float32 (a few pixels at the end of a row
   whose width is not a multiple of 8 are rounded differently, see :func:`gray_float`), ``c0`` the array's
   first channel (OpenCV's blue: the official code hands it an RGB tensor, so red gets blue's weight);
2. ``GaussianBlur(3x3, sigma 0)`` twice, separable, ``BORDER_REFLECT_101``, rows then columns, each pass
   ``0.5f * m + 0.25f * (a + b)`` rounded once (the products are exact, so FMA or not gives the same);
3. float32 integral image: float32 running sums along each row in OpenCV's vector order
   (:func:`row_prefix_float`), each added to the entry above in float32;
4. per neighbourhood as for uint8 input (:mod:`kernels.saliency`), with the centre value the raw byte
   above: ``on = c - v`` and ``off = v - c`` (``v = (box - c) / (area - 1)``) truncated to an integer whose
   low byte is kept (``(uchar)float``), so they wrap modulo 256;
5. ``mixScales`` / ``mixOnOff`` and the ``1/255`` scaling exactly as for uint8 input.
"""
from __future__ import annotations

import numpy as np

NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)

_B, _G, _R = np.float32(0.114), np.float32(0.587), np.float32(0.299)


def fma32(a, b, c):
    """float32 ``fma(a, b, c)``, correctly rounded: ``a * b`` is exact in float64, the float64 sum is made
    round-to-odd (TwoSum gives its error) so that the final rounding to float32 is the single rounding."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bp = s - c
    err = (p - bp) + (c - (s - bp))  # TwoSum: p + c == s + err exactly
    bits = s.view(np.int64)
    inexact_even = (err != 0) & ((bits & 1) == 0)
    toward = np.nextafter(s, np.where(err > 0, np.inf, -np.inf))
    return np.where(inexact_even, toward, s).astype(np.float32)


def gray_float(img: np.ndarray) -> np.ndarray:
    """``cvtColor(img, COLOR_BGR2GRAY)`` of an HWC float32 image (step 1), with the two roundings of
    opencv-contrib-python-headless 5.0.0 on x86-64: ``V = fma(c2, R, fma(c0, B, c1 * G))`` and
    ``S = fma(c2, R, fma(c1, G, c0 * B))``. Per row, the 8-pixel vector loop gives ``V``; of the ``W % 8``
    remaining pixels, a block of 4 (when there are 4 or more) gives ``S, V, S, V`` and the rest ``V``."""
    img = np.asarray(img, np.float32)
    c0, c1, c2 = img[..., 0], img[..., 1], img[..., 2]
    v = fma32(c2, _R, fma32(c0, _B, c1 * _G))
    s = fma32(c2, _R, fma32(c1, _G, c0 * _B))
    w = img.shape[1]
    x = np.arange(w)
    tail = w - w % 8
    use_s = (w % 8 >= 4) & (x >= tail) & (x < tail + 4) & ((x - tail) % 2 == 0)
    return np.where(use_s, s, v).astype(np.float32)


def _reflect101(n):
    """Indices of the left and right neighbours of 0..n-1 under BORDER_REFLECT_101."""
    i = np.arange(n)
    if n == 1:
        return i, i
    return np.abs(i - 1), np.where(i + 1 >= n, 2 * n - 2 - (i + 1), i + 1)


def blur_float(g: np.ndarray) -> np.ndarray:
    """``GaussianBlur(3x3, sigma 0)`` of a float32 plane: rows, then columns (step 2)."""
    h, w = g.shape
    half, quarter = np.float32(0.5), np.float32(0.25)
    left, right = _reflect101(w)
    rows = half * g + quarter * (g[:, left] + g[:, right])
    up, down = _reflect101(h)
    return (half * rows + quarter * (rows[up] + rows[down])).astype(np.float32)


def _prefix4(v):
    """In-register prefix of 4 lanes by two shifted adds: a, a+b, a+(b+c), (a+b)+(c+d) (float32)."""
    v1 = v.copy()
    v1[:, 1:] = v[:, 1:] + v[:, :-1]
    v2 = v1.copy()
    v2[:, 2:] = v1[:, 2:] + v1[:, :-2]
    return v2


def row_prefix_float(g: np.ndarray) -> np.ndarray:
    """The running row sums of ``integral(g, CV_32F)`` (step 3), in OpenCV's order: blocks of 8, each two
    4-lane prefixes, the upper one plus the lower's total, then plus the previous block's last sum; the
    remaining ``w % 8`` columns one addition at a time."""
    h, w = g.shape
    out = np.empty((h, w), np.float32)
    carry = np.zeros(h, np.float32)
    j = 0
    for j in range(0, w - w % 8, 8):
        lo = _prefix4(g[:, j:j + 4])
        hi = _prefix4(g[:, j + 4:j + 8]) + lo[:, 3:4]
        out[:, j:j + 8] = np.concatenate([lo, hi], 1) + carry[:, None]
        carry = out[:, j + 7].copy()
    for x in range(w - w % 8, w):
        carry = carry + g[:, x]
        out[:, x] = carry
    return out


def integral_float(g: np.ndarray) -> np.ndarray:
    """``integral(g, CV_32F)``: (h+1, w+1); row ``y + 1`` is row ``y`` plus the running sums of gray row ``y``
    (step 3; ``np.cumsum`` on float32 accumulates in order, one rounding per addition)."""
    h, w = g.shape
    out = np.zeros((h + 1, w + 1), np.float32)
    out[1:, 1:] = np.cumsum(row_prefix_float(g), axis=0, dtype=np.float32)
    return out


def centre_bytes(g: np.ndarray) -> np.ndarray:
    """``gray.at<uchar>(y, x)`` on a CV_32F plane: the first ``w`` bytes of each row of the float buffer."""
    h, w = g.shape
    return np.ascontiguousarray(g, "<f4").view(np.uint8).reshape(h, 4 * w)[:, :w]


def _uchar(m):
    """``m > 0 ? (uchar)m : 0`` as x86 runs it: truncation to int32, low byte; a value the int32 conversion
    cannot hold (above 2**31, or +inf from a 1x1 image's 0 / 0 surround) gives 0x80000000, i.e. 0."""
    ok = (m > 0) & (m < np.float32(2**31))
    return np.where(ok, np.where(ok, m, 0).astype(np.int64) & 0xFF, 0)


def on_off_sums(integral: np.ndarray, centre: np.ndarray):
    """uint16-range on / off sums over the six scales (step 4), as int64 arrays."""
    h, w = centre.shape
    c = centre.astype(np.float32)
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    on = np.zeros((h, w), np.int64)
    off = np.zeros((h, w), np.int64)
    for n in NEIGHBOURHOODS:
        x1, x2 = np.clip(x - n + 1, 0, w), np.clip(x + n + 1, 0, w)
        y1, y2 = np.clip(y - n + 1, 0, h), np.clip(y + n + 1, 0, h)
        area = ((x2 - x1) * (y2 - y1) - 1).astype(np.float32)
        v = ((integral[y2, x2] + integral[y1, x1]) - integral[y2, x1]) - integral[y1, x2]
        with np.errstate(invalid="ignore", divide="ignore"):  # a 1x1 image: 0 / 0 as OpenCV
            v = (v - c) / area
        on += _uchar(c - v)
        off += _uchar(v - c)
    return on, off


def _scale(s, max_s):
    """mixScales: ``(uchar)(255. * (float)(s / (float)max_s))``; a zero maximum gives 0 (NaN -> 0 on x86)."""
    if max_s == 0:
        return np.zeros_like(s)
    q = s.astype(np.float32) / np.float32(max_s)
    return (255.0 * q.astype(np.float64)).astype(np.int64) & 0xFF


def mix(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """mixScales + mixOnOff + ``convertTo(CV_32F, 1/255.f)`` (step 5)."""
    son, soff = _scale(on, int(on.max())), _scale(off, int(off.max()))
    max_val = max(int(son.max()), int(soff.max()))
    if max_val == 0:
        return np.zeros(on.shape, np.float32)
    total = (son + soff).astype(np.float32).astype(np.float64)
    u8 = (255.0 * total / np.float64(np.float32(max_val))).astype(np.int64) & 0xFF
    return u8.astype(np.float32) * np.float32(1.0 / 255.0)


def fine_grained_float(img: np.ndarray) -> np.ndarray:
    """``cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(img)[1]`` for an HWC float32 image
    with 3 channels, bit for bit."""
    img = np.asarray(img)
    if img.dtype != np.float32 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"fine_grained_float: img must be HWC float32 with 3 channels, got {img.dtype} {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        return np.zeros(img.shape[:2], np.float32)
    g = blur_float(blur_float(gray_float(img)))
    return mix(*on_off_sums(integral_float(g), centre_bytes(g)))
