"""Apply occlusions on arrays: erase boxes, paste a partner's grid cells, and the exact ``lam`` they leave.

Papers and reference code whose *application step* these reproduce:

* Cutout (DeVries & Taylor, 2017; uoguelph-mlrg/Cutout ``util/cutout.py``) and Hide-and-Seek
  (Singh & Lee, 2017; kkanshul/Hide-and-Seek ``hide_patch.py``): the region is multiplied by a
  0-mask after mean/std normalisation, i.e. filled with 0 (the dataset mean) -> :func:`erase`
  with ``fill=0`` on NCHW float, or ``fill=mean*255`` per channel on NHWC uint8.
* Attentive CutMix (Walawalkar et al., 2020; openmixup ``augments/attentivemix.py``):
  ``img = mask * img + (1 - mask) * img[perm]`` with a G x G cell mask upsampled (nearest) to the
  image -> :func:`paste_cells` (``cell_mask`` says which cells come from the partner, so
  openmixup's call is ``paste_cells(images, perm, ~top_k_mask)``).
* CutMix's lambda correction (clovaai commit 9dc8245): ``lam = 1 - box_area / (H * W)``, generalised
  to several, possibly overlapping boxes by :func:`lam_from_boxes` (area of the union, exact).

(Pasting a partner's *boxes* -- CutMix, SaliencyMix, KeepAugment -- is the plugin's ``paste_boxes`` /
``normalize_occlude`` in the graph and :func:`pipelines.methods.saliency.paste_rows` on the training side.)

Every pixel operation is one Numba kernel: one CUDA thread per pixel (``n, y, x``) checks whether the
pixel lies in any of its row's boxes (or in a selected cell) and writes all channels; the CPU twin
runs the same per-pixel function (:mod:`kernels._twin`) in a loop nest. NumPy arrays run the CPU twin,
CuPy arrays the CUDA kernel; the result has the caller's array type.

Layouts: images are ``(N, C, H, W)`` (``"NCHW"``, float after normalisation) or ``(N, H, W, C)``
(``"NHWC"``, uint8 as decoded); ``layout=None`` infers NHWC for uint8 and NCHW for floating dtypes.
Boxes follow :mod:`kernels` conventions: ``(y0, x0, y1, x1)`` half-open, per row ``(N, K, 4)``
padded with -1 (a padded or otherwise empty box covers no pixel). ``(N, 4)`` means one box per
row and ``(4,)`` one box for the whole batch (reference "batch" mode).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from . import _twin
from ._twin import twin

__all__ = ["erase", "paste_cells", "lam_from_boxes", "lam_from_cells", "cell_edges"]


# --------------------------------------------------------------------------------------------------
# per-pixel logic (one source: njit for the CPU twin, cuda.jit(device=True) for the kernels)
# --------------------------------------------------------------------------------------------------
@twin
def _in_any_box(boxes, n, y, x):
    """True when pixel (y, x) lies in one of row n's half-open boxes (empty/padded boxes never match)."""
    for k in range(boxes.shape[1]):
        if boxes[n, k, 0] <= y and y < boxes[n, k, 2] and boxes[n, k, 1] <= x and x < boxes[n, k, 3]:
            return True
    return False


@twin
def _cell_of(i, size, g):
    """Grid cell of pixel coordinate i: cells of ``size // g`` pixels, the last one takes the remainder."""
    c = i // (size // g)
    if c >= g:
        c = g - 1
    return c


@twin
def _takes_partner_cell(partner, mask, h, w, n, y, x):
    """True when pixel (y, x) of row n (image h x w) comes from its partner: it has one and the
    pixel's grid cell is selected in ``mask[n]``."""
    if partner[n] < 0:
        return False
    return mask[n, _cell_of(y, h, mask.shape[1]), _cell_of(x, w, mask.shape[2])]


