"""DALI operators that take saliency maps and boxes as *regular* inputs: search and apply.

Why: named argument inputs of DALI operators (``fn.erase(anchor=, shape=)``, ``fn.multi_paste(in_ids=)``)
must be CPU nodes (checked with DALI 2.4), so boxes computed inside the graph -- on the GPU from a saliency
map -- cannot drive them. These operators take every tensor as a regular input instead, so the chain
``saliency -> search -> boxes -> apply`` stays on one device.

Implementations:

* normalise + apply (:func:`normalize_occlude`): the plugin's ``fn.occlusion.normalize_occlude``
  (``dali_ops/csrc/normalize_occlude/``), ``crop_mirror_normalize`` fused with erasing or pasting the
  boxes -- the graph's erase and paste.
* apply (:func:`paste_boxes`): the plugin's C++/CUDA operator ``fn.occlusion.paste_boxes``
  (``dali_ops/csrc/paste_boxes/``) on both devices -- one sample per pool thread as row memcpy on the
  CPU, one launch per batch on the GPU; the partner row is an index into the batch, so CutMix needs no
  ``fn.permute_batch`` copy.
* search (:func:`saliency_peak_box`, :func:`max_window`, :func:`keep_box`, :func:`topk_cells`): the plugin's
  ``fn.occlusion.box_search`` on both devices -- C++ with one map per pool thread on the CPU
  (``dali_ops/csrc/box_search/box_search_cpu.cc``); on the GPU one launch per batch, one thread block per
  row (``dali_ops/csrc/box_search/box_search_gpu.cuh``, DALI-free), giving the CPU operator's boxes bit
  for bit. ``map_index`` is a CPU input on both. (DALI's
  ``numba_function`` is not used: DALI 2.4's GPU numba plugin refuses a CUDA 13 toolkit.) Tests check the
  CPU operator against the NumPy oracles of ``tests/oracles.py`` and the GPU one against the CPU one.

Operators (call them inside a ``pipeline_def``; ``device="cpu"`` runs here, ``device="gpu"`` needs a GPU):

* :func:`normalize_occlude` -- normalisation fused with the Cutout / Hide-and-Seek / Fong & Vedaldi fill
  (DeVries & Taylor 2017, uoguelph-mlrg/Cutout ``util/cutout.py``: fill 0 after normalisation) or the
  CutMix / SaliencyMix paste, and MixUp's blend.
* :func:`paste_boxes` -- CutMix / SaliencyMix paste at the same location (Yun et al. 2019 Algorithm A1,
  clovaai/CutMix-PyTorch ``train.py``: ``input[:, :, y0:y1, x0:x1] = input[rand_index, :, y0:y1, x0:x1]``).
* :func:`saliency_peak_box` -- SaliencyMix box (Uddin et al. 2021, ``saliency_bbox`` of the official code).
* :func:`max_window` -- Fong & Vedaldi's S x S max window, stride T, jitter uniform over the in-image shifts
  (its random integers given as an input).
* :func:`keep_box` -- KeepAugment selective-cut / selective-paste box (Gong et al. 2021), the candidate
  centres drawn upstream and given as an input.
* :func:`topk_cells` -- Attentive CutMix's cells (Walawalkar et al. 2020): the boxes of the cells outside
  the top-k of a grid, the cells the partner pastes.

Determinism (DALI's own rule for its operators): every random quantity (cut sizes, jitter, candidate centres) is an input drawn
upstream from a seeded generator; the operators are pure functions of their inputs (DALI
``StatelessOperator``s: a pipeline built with ``enable_checkpointing=True`` can save and restore them).

Images are ``"CHW"`` (after ``crop_mirror_normalize``) or ``"HWC"`` (decoded) -- the layout travels with
the data -- uint8, float16 or float32. Saliency maps ``(H, W)`` float32. Boxes ``(K, 4)`` int32
``(y0, x0, y1, x1)``, half-open, -1 padded (:mod:`kernels` conventions); the search operators return
``(1, 4)``.
"""
from __future__ import annotations

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode

import dali_ops
from kernels.checks import check_choice, check_int, check_probability

__all__ = ["normalize_occlude", "paste_boxes", "saliency_peak_box", "max_window", "keep_box", "topk_cells"]


def _plugin():
    """``fn.occlusion`` of the loaded plugin."""
    dali_ops.load()
    return fn.occlusion


def _device(device):
    return check_choice("device", device, ("cpu", "gpu"))


