"""Draw benchmark JSONs: one horizontal bar chart per file, median per contender with its spread.

    python -m bench.plot results/*.json [--out-dir results/]

Every entry of a file that holds ``median`` and ``runs`` (the layout :func:`bench.common.summary` writes) is
a bar: the median, the inter-quartile range of the repeats as an error bar, and every repeat as a dot, so a reader sees the
spread and not only the headline figure. In a loader benchmark (``results`` keyed ``ours:<method>``,
``torchvision``, ...) our loader's methods are blue, the other contenders grey. The unit comes from the
file's ``unit``; the subtitle gives its conditions (device, batch, workers, repeats, CPU). The PNG is written
beside the JSON (``name.json`` -> ``name.png``) unless ``--out-dir`` is given.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def entries(payload: dict) -> list[tuple[str, dict]]:
    """``(name, {"median", "iqr", "runs"})`` of every measurement in a result file (nested names joined)."""
    out = []

    def walk(x, path):
        if isinstance(x, dict):
            if "median" in x and "runs" in x:
                out.append(("/".join(path), x))
                return
            for k, v in x.items():
                walk(v, path + (k,))

    walk(payload.get("results", {k: v for k, v in payload.items() if k != "conditions"}), ())
    return out


def plot_file(path, out_dir=None) -> str | None:
    """Draw one JSON; returns the PNG path, or None when the file holds no measurements."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    payload = json.loads(path.read_text())
    rows = entries(payload)
    if not rows:
        return None
    names = [n for n, _ in rows]
    med = [r["median"] for _, r in rows]
    q1 = [float(np.percentile(r["runs"], 25)) for _, r in rows]
    q3 = [float(np.percentile(r["runs"], 75)) for _, r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.6), dpi=110)
    y = list(range(len(rows)))[::-1]
    colours = ["tab:blue" if n.startswith("ours:") else "tab:orange" if n.startswith("base:") else "0.6"
               for n in names]
    ax.barh(y, med, color=colours, alpha=0.85, xerr=[[m - a for m, a in zip(med, q1)], [b - m for m, b in zip(med, q3)]],
            error_kw={"elinewidth": 1, "capsize": 3})
    for yi, (_, r) in zip(y, rows):
        ax.plot(r["runs"], [yi] * len(r["runs"]), "k.", ms=3)
        label = f"{r['median']:.0f}" if r["median"] >= 100 else f"{r['median']:.3g}"
        ax.text(0.01 * max(med), yi, label, va="center", ha="left", fontsize=7, color="white", weight="bold")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel(payload.get("unit", "value") + "  (bar: median, whisker: IQR, dots: repeats)", fontsize=8)
    c = payload.get("conditions", {})
    bits = [f"{k}={c[k]}" for k in ("device", "batch_size", "workers", "repeats", "batches", "image_size", "model")
            if c.get(k) not in (None, "")]
    ax.set_title(f"{path.stem}\n{', '.join(bits)}\n{c.get('cpu', '')} ({c.get('cores', '?')} cores), "
                 f"gpu={c.get('gpu')}", fontsize=8)
    ax.set_xlim(0, max(max(r["runs"]) for _, r in rows) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = (Path(out_dir) if out_dir else path.parent) / (path.stem + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return str(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="benchmark JSON files (results/*.json)")
    p.add_argument("--out-dir", type=Path, default=None, help="folder for the PNGs (default: beside each JSON)")
    args = p.parse_args(argv)
    for f in args.files:
        if not f.is_file():
            p.error(f"files: {f} does not exist")
        out = plot_file(f, args.out_dir)
        print(out if out else f"{f}: no measurements (median/runs) to draw, skipped")


if __name__ == "__main__":
    main()