# --------------------------------------------------------------------------------------------------
# drivers. CPU: loop nests in memory order (channels-first or channels-last), each pixel decided by
# the twin above. CUDA: one thread per pixel (n, y, x) on the native layout (``chan_first`` flag), the
# same twin decides, the thread writes all C channels.
# Per-pixel predicates rather than "pick the source row" helpers: returning either partner[n] or n
# from one function would unify int64 with prange's unsigned index into float.
# --------------------------------------------------------------------------------------------------
def _erase_nchw_cpu(out, src, boxes, fill, copy_rest):
    n_rows, ch, h, w = out.shape
    for n in prange(n_rows):
        for c in range(ch):
            for y in range(h):
                for x in range(w):
                    if _in_any_box(boxes, n, y, x):
                        out[n, c, y, x] = fill[c]
                    elif copy_rest:
                        out[n, c, y, x] = src[n, c, y, x]


def _erase_nhwc_cpu(out, src, boxes, fill, copy_rest):
    n_rows, h, w, ch = out.shape
    for n in prange(n_rows):
        for y in range(h):
            for x in range(w):
                if _in_any_box(boxes, n, y, x):
                    for c in range(ch):
                        out[n, y, x, c] = fill[c]
                elif copy_rest:
                    for c in range(ch):
                        out[n, y, x, c] = src[n, y, x, c]


def _paste_cells_nchw_cpu(out, src, partner, mask):
    n_rows, ch, h, w = out.shape
    for n in prange(n_rows):
        p = partner[n]
        for c in range(ch):
            for y in range(h):
                for x in range(w):
                    if _takes_partner_cell(partner, mask, h, w, n, y, x):
                        out[n, c, y, x] = src[p, c, y, x]
                    else:
                        out[n, c, y, x] = src[n, c, y, x]


def _paste_cells_nhwc_cpu(out, src, partner, mask):
    n_rows, h, w, ch = out.shape
    for n in prange(n_rows):
        p = partner[n]
        for y in range(h):
            for x in range(w):
                if _takes_partner_cell(partner, mask, h, w, n, y, x):
                    for c in range(ch):
                        out[n, y, x, c] = src[p, y, x, c]
                else:
                    for c in range(ch):
                        out[n, y, x, c] = src[n, y, x, c]


def _erase_cuda(out, src, boxes, fill, copy_rest, chan_first):
    t = cuda.grid(1)  # noqa: F821 -- `cuda` is injected by _twin.cuda_kernel
    if chan_first:
        n_rows, ch, h, w = out.shape
    else:
        n_rows, h, w, ch = out.shape
    if t < n_rows * h * w:
        n = t // (h * w)
        r = t - n * (h * w)
        y = r // w
        x = r - y * w
        if _in_any_box(boxes, n, y, x):
            for c in range(ch):
                if chan_first:
                    out[n, c, y, x] = fill[c]
                else:
                    out[n, y, x, c] = fill[c]
        elif copy_rest:
            for c in range(ch):
                if chan_first:
                    out[n, c, y, x] = src[n, c, y, x]
                else:
                    out[n, y, x, c] = src[n, y, x, c]


@twin
def _copy_pixel(out, src, take, partner, n, y, x, ch, chan_first):
    """Thread body of the paste_cells kernel: all channels of pixel (y, x) from partner or self."""
    if take:
        p = partner[n]
        for c in range(ch):
            if chan_first:
                out[n, c, y, x] = src[p, c, y, x]
            else:
                out[n, y, x, c] = src[p, y, x, c]
    else:
        for c in range(ch):
            if chan_first:
                out[n, c, y, x] = src[n, c, y, x]
            else:
                out[n, y, x, c] = src[n, y, x, c]


def _paste_cells_cuda(out, src, partner, mask, chan_first):
    t = cuda.grid(1)  # noqa: F821
    if chan_first:
        n_rows, ch, h, w = out.shape
    else:
        n_rows, h, w, ch = out.shape
    if t < n_rows * h * w:
        n = t // (h * w)
        r = t - n * (h * w)
        y = r // w
        x = r - y * w
        _copy_pixel(out, src, _takes_partner_cell(partner, mask, h, w, n, y, x), partner, n, y, x, ch,
                         chan_first)