def _search(saliency, draws, map_index, device, kwargs):
    """One ``fn.occlusion.box_search`` call on ``device`` (``map_index``, a CPU node, handled inside); ``draws``
    None: a constant the method does not read."""
    if draws is None:
        draws = fn.constant(idata=[0, 0], shape=[2], dtype=types.INT32)
        draws = draws.gpu() if _device(device) == "gpu" else draws
    inputs = [saliency, draws] + ([] if map_index is None else [map_index])
    return _plugin().box_search(*inputs, device=_device(device), **kwargs)


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
FILL_MODES = ("const", "rand", "pixel")  #: normalize_occlude's fill_mode, by its code


def normalize_occlude(images, boxes=None, partner_index=None, blend=None, *, mirror=0, mean, std, fill=0.0,
                      fill_mode: str = "const", noise_seed=None, color=None, dtype="float32", device: str = "cpu"):
    """``crop_mirror_normalize`` (HWC uint8 -> CHW, per-sample ``mirror``, ``mean`` / ``std`` in pixel units)
    fused with the occlusion of each row's ``boxes``: erase with ``fill`` (normalised units; 0 = the mean,
    Cutout / Hide-and-Seek / Fong & Vedaldi) or, with ``partner_index``, paste the partner row's normalised
    pixels with the partner's own mirror (CutMix / SaliencyMix, clovaai ``input[rand_index]``).

    ``blend`` (float32 scalar per row, a CPU argument input, with ``partner_index``): outside the boxes a row
    with a partner is ``blend * own + (1 - blend) * partner`` of the normalised pixels (MixUp, Zhang et al.
    2018, arXiv 1710.09412); 1 keeps the row's own pixels exactly.

    ``fill_mode`` (Random Erasing, Zhong et al. 2020, arXiv 1708.04896; timm ``RandomErasing(mode=)``):
    ``"const"`` erases with ``fill``; ``"rand"`` with one standard normal value per box and channel,
    ``"pixel"`` with one per channel and pixel, drawn from the row's ``noise_seed`` (int32 per row, a CPU
    argument input) by a counter-based generator and a table of normal quantiles: the same bits on both
    devices (``dali_ops/csrc/normalize_occlude/normalize_occlude_math.h``).

    ``color`` (float32 ``(21,)`` per row, a CPU argument input): ColorJitter + PCA Lighting as one affine
    colour transform in pixel units, ``A @ px + B @ mean(px) + b0`` (``A``, ``B`` 3x3 row-major, then
    ``b0``), applied before the normalisation to the row's pixels and, when pasted, to its partner's with
    the partner's own transform (:func:`kernels.color.color_params` composes it).

    Rows without boxes equal ``fn.crop_mirror_normalize``'s output bit for bit; every value is written
    once (no second float copy for the occlusion). ``dtype``: ``"float32"`` or ``"float16"``.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if partner_index is not None and boxes is None:
        raise ValueError("normalize_occlude: partner_index needs boxes")
    if blend is not None and partner_index is None:
        raise ValueError("normalize_occlude: blend needs partner_index")
    check_choice("fill_mode", fill_mode, FILL_MODES)
    if fill_mode != "const" and noise_seed is None:
        raise ValueError(f"normalize_occlude: fill_mode={fill_mode!r} needs noise_seed (one int32 per row)")
    inputs = [images] + [x for x in (boxes, partner_index) if x is not None]
    extra = {key: value for key, value in (("blend", blend), ("noise_seed", noise_seed), ("color", color))
             if value is not None}
    if fill_mode != "const":
        extra["fill_mode"] = fill_mode
    return _plugin().normalize_occlude(*inputs, mirror=mirror, mean=_channel_values("mean", mean),
                                       std=_channel_values("std", std), fill=_channel_values("fill", fill), device=_device(device),
                                       dtype=types.FLOAT if dtype == "float32" else types.FLOAT16, **extra)


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
    ``saliency_bbox``) or of the float map; box = ``clip(peak -+ cut // 2, 0, size)``
    (:func:`kernels.boxes.centred_box`). ``map_index`` (CPU int32 scalar per row): row i searches map
    ``map_index[i]`` (SaliencyMix: the partner's), -1 gives it the box ``(-1, -1, -1, -1)``.
    """
    return _search(saliency, cut, map_index, device, dict(method="peak", quantize=bool(quantize)))


