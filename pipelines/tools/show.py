"""Pictures of what a method does: a grid of augmented samples straight from :class:`~pipelines.OcclusionLoader`.

    python -m pipelines.tools.show ROOT --method cutmix --out grid.png
    python -m pipelines.tools.show ROOT --method hide_and_seek:patch_sizes=(56,) --copies 2 --p-keep-image 1.0,0.0 --out hs.png

``ROOT`` is an ImageFolder tree (or a dataset root with ``train/``). One row per sample, one column per copy
(copies side by side); each image is de-normalised (ImageNet mean/std) exactly as the loader returned it
(crop, flip, policy, occlusion), every box of ``meta["boxes"]`` is outlined (red: erased; yellow: pasted
from the partner), and each panel is titled with its label (and the partner's label) and ``lam``, the
share of the row's own label in its target. The batch is the loader's own: the same ``--seed`` and
``--epoch`` give the same picture.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipelines.loader import OcclusionLoader
from pipelines.methods.base import IMAGENET_MEAN, IMAGENET_STD


def denormalise(images) -> np.ndarray:
    """``(N, 3, H, W)`` normalised floats -> ``(N, H, W, 3)`` in [0, 1] for display."""
    x = np.asarray(images, dtype=np.float32)
    x = x * np.array(IMAGENET_STD, np.float32)[:, None, None] + np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    return np.clip(x.transpose(0, 2, 3, 1), 0.0, 1.0)


def first_batch(root, method: str, *, rows: int = 6, size: int = 160, copies: int = 1, copy_mode: str = "joint",
                p_keep_image=0.0, auto_augment=None, seed: int = 0, epoch: int = 0):
    """Batch ``0`` of ``epoch`` of a CPU loader on ``root`` (a train split, or a root holding ``train/``)."""
    root = Path(root)
    if (root / "train").is_dir():
        root = root / "train"
    loader = OcclusionLoader(root, rows, method, copies=copies, copy_mode=copy_mode, p_keep_image=p_keep_image,
                             auto_augment=auto_augment, output_size=size, device="cpu", seed=seed,
                             runtime=dict(num_threads=1, py_workers=1, verify="none"))
    loader.set_epoch(epoch)
    batch = next(iter(loader))
    classes = loader.classes
    loader.close()
    return batch, classes


def draw_grid(batch, classes, out, title: str = "") -> str:
    """Save the grid of ``batch`` (rows = samples, columns = copies) to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    meta = batch.meta
    copies = int(meta["copy"].max()) + 1
    b = batch.images.shape[0] // copies
    pics = denormalise(batch.images.float().cpu().numpy())
    labels = batch.labels.cpu().numpy()
    boxes, partner, lam = meta["boxes"].numpy(), meta["partner"].numpy(), meta["lam"].numpy()

    def name(label):
        text = classes[label] if classes else str(label)
        return text.split("_", 1)[-1]

    fig, axes = plt.subplots(b, copies, figsize=(2.3 * copies + 0.2, 2.45 * b), squeeze=False, dpi=100)
    for i in range(b):
        for c in range(copies):
            r = c * b + i
            ax = axes[i, c]
            ax.imshow(pics[r], interpolation="nearest")
            colour = "yellow" if partner[r] >= 0 else "red"
            for y0, x0, y1, x1 in boxes[r].reshape(-1, 4):
                if y0 < 0 or y1 <= y0 or x1 <= x0:
                    continue
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1.2))
            text = name(labels[r])
            if partner[r] >= 0:
                text += f" + {name(labels[partner[r]])}"
            ax.set_title(f"{text}\nlam={lam[r]:.3f}" + (f"  copy {c}" if copies > 1 else ""), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return str(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="ImageFolder tree (or a root holding train/)")
    p.add_argument("--method", default="cutout", help="registry name with options: name:key=value,...")
    p.add_argument("--rows", type=int, default=6, help="samples (grid rows)")
    p.add_argument("--size", type=int, default=160, help="output side in pixels")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--copy-mode", default="joint", choices=("joint", "batch_aug"))
    p.add_argument("--p-keep-image", default="0.0", help="one probability or one per copy (1.0,0.0)")
    p.add_argument("--auto-augment", default=None, choices=("rand_augment", "auto_augment"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error(f"--rows must be >= 1, got {args.rows}")
    keep = tuple(float(v) for v in args.p_keep_image.split(","))
    batch, classes = first_batch(args.root, args.method, rows=args.rows, size=args.size, copies=args.copies,
                                 copy_mode=args.copy_mode, p_keep_image=keep[0] if len(keep) == 1 else keep,
                                 auto_augment=args.auto_augment, seed=args.seed, epoch=args.epoch)
    title = f"{args.method}\ncopies={args.copies} ({args.copy_mode})  p_keep_image={args.p_keep_image}  " \
            f"seed={args.seed} epoch={args.epoch}"
    print(draw_grid(batch, classes, args.out, title))


if __name__ == "__main__":
    main()