_DRIVERS = {  # name: (CPU NCHW loop, CPU NHWC loop, CUDA kernel for both layouts)
    "erase": (_erase_nchw_cpu, _erase_nhwc_cpu, _erase_cuda),
    "paste_cells": (_paste_cells_nchw_cpu, _paste_cells_nhwc_cpu, _paste_cells_cuda),
}


@functools.cache
def _compiled(name: str, target: str, layout: str):
    nchw, nhwc, kernel = _DRIVERS[name]
    if target == "cpu":
        return _twin.cpu_driver(nchw if layout == "NCHW" else nhwc)
    if target == "cuda":
        return _twin.cuda_kernel(kernel)
    raise ValueError(f"target must be 'cpu' or 'cuda', got {target!r}")


def _run(name: str, xp, layout: str, out, src, *args) -> None:
    """Run op ``name`` on native-layout ``out``/``src`` (CPU twin for NumPy, CUDA kernel for CuPy)."""
    target = _twin.target_for(xp)
    fn = _compiled(name, target, layout)
    if target == "cpu":
        fn(out, src, *args)
        return
    chan_first = layout == "NCHW"
    n_rows = out.shape[0]
    h, w = out.shape[2:4] if chan_first else out.shape[1:3]
    if xp is np:  # host arrays (the CUDA simulator in tests): explicit transfers, aliases kept aliased
        from numba import cuda

        d_out = cuda.to_device(np.ascontiguousarray(out))
        d_src = d_out if src is out else cuda.to_device(np.ascontiguousarray(src))
        d_args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
        _twin.launch_1d(fn, n_rows * h * w, d_out, d_src, *d_args, chan_first)
        out[...] = d_out.copy_to_host()
    else:  # CuPy arrays go in through __cuda_array_interface__, strides and all
        _twin.launch_1d(fn, n_rows * h * w, out, src, *args, chan_first)


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _nhwc(images, layout):
    """(NHWC view of images, layout). Writes through the view land in ``images``."""
    if getattr(images, "ndim", None) != 4:
        raise ValueError(f"images must be a 4-D NCHW or NHWC array, got shape {getattr(images, 'shape', None)}")
    if layout is None:
        if images.dtype == np.uint8:
            layout = "NHWC"
        elif np.issubdtype(images.dtype, np.floating):
            layout = "NCHW"
        else:
            raise ValueError(f"layout=None infers NHWC for uint8 and NCHW for float images; "
                             f"images has dtype {images.dtype}, pass layout='NCHW' or 'NHWC'")
    if layout == "NHWC":
        return images, layout
    if layout == "NCHW":
        return images.transpose(0, 2, 3, 1), layout
    raise ValueError(f"layout must be 'NCHW', 'NHWC' or None, got {layout!r}")


def as_row_boxes(boxes, n_rows: int, xp=np):
    """Boxes as a C-contiguous int32 ``(N, K, 4)`` array; accepts ``(4,)``, ``(N, 4)`` or ``(N, K, 4)``."""
    b = xp.asarray(boxes)
    if b.dtype.kind not in "iu":
        raise ValueError(f"boxes must be integer (y0, x0, y1, x1) pixels, got dtype {b.dtype}")
    if b.ndim == 1 and b.shape[0] == 4:
        b = xp.broadcast_to(b.reshape(1, 1, 4), (n_rows, 1, 4))
    elif b.ndim == 2 and b.shape[1] == 4:
        b = b.reshape(b.shape[0], 1, 4)
    if b.ndim != 3 or b.shape[2] != 4 or b.shape[0] != n_rows:
        raise ValueError(f"boxes must have shape (4,), ({n_rows}, 4) or ({n_rows}, K, 4), "
                         f"got {tuple(xp.asarray(boxes).shape)}")
    return xp.ascontiguousarray(b, dtype=xp.int32)


