"""Occlusion robustness: top-1 and top-5 on the validation split under increasing occlusion at evaluation time.

Protocols, and which paper uses each:

* ``centre`` / ``boundary`` -- CutMix (Yun et al. 2019, arXiv 1905.04899), the occlusion-robustness experiment of
  its supplementary (E.1): a centred square hole of side 0 to 224 px, filled inside the hole (centre occlusion) or
  everywhere outside it (boundary occlusion), the top-1 plotted against the hole size. Here every side from 0 to
  the output side in :data:`HOLE_STEPS` equal steps (0, 16, ..., 224 at 224 px).
* ``hide_and_seek`` / ``cutout`` -- this project's own families, not a published evaluation protocol: the training
  methods' geometry applied to the validation images (Singh & Lee's 4 x 4 grid of ``S/4`` cells, each hidden with
  probability ``1 - p_keep_patch``; DeVries & Taylor's ``N`` squares of side ``S/4``, centres uniform, clipped).
  Fong & Vedaldi (arXiv 1910.10651) vary these occlusions during *training* and use the accuracy of models so
  trained as their "stethoscope" of an architecture's robustness; they evaluate on clean images, so none of these
  families is theirs.

How the occluded batches are made (the least invasive exact route): the validation loader (``train=False``: resize
256 / centre crop 224, scaled, no occlusion) gives each batch once; every condition erases its boxes on that batch
with the training side's erase rule (:func:`kernels.apply.occlude`, fill 0 after normalisation = the dataset mean,
the erasing methods' ``fill="mean"``), boxes from :mod:`kernels.boxes` -- the geometry the training methods use --
drawn from ``default_rng([seed, condition, batch])``, so every condition is reproducible and independent of the
others. The sweep streams: one batch is held at a time and each condition keeps running counts, so memory does not
grow with the validation set (``bench/sweep_memory.py`` measures it). The occluded share is the exact erased area
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
#: CutMix E.1's hole sides: 0 to the output side in this many equal steps (16 px at 224)
HOLE_STEPS = 14


def sweep_conditions(size: int) -> list[dict]:
    """The conditions at output side ``size``: ``{"family", "setting", "params"}`` each."""
    if size < 4:
        raise ValueError(f"size must be >= 4 (a 4 x 4 grid), got {size!r}")
    cell = size // 4
    out = [{"family": "hide_and_seek", "setting": f"p_keep_patch={p}",
            "params": {"patch_size": cell, "p_keep_patch": p}} for p in P_KEEP_PATCH]
    out += [{"family": "cutout", "setting": f"holes={n}", "params": {"holes": n, "size": cell}}
            for n in CUTOUT_HOLES]
    holes = sorted({round(k * size / HOLE_STEPS) for k in range(HOLE_STEPS + 1)})
    for family in ("centre", "boundary"):
        out += [{"family": family, "setting": f"hole={h}px", "params": {"hole": h}} for h in holes]
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
    """Top-1 and top-5 of ``model`` on every condition of :func:`sweep_conditions` over the batches of ``loader``
    (a ``train=False`` :class:`~pipelines.OcclusionLoader`; pad rows masked), one pass over the loader."""
    model.eval()
    conds = sweep_conditions(size)
    correct = np.zeros((len(conds), 2))  # top-1, top-5 per condition
    share = np.zeros(len(conds))
    total = 0
    for bi, batch in enumerate(loader):
        images, labels = batch.images, batch.labels.cpu()
        valid = batch.meta["valid"].bool()
        total += int(valid.sum())
        for ci, cond in enumerate(conds):
            boxes = condition_boxes(cond, np.random.default_rng([seed, ci, bi]), images.shape[0], size)
            mask = box_mask(torch.as_tensor(boxes, device=images.device), size, size)
            logits = model(occlude(images, mask, fill=0.0).to(device)).float().cpu()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
            correct[ci] += [int((top[:, 0] & valid).sum()), int((top.any(1) & valid).sum())]
            share[ci] += float((1.0 - lam_from_boxes(boxes, size, size))[valid.numpy()].sum())
    n = max(total, 1)
    results = [{**cond, "occluded_share": share[ci] / n, "top1": correct[ci, 0] / n, "top5": correct[ci, 1] / n,
                "images": total} for ci, cond in enumerate(conds)]
    clean = next(r for r in results if r["family"] == "hide_and_seek" and r["params"]["p_keep_patch"] == 1.0)
    return {"image_size": size, "seed": seed, "clean_top1": clean["top1"], "clean_top5": clean["top5"],
            "conditions": results, "fill": "dataset mean (0 after normalisation)"}


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
            ax.plot([100 * r["occluded_share"] for r in rows], [100 * r["top1"] for r in rows], style, label=family,
                    markersize=3)
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
