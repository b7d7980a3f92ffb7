"""Occlusion robustness: top-1 on the validation split under increasing occlusion.

Fong & Vedaldi 2019 ("Occlusions for effective data augmentation in image classification", arXiv
1910.10651) use occlusion as a "stethoscope" of a model's robustness: accuracy on validation images
occluded by Hide-and-Seek grids and Cutout squares of growing extent. CutMix (Yun et al. 2019, arXiv
1905.04899, the robustness section and its supplementary) occludes a centred hole ("centre occlusion":
zeros inside the hole) or everything outside it ("boundary occlusion": zeros outside the hole).

Families at output side ``S`` (all sizes scale with ``S``; the figures are for 224 px):

* ``hide_and_seek``: a fixed 4 x 4 grid of ``S/4`` cells (56 px; ``patch_sizes=(S//4,)``), each hidden with
  probability ``1 - p_keep_patch`` for ``p_keep_patch`` = 1.0, 0.9, ..., 0.5 (1.0 = the clean images);
* ``cutout``: ``N`` = 1, 2, 4, 6, 8 squares of side ``S/4`` (56 px), centres uniform, clipped;
* ``centre`` / ``boundary``: the centred hole of side ``f * S`` for ``f`` in :data:`HOLE_FRACTIONS`,
  filled inside (centre) or outside (boundary).

How the occluded batches are made (the least invasive exact route): the validation loader
(``train=False``: resize 256 / centre crop 224, scaled, no occlusion) gives the normalised images once;
each condition erases its boxes on a copy with the training side's erase rule (:func:`kernels.apply.occlude`,
fill 0 after normalisation = the dataset mean, the erasing methods' ``fill="mean"``), boxes from :mod:`kernels.boxes` -- the same geometry
functions the training methods use -- drawn from ``default_rng([seed, condition, batch])``, so every
condition is reproducible and independent of the others. The occluded share is the exact erased area
(:func:`kernels.areas.lam_from_boxes`), averaged over the images.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.apply import box_mask, occlude
from kernels.areas import lam_from_boxes
from kernels.boxes import cutout_boxes, hide_and_seek_boxes

P_KEEP_PATCH = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
CUTOUT_HOLES = (1, 2, 4, 6, 8)
HOLE_FRACTIONS = (0.125, 0.25, 0.5, 0.75, 0.875)


def sweep_conditions(size: int) -> list[dict]:
    """The conditions at output side ``size``: ``{"family", "setting", "params"}`` each."""
    if size < 4:
        raise ValueError(f"size must be >= 4 (a 4 x 4 grid), got {size!r}")
    cell = size // 4
    out = [{"family": "hide_and_seek", "setting": f"p_keep_patch={p}",
            "params": {"patch_size": cell, "p_keep_patch": p}} for p in P_KEEP_PATCH]
    out += [{"family": "cutout", "setting": f"holes={n}", "params": {"holes": n, "size": cell}}
            for n in CUTOUT_HOLES]
    for family in ("centre", "boundary"):
        out += [{"family": family, "setting": f"hole={round(f * size)}px", "params": {"hole": round(f * size)}}
                for f in HOLE_FRACTIONS]
    return out


def condition_boxes(cond: dict, rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``(n, K, 4)`` boxes ``y0, x0, y1, x1`` to erase for one condition (-1 padded)."""
    p = cond["params"]
    if cond["family"] == "hide_and_seek":
        return hide_and_seek_boxes(rng, n, size, size, (p["patch_size"],), p["p_keep_patch"])
    if cond["family"] == "cutout":
        return cutout_boxes(rng, n, size, size, p["holes"], p["size"])
    h = p["hole"]
    lo, hi = (size - h) // 2, (size - h) // 2 + h
    if cond["family"] == "centre":
        box = np.array([[lo, lo, hi, hi]], np.int32)
    elif cond["family"] == "boundary":  # the frame around the hole as four strips
        box = np.array([[0, 0, lo, size], [hi, 0, size, size], [lo, 0, hi, lo], [lo, hi, hi, size]], np.int32)
    else:
        raise ValueError(f"unknown occlusion family {cond['family']!r}")
    return np.repeat(box[None], n, axis=0)


@torch.no_grad()
def run_sweep(model: torch.nn.Module, loader, device, size: int, seed: int = 0) -> dict:
    """Top-1 of ``model`` on every condition of :func:`sweep_conditions` over the batches of ``loader``
    (a ``train=False`` :class:`~pipelines.OcclusionLoader`; pad rows masked)."""
    model.eval()
    batches = [(b.images, b.labels.cpu(), b.meta["valid"].bool()) for b in loader]
    results = []
    for ci, cond in enumerate(sweep_conditions(size)):
        correct = total = 0
        share = 0.0
        for bi, (images, labels, valid) in enumerate(batches):
            boxes = condition_boxes(cond, np.random.default_rng([seed, ci, bi]), images.shape[0], size)
            mask = box_mask(torch.as_tensor(boxes, device=images.device), size, size)
            pred = model(occlude(images, mask, fill=0.0).to(device)).argmax(1).cpu()
            correct += int(((pred == labels) & valid).sum())
            total += int(valid.sum())
            share += float((1.0 - lam_from_boxes(boxes, size, size))[valid.numpy()].sum())
        results.append({**cond, "occluded_share": share / max(total, 1), "top1": correct / max(total, 1),
                        "images": total})
    clean = next(r["top1"] for r in results if r["family"] == "hide_and_seek" and r["params"]["p_keep_patch"] == 1.0)
    return {"image_size": size, "seed": seed, "clean_top1": clean, "conditions": results,
            "fill": "dataset mean (0 after normalisation)"}


def plot_sweep(result: dict, path) -> str:
    """Top-1 against the occluded share, one line per family (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    styles = {"hide_and_seek": "o-", "cutout": "s-", "centre": "^--", "boundary": "v--"}
    for family, style in styles.items():
        rows = sorted((r for r in result["conditions"] if r["family"] == family), key=lambda r: r["occluded_share"])
        if rows:
            ax.plot([100 * r["occluded_share"] for r in rows], [100 * r["top1"] for r in rows], style, label=family)
    ax.axhline(100 * result["clean_top1"], color="grey", lw=0.8, ls=":", label="clean")
    ax.set_xlabel("occluded share of the image (%)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"Occlusion sweep ({result['image_size']} px, fill = mean)", fontsize=10)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