def _partner(partner_index, n_rows: int, xp):
    p = xp.asarray(partner_index)
    if p.shape != (n_rows,) or p.dtype.kind not in "iu":
        raise ValueError(f"partner_index must be an integer array of shape ({n_rows},), "
                         f"got shape {tuple(p.shape)} dtype {p.dtype}")
    if n_rows and (int(p.min()) < -1 or int(p.max()) >= n_rows):
        raise ValueError(f"partner_index values must lie in [-1, {n_rows}) (-1 = no partner), "
                         f"got range [{int(p.min())}, {int(p.max())}]")
    return xp.ascontiguousarray(p, dtype=xp.int64)


def _out_array(out, images, xp):
    if out is None:
        return xp.empty_like(images)
    if type(out) is not type(images) or out.shape != images.shape or out.dtype != images.dtype:
        raise ValueError(f"out must be a {type(images).__name__} of shape {tuple(images.shape)} and dtype "
                         f"{images.dtype}, got {type(out).__name__} {tuple(getattr(out, 'shape', ()))} "
                         f"{getattr(out, 'dtype', None)}")
    if xp.may_share_memory(out, images):
        raise ValueError("out must not overlap images (pixels are read from images while out is written)")
    return out


def cell_edges(g: int, size: int) -> np.ndarray:
    """Pixel edges ``(g + 1,)`` of a g-cell grid over ``size`` pixels.

    Cells are ``size // g`` pixels, anchored at 0; the last cell also covers the remainder
    ``size - g * (size // g)``. When ``size`` is divisible by ``g`` this is exactly nearest-neighbour
    upsampling by ``size / g`` (openmixup's ``F.upsample(scale_factor=H/7, mode='nearest')`` at 224).
    """
    g, size = int(g), int(size)
    if g < 1 or g > size:
        raise ValueError(f"grid size must lie in [1, {size}] (image size {size}), got {g}")
    c = size // g
    edges = np.arange(g + 1, dtype=np.int64) * c
    edges[-1] = size
    return edges


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def erase(images, boxes, fill=0, *, layout=None, inplace=False, out=None):
    """Fill every pixel inside any of a row's boxes with ``fill`` (Cutout / Hide-and-Seek).

    Args:
        images: ``(N, C, H, W)`` float or ``(N, H, W, C)`` uint8 array (NumPy: CPU twin; CuPy: CUDA kernel).
        boxes: ``(N, K, 4)`` int ``(y0, x0, y1, x1)`` per row, -1 padded; ``(N, 4)`` or ``(4,)`` also accepted.
            Boxes may extend past the border (only pixels inside the image are touched).
        fill: scalar or per-channel ``(C,)`` value. Cutout/Hide-and-Seek use 0 on normalised floats (the
            dataset mean); for uint8 the value is rounded to the nearest integer and must lie in [0, 255].
        layout: ``"NCHW"``, ``"NHWC"`` or ``None`` (uint8 -> NHWC, float -> NCHW).
        inplace: write into ``images`` instead of a new array.
        out: optional preallocated output (same shape, dtype and array type, not overlapping ``images``);
            reusing it avoids allocating (and page-faulting) a fresh batch per call.

    Returns:
        The erased images (same type, shape and dtype as ``images``).
    """
    xp = _twin.array_module(images)
    src, layout = _nhwc(images, layout)
    n_rows, _, _, ch = src.shape
    b = as_row_boxes(boxes, n_rows, xp)
    f = np.asarray(fill, dtype=np.float64)
    if f.ndim == 0:
        f = np.full((ch,), float(f))
    if f.shape != (ch,):
        raise ValueError(f"fill must be a scalar or have one value per channel ({ch},), got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"fill must be finite, got {f.tolist()}")
    if np.issubdtype(src.dtype, np.integer):
        info = np.iinfo(src.dtype)
        f = np.rint(f)
        if f.min() < info.min or f.max() > info.max:
            raise ValueError(f"fill must lie in [{info.min}, {info.max}] for {src.dtype} images, got {f.tolist()}")
    f = xp.asarray(f.astype(src.dtype))
    if inplace:
        if out is not None:
            raise ValueError("pass either inplace=True or out=, not both")
        out = images
    else:
        out = _out_array(out, images, xp)
    _run("erase", xp, layout, out, images, b, f, not inplace)
    return out


def paste_cells(images, partner_index, cell_mask, *, layout=None, out=None):
    """Paste the partner's pixels in the grid cells where ``cell_mask`` is True (Attentive CutMix).

    ``cell_mask`` ``(N, Gh, Gw)`` bool is upsampled nearest to the image: cell (i, j) covers rows
    ``[i*c, (i+1)*c)`` with ``c = H // Gh`` (columns alike), and the last row/column of cells also covers
    the remainder when H (W) is not divisible by Gh (Gw) -- see :func:`cell_edges`. At 224 px with a
    7x7 grid this is openmixup's ``F.upsample(mask, scale_factor=32, mode='nearest')``.

    openmixup's Attentive CutMix keeps the top-k cells of each image and takes the rest from the
    partner, i.e. ``paste_cells(images, perm, ~topk_mask)`` with ``topk_mask`` from
    :func:`kernels.search.topk_cells`. ``out``: optional preallocated output, as in :func:`erase`.

    Returns:
        A new array of the same type; ``lam_from_cells(cell_mask, H, W, partner_index)`` is its ``lam``.
    """
    xp = _twin.array_module(images)
    src, layout = _nhwc(images, layout)
    n_rows, h, w, _ = src.shape
    m = xp.asarray(cell_mask)
    if m.ndim != 3 or m.shape[0] != n_rows or m.dtype != xp.bool_:
        raise ValueError(f"cell_mask must be a bool array of shape ({n_rows}, Gh, Gw), "
                         f"got shape {tuple(m.shape)} dtype {m.dtype}")
    cell_edges(m.shape[1], h), cell_edges(m.shape[2], w)  # validates 1 <= G <= size
    m = xp.ascontiguousarray(m)
    p = _partner(partner_index, n_rows, xp)
    out = _out_array(out, images, xp)
    _run("paste_cells", xp, layout, out, images, p, m)
    return out


def lam_from_boxes(boxes, H: int, W: int, partner_index=None):
    """``lam = 1 - |union of the row's boxes| / (H * W)`` per row, exact (overlaps counted once).

    Generalises CutMix's correction ``lam = 1 - (x2 - x1) * (y2 - y1) / (W * H)`` (clovaai 9dc8245) to
    several boxes. Boxes are clipped to the image first; empty and -1 padded boxes count zero. Where
    ``partner_index`` is given and -1 (nothing pasted), lam is 1.

    Exact union area, array code (NumPy/CuPy), two methods picked by cost: for few boxes, coordinate
    compression (the sorted box edges cut the image into at most (2K-1)^2 cells, each fully inside or
    fully outside every box; O(K^3) per row); for many boxes (e.g. a Hide-and-Seek grid), a painted
    coverage count from a 2-D difference array and two cumulative sums (O(H*W + K) per row).

    Returns:
        ``(N,)`` float64 (``(4,)`` / ``(N, 4)`` boxes are one box per row; a ``(4,)`` box gives ``(1,)``).
    """
    H, W = _check_hw(H, W)
    xp = _twin.array_module(boxes, partner_index)
    b = xp.asarray(boxes)
    n_rows = b.shape[0] if b.ndim >= 2 else 1
    b = as_row_boxes(b, n_rows, xp).astype(xp.int64)
    y0 = xp.clip(b[..., 0], 0, H)
    x0 = xp.clip(b[..., 1], 0, W)
    y1 = xp.clip(b[..., 2], 0, H)
    x1 = xp.clip(b[..., 3], 0, W)
    empty = (y1 <= y0) | (x1 <= x0)
    y0, y1, x0, x1 = (xp.where(empty, 0, v) for v in (y0, y1, x0, x1))
    k = b.shape[1]
    if k == 0:
        area = xp.zeros((n_rows,), dtype=xp.float64)
    elif (2 * k - 1) ** 2 * k <= H * W:
        area = _union_area_compressed(y0, x0, y1, x1, xp)
    else:
        area = _union_area_painted(y0, x0, y1, x1, H, W, xp)
    lam = 1.0 - area / float(H * W)
    return _no_partner_is_one(lam, partner_index, n_rows, xp)


def _union_area_compressed(y0, x0, y1, x1, xp):
    """Union area per row of clipped boxes (empty ones zeroed), by coordinate compression."""
    n_rows, k = y0.shape
    ys = xp.sort(xp.concatenate([y0, y1], axis=1), axis=1)
    xs = xp.sort(xp.concatenate([x0, x1], axis=1), axis=1)
    covered = xp.zeros((n_rows, 2 * k - 1, 2 * k - 1), dtype=bool)
    for j in range(k):
        in_y = (y0[:, j:j + 1] <= ys[:, :-1]) & (ys[:, 1:] <= y1[:, j:j + 1])
        in_x = (x0[:, j:j + 1] <= xs[:, :-1]) & (xs[:, 1:] <= x1[:, j:j + 1])
        covered |= in_y[:, :, None] & in_x[:, None, :]
    cell_area = xp.diff(ys, axis=1)[:, :, None] * xp.diff(xs, axis=1)[:, None, :]
    return (covered * cell_area).sum(axis=(1, 2)).astype(xp.float64)


def _union_area_painted(y0, x0, y1, x1, H, W, xp):
    """Union area per row of clipped boxes (empty ones zeroed): +1/-1 corners, 2-D prefix sum, count > 0."""
    n_rows, k = y0.shape
    w1 = W + 1
    plane = (H + 1) * w1
    base = xp.arange(n_rows, dtype=xp.int64)[:, None] * plane
    idx = xp.concatenate([base + y0 * w1 + x0, base + y0 * w1 + x1,
                          base + y1 * w1 + x0, base + y1 * w1 + x1], axis=1).ravel()
    one = xp.ones((n_rows, k), dtype=xp.float64)
    wts = xp.concatenate([one, -one, -one, one], axis=1).ravel()
    diff = xp.bincount(idx, weights=wts, minlength=n_rows * plane).reshape(n_rows, H + 1, w1)
    cover = diff.cumsum(axis=1).cumsum(axis=2)[:, :H, :W]
    return (cover > 0.5).sum(axis=(1, 2)).astype(xp.float64)


def lam_from_cells(cell_mask, H: int, W: int, partner_index=None):
    """``lam = 1 - (pixels of the selected cells) / (H * W)`` per row, with :func:`cell_edges` geometry.

    Equals ``1 - selected_cells / G^2`` when H and W are divisible by the grid; otherwise the larger edge
    cells count with their true size. Rows whose ``partner_index`` is -1 get 1.
    """
    H, W = _check_hw(H, W)
    xp = _twin.array_module(cell_mask)
    m = xp.asarray(cell_mask)
    if m.ndim != 3 or m.dtype != xp.bool_:
        raise ValueError(f"cell_mask must be a bool array of shape (N, Gh, Gw), got shape {tuple(m.shape)} "
                         f"dtype {m.dtype}")
    hy = xp.asarray(np.diff(cell_edges(m.shape[1], H)).astype(np.float64))
    wx = xp.asarray(np.diff(cell_edges(m.shape[2], W)).astype(np.float64))
    area = (m * hy[None, :, None] * wx[None, None, :]).sum(axis=(1, 2))
    lam = 1.0 - area / float(H * W)
    return _no_partner_is_one(lam, partner_index, m.shape[0], xp)


def _no_partner_is_one(lam, partner_index, n_rows, xp):
    if partner_index is None:
        return lam
    p = _partner(partner_index, n_rows, xp)
    return xp.where(p < 0, 1.0, lam)


def _check_hw(H, W):
    for name, v in (("H", H), ("W", W)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(H), int(W)
