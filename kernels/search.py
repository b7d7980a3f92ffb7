"""Search attention maps for cells: Attentive CutMix's top-k (Walawalkar et al., ICASSP 2020, arXiv
2003.13048; openmixup ``augments/attentivemix.py``), array code for NumPy and CuPy.

The box searches of the saliency-guided methods (SaliencyMix's peak, Fong & Vedaldi's max window,
KeepAugment's selective cut / paste) are the plugin's ``fn.occlusion.box_search`` operator
(``dali_ops/csrc/box_search/``: ``box_search_cpu.cc`` on the CPU, ``box_search_gpu.cuh`` on the GPU), which the
graph runs and the training side calls eagerly (:func:`pipelines.methods.saliency_guided.eager_box_search`);
``tests/oracles.py`` restates each rule in plain NumPy to check it.
"""
from __future__ import annotations

import numpy as np

from kernels.checks import check_int

from . import _xp

__all__ = ["topk_cells"]


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
    xp = _xp.array_module(attention)
    a = xp.asarray(attention)
    if a.ndim != 3 or a.shape[1] < 1 or a.shape[2] < 1 or a.dtype.kind not in "fiub":
        raise ValueError(f"attention must be a real (N, Gh, Gw) array, got shape {tuple(a.shape)} dtype {a.dtype}")
    n_rows, gh, gw = a.shape
    k = check_int("k", k, 0, gh * gw)
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
