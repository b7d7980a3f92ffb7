"""Plain NumPy oracles for the tests: restated from the papers' reference code, loops and slicing only.

Test code (``import oracles`` from a test: pytest puts ``tests/`` on the path, as for ``conftest``);
library code never imports it, ``bench.kernels_bench`` times one of them as the brute-force contender.
Each function is written from the reference behaviour (the papers' reference code, cited per function), independently of the optimised
code it checks (the plugin's operators and kernels, ``kernels/``): no integral images, no twins, no
coordinate compression -- boxes are painted or sliced, windows summed directly.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------------------------------
# CutMix (clovaai/CutMix-PyTorch train.py)
# --------------------------------------------------------------------------------------------------
def clovaai_rand_bbox(size, lam, randint):
    """Literal ``rand_bbox`` of clovaai/CutMix-PyTorch, with ``np.random.randint`` passed in as ``randint``.

    ``size`` is the NCHW tensor size, so the reference's ``W = size[2]`` is the row axis: the returned
    ``(bbx1, bby1, bbx2, bby2)`` is ``(y0, x0, y1, x1)`` in our convention (it slices
    ``input[:, :, bbx1:bbx2, bby1:bby2]``).
    """
    W = size[2]
    H = size[3]
    cut_rat = np.sqrt(1. - lam)
    cut_w = int(W * cut_rat)  # np.int in the original (removed from NumPy; same truncation)
    cut_h = int(H * cut_rat)

    # uniform
    cx = randint(W)
    cy = randint(H)

    bbx1 = np.clip(cx - cut_w // 2, 0, W)
    bby1 = np.clip(cy - cut_h // 2, 0, H)
    bbx2 = np.clip(cx + cut_w // 2, 0, W)
    bby2 = np.clip(cy + cut_h // 2, 0, H)

    return bbx1, bby1, bbx2, bby2


def clovaai_cutmix_batch(rng, H, W, alpha):
    """One reference CutMix step's box and corrected lambda, driven by ``rng`` (a Generator).

    ``lam = np.random.beta(beta, beta)``, ``rand_bbox(input.size(), lam)``, then
    ``lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (input.size()[-1] * input.size()[-2]))``.
    """
    size = (1, 3, H, W)
    lam = rng.beta(alpha, alpha)
    bbx1, bby1, bbx2, bby2 = clovaai_rand_bbox(size, lam, rng.integers)
    lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (size[-1] * size[-2]))
    return np.array([bbx1, bby1, bbx2, bby2]), lam


def clovaai_cutmix_rows(rng, H, W, alpha, n):
    """The reference step applied per row, with our documented vectorised draw order.

    Draws ``lam = rng.beta(alpha, alpha, n)``, then all row-axis centres, then all column-axis centres,
    and runs the literal ``rand_bbox`` per row on those values.
    """
    size = (n, 3, H, W)
    lams = rng.beta(alpha, alpha, size=n)
    c_rows = rng.integers(H, size=n)
    c_cols = rng.integers(W, size=n)
    boxes, out_lam = [], []
    for i in range(n):
        draws = iter([c_rows[i], c_cols[i]])
        bbx1, bby1, bbx2, bby2 = clovaai_rand_bbox(size, lams[i], lambda hi, d=draws: next(d))
        boxes.append([bbx1, bby1, bbx2, bby2])
        out_lam.append(1 - ((bbx2 - bbx1) * (bby2 - bby1) / (size[-1] * size[-2])))
    return np.array(boxes).reshape(n, 4), np.array(out_lam, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# SaliencyMix (saliency_bbox of the official code, on a given map)
# --------------------------------------------------------------------------------------------------
def saliencymix_bbox(saliency_map, lam, quantize=True):
    """Literal ``saliency_bbox`` after ``computeSaliency``: ``(map*255).astype(uint8)``, first argmax, clip.

    ``saliency_map`` is (H, W). Returns ``(y0, x0, y1, x1)`` (the reference's ``bbx1, bby1, bbx2, bby2``).
    """
    W = saliency_map.shape[0]  # the reference: size = img.size(); W = size[1] (rows)
    H = saliency_map.shape[1]
    cut_rat = np.sqrt(1. - lam)
    cut_w = int(W * cut_rat)
    cut_h = int(H * cut_rat)
    saliencyMap = (saliency_map * 255).astype("uint8") if quantize else saliency_map
    maximum_indices = np.unravel_index(np.argmax(saliencyMap, axis=None), saliencyMap.shape)
    x = maximum_indices[0]
    y = maximum_indices[1]
    bbx1 = np.clip(x - cut_w // 2, 0, W)
    bby1 = np.clip(y - cut_h // 2, 0, H)
    bbx2 = np.clip(x + cut_w // 2, 0, W)
    bby2 = np.clip(y + cut_h // 2, 0, H)
    return np.array([bbx1, bby1, bbx2, bby2])


# --------------------------------------------------------------------------------------------------
# Attentive CutMix
# --------------------------------------------------------------------------------------------------
def topk_cells(attention, k):
    """Per row, the k cells with the largest value; ties -> lower row-major index first (Python sort)."""
    n, gh, gw = attention.shape
    mask = np.zeros((n, gh, gw), dtype=bool)
    for r in range(n):
        cells = [(-float(attention[r, i, j]), i * gw + j) for i in range(gh) for j in range(gw)]
        for _, idx in sorted(cells)[:k]:
            mask[r, idx // gw, idx % gw] = True
    return mask


def cell_scores(sal, g):
    """Attentive CutMix's cell scores restated: the mean of the (H, W) map over each cell of a g x g grid (cells
    of H // g pixels, the last one taking the remainder), summed pixel by pixel in row-major order in Python
    floats (IEEE doubles), NaN -> -inf."""
    H, W = sal.shape
    ye = [i * (H // g) for i in range(g)] + [H]
    xe = [j * (W // g) for j in range(g)] + [W]
    out = np.zeros((g, g))
    for i in range(g):
        for j in range(g):
            acc = 0.0
            for v in sal[ye[i]:ye[i + 1], xe[j]:xe[j + 1]].ravel().tolist():
                acc += v
            m = acc / ((ye[i + 1] - ye[i]) * (xe[j + 1] - xe[j]))
            out[i, j] = -np.inf if m != m else m
    return out


def topk_cell_boxes(sal, g, k, image_size=0):
    """The boxes of the cells outside the k best of :func:`cell_scores` (ties: lower row-major index first),
    row-major, in the cells of an image_size square image (0: the map's size) -- Attentive CutMix's pasted cells."""
    keep = topk_cells(cell_scores(sal, g)[None], k)[0]
    H, W = (image_size, image_size) if image_size else sal.shape
    ye = [i * (H // g) for i in range(g)] + [H]
    xe = [j * (W // g) for j in range(g)] + [W]
    boxes = [(ye[i], xe[j], ye[i + 1], xe[j + 1]) for i in range(g) for j in range(g) if not keep[i, j]]
    return np.array(boxes, np.int32).reshape(-1, 4)


def upsample_cells(cell_mask, H, W):
    """Pixel mask (N, H, W) of a cell mask: cells of H // G rows, the last cell taking the remainder."""
    n, gh, gw = cell_mask.shape
    ch, cw = H // gh, W // gw
    out = np.zeros((n, H, W), dtype=bool)
    for r in range(n):
        for i in range(gh):
            for j in range(gw):
                if cell_mask[r, i, j]:
                    y1 = H if i == gh - 1 else (i + 1) * ch
                    x1 = W if j == gw - 1 else (j + 1) * cw
                    out[r, i * ch:y1, j * cw:x1] = True
    return out


# --------------------------------------------------------------------------------------------------
# Fong & Vedaldi / KeepAugment search, brute force
# --------------------------------------------------------------------------------------------------
def max_window(sal, S, T=1):
    """Brute-force Fong & Vedaldi search on one (H, W) map: top-left of the first largest S x S window."""
    H, W = sal.shape
    best, best_yx = -np.inf, (0, 0)
    for y in range(0, H - S + 1, T):
        for x in range(0, W - S + 1, T):
            s = sal[y:y + S, x:x + S].sum(dtype=np.float64)
            if s > best:
                best, best_yx = s, (y, x)
    return best_yx, best


def cutout_box(cy, cx, size, H, W):
    """uoguelph-mlrg Cutout box around (cy, cx): ``clip(c - length // 2, 0, size)`` .. ``clip(c + length // 2)``."""
    return (int(np.clip(cy - size // 2, 0, H)), int(np.clip(cx - size // 2, 0, W)),
            int(np.clip(cy + size // 2, 0, H)), int(np.clip(cx + size // 2, 0, W)))


def keep_scores(sal, size):
    """KeepAugment region score of every centre pixel of one (H, W) map (Gong et al. 2021, arXiv 2011.11778,
    Eq. 1: the *sum* of saliency over the region), the region being the Cutout box around the pixel clipped to
    the map."""
    H, W = sal.shape
    out = np.empty((H, W), dtype=np.float64)
    for cy in range(H):
        for cx in range(W):
            y0, x0, y1, x1 = cutout_box(cy, cx, size, H, W)
            out[cy, cx] = sal[y0:y1, x0:x1].sum(dtype=np.float64)
    return out


def keep_pick(scores, tries, tau, below):
    """KeepAugment pick restated: index of the first try ``(cy, cx)`` whose score is below (cut) / above
    (paste) ``numpy.quantile(scores, tau)``, else of the lowest / highest-scoring try (the first among equal)."""
    thr = np.quantile(scores, tau)
    tried = [scores[cy, cx] for cy, cx in tries]
    for t, v in enumerate(tried):
        if (v < thr) if below else (v > thr):
            return t
    best = min(tried) if below else max(tried)
    return tried.index(best)


def jitter_shift(at, last, jitter, r):
    """Fong & Vedaldi jitter as a uniform choice among the in-image shifts: the window's top-left ``at`` may
    lie in ``[0, last]``; the allowed shifts are the integers ``d`` in ``[-jitter, jitter]`` with
    ``0 <= at + d <= last``, listed in order, and ``r`` (uniform in ``[0, 2**31 - 1)``) picks ``r % count``."""
    allowed = [d for d in range(-jitter, jitter + 1) if 0 <= at + d <= last]
    return allowed[r % len(allowed)]


# --------------------------------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------------------------------
def erase_nchw(images, boxes, fill):
    """Slice-assign ``fill`` (scalar or per channel) into each row's boxes; boxes (N, K, 4), -1 padded."""
    out = images.copy()
    fill = np.broadcast_to(np.asarray(fill, dtype=images.dtype), (images.shape[1],))
    for n in range(images.shape[0]):
        for y0, x0, y1, x1 in boxes[n]:
            if y1 > y0 and x1 > x0:
                out[n, :, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = fill[:, None, None]
    return out


def paste_nchw(images, partner, boxes):
    """clovaai's ``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]`` per row and box."""
    out = images.copy()
    for n in range(images.shape[0]):
        if partner[n] < 0:
            continue
        for y0, x0, y1, x1 in boxes[n]:
            if y1 > y0 and x1 > x0:
                ys, xs = slice(max(y0, 0), max(y1, 0)), slice(max(x0, 0), max(x1, 0))
                out[n, :, ys, xs] = images[partner[n], :, ys, xs]
    return out


def union_mask(boxes, H, W):
    """(N, H, W) bool: pixels covered by any of the row's boxes (painted)."""
    n = boxes.shape[0]
    m = np.zeros((n, H, W), dtype=bool)
    for r in range(n):
        for y0, x0, y1, x1 in boxes[r]:
            if y1 > y0 and x1 > x0:
                m[r, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


# --------------------------------------------------------------------------------------------------
# ColorJitter + Lighting (clovaai/CutMix-PyTorch utils.py), step by step on [0, 1] float images
# --------------------------------------------------------------------------------------------------
CLOVAAI_EIGVAL = [0.2175, 0.0188, 0.0045]
CLOVAAI_EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


def clovaai_grayscale(img):
    """``Grayscale``: channel 0 becomes ``0.299 R + 0.587 G + 0.114 B``, copied to the three channels (CHW)."""
    gs = img[0] * 0.299 + img[1] * 0.587 + img[2] * 0.114
    return np.stack([gs, gs, gs])


def clovaai_color_jitter(img, steps, alphas):
    """clovaai's ``ColorJitter`` on a CHW float image once ``random.shuffle`` gave ``steps`` (names in order)
    and each step drew ``alphas[name]``: ``img.lerp(target, alpha) = img + alpha * (target - img)``."""
    for name in steps:
        a = alphas[name]
        if name == "brightness":
            target = np.zeros_like(img)
        elif name == "contrast":
            target = np.full_like(img, clovaai_grayscale(img).mean())
        else:
            target = clovaai_grayscale(img)
        img = img + a * (target - img)
    return img


def clovaai_lighting(img, alpha):
    """``Lighting``: ``rgb = (eigvec * alpha * eigval).sum(1)`` added per channel (CHW)."""
    rgb = (np.array(CLOVAAI_EIGVEC) * np.asarray(alpha)[None, :] * np.array(CLOVAAI_EIGVAL)[None, :]).sum(1)
    return img + rgb[:, None, None]


# --------------------------------------------------------------------------------------------------
# Random Erasing's noise fill of normalize_occlude, restated: SplitMix64 (Steele et al. 2014) and a table
# --------------------------------------------------------------------------------------------------
_M64 = (1 << 64) - 1


def splitmix_mix(z: int) -> int:
    """SplitMix64's output function on a Python int (arbitrary precision, masked to 64 bits)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def noise_value(table, seed: int, counter: int) -> float:
    """Draw ``counter`` of a row seeded ``seed``: the ``counter``-th SplitMix64 output from ``mix(seed)``, its
    top 16 bits index the quantile table."""
    state = (splitmix_mix(seed & 0xFFFFFFFF) + (counter + 1) * 0x9E3779B97F4A7C15) & _M64
    return table[splitmix_mix(state) >> 48]


def random_erasing_fill(shape, boxes, mode, seed, table, fill):
    """The erased CHW image's values, boxes painted one after the other as timm's ``_erase`` does (a later box
    over an earlier one): ``"const"`` ``fill[c]``, ``"rand"`` one draw per box and channel (counter
    ``k * C + c``), ``"pixel"`` one per channel and pixel (counter ``(c * H + y) * W + x``); NaN outside."""
    C, H, W = shape
    out = np.full(shape, np.nan, np.float32)
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        ys, xs = slice(max(y0, 0), max(min(y1, H), 0)), slice(max(x0, 0), max(min(x1, W), 0))
        for c in range(C):
            if mode == "const":
                out[c, ys, xs] = fill[c]
            elif mode == "rand":
                out[c, ys, xs] = noise_value(table, seed, k * C + c)
            else:
                for y in range(ys.start, ys.stop):
                    for x in range(xs.start, xs.stop):
                        out[c, y, x] = noise_value(table, seed, (c * H + y) * W + x)
    return out