def max_window(saliency, size: int, stride: int = 1, draws=None, map_index=None, *, jitter: int = 0,
               device: str = "cpu"):
    """Fong & Vedaldi box (arXiv 1910.10651) of each ``(H, W)`` float32 map: ``(1, 4)`` int32
    ``(y0, x0, y0 + size, x0 + size)``.

    The ``size x size`` window of largest saliency sum on the ``stride`` grid (first in row-major order), at
    ``(y0, x0)``, then jittered by a shift uniform over the integer shifts in ``[-jitter, jitter]`` that keep
    it inside the ``H x W`` map: ``draws`` are ``(2,)`` int32 samples ``(ry, rx)`` uniform in
    ``[0, 2**31 - 1)`` drawn upstream (``rng.integers(0, 2**31 - 1, size=(N, 2))``), ``lo_y = max(-jitter,
    -y0)``, ``hi_y = min(jitter, H - size - y0)``, ``dy = lo_y + ry % (hi_y - lo_y + 1)`` (same for x).
    ``jitter`` defaults to 0 (no jitter; the
    draws are then not read, and ``draws=None`` is allowed); the paper uses 16 at 224 px. A map smaller than
    the window gets the box ``(-1, -1, -1, -1)`` (no occlusion; an operator cannot raise).
    ``map_index`` as in :func:`saliency_peak_box` (-1: row not occluded).
    """
    S = check_int("size", size)
    T = check_int("stride", stride)
    jitter = check_int("jitter", jitter, lo=0)
    if draws is None and jitter > 0:
        raise ValueError("max_window: jitter > 0 needs `draws` ((2,) int32 (ry, rx) per sample)")
    return _search(saliency, draws, map_index, device, dict(method="max_window", size=S, stride=T, jitter=jitter))


def keep_box(saliency, tries, map_index=None, *, size: int, tau: float = 0.6, selective: str = "cut",
             device: str = "cpu"):
    """KeepAugment box of each ``(H, W)`` float32 map: ``(1, 4)`` int32 (Gong et al., CVPR 2021).

    Region scores are the saliency sum over the clipped Cutout box of side ``size`` (an int, or a CPU int32
    node of one side per row) around every pixel
    (the paper's Eq. 1, arXiv 2011.11778), the threshold their ``tau``-quantile; the box is centred on
    the first of the upstream-drawn candidate centres ``tries`` (``(T, 2)`` int32 samples ``(cy, cx)``)
    whose score is below (``selective="cut"``) / above (``"paste"``) it, else the lowest / highest-scoring
    candidate.

    The decision equals comparing with ``numpy.quantile(scores, tau)`` (linear) exactly: on the CPU by
    counting, on the GPU from the exact order statistics around the quantile (radix select) and the lerp
    without FMA contraction. ``map_index`` as in :func:`saliency_peak_box` (-1: row not occluded).
    """
    if not isinstance(size, DataNode):  # a CPU node: one side per row (KeepCutMix), checked by the op
        size = check_int("size", size, lo=2)
    tau = check_probability("tau", tau)
    selective = check_choice("selective", selective, ("cut", "paste"))

    # tau as a decimal string: DALI's float arguments are float32 (see box_search's schema)
    return _search(saliency, tries, map_index, device,
                   dict(method=f"keep_{selective}", size=size, tau=repr(float(tau))))


def topk_cells(saliency, map_index=None, *, grid: int = 7, top_k: int = 6, image_size: int = 0,
               device: str = "cpu"):
    """Attentive CutMix's cells (Walawalkar et al. 2020, arXiv 2003.13048; openmixup ``attentivemix``) of each
    ``(H, W)`` float32 map (``H, W >= grid``): ``(grid * grid - top_k, 4)`` int32, the boxes of the cells
    *outside* the ``top_k`` of largest mean on a ``grid x grid`` grid (cells of ``H // grid`` pixels, the last
    one also covering the remainder, :func:`kernels.areas.cell_edges`; the lower row-major index first among
    equal means), row-major: the cells the partner pastes, so that ``normalize_occlude(..., boxes, partner)``
    keeps the row's top-k cells. The boxes are in the cells of an ``image_size`` square image (0: the map's
    own size). ``map_index`` as in :func:`saliency_peak_box` (-1: every box ``(-1, -1, -1, -1)``).
    """
    grid = check_int("grid", grid)
    top_k = check_int("top_k", top_k, 0, grid * grid)
    image_size = check_int("image_size", image_size, lo=0)
    return _search(saliency, None, map_index, device,
                   dict(method="topk_cells", grid=grid, top_k=top_k, image_size=image_size))
