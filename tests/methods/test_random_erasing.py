"""``random_erasing`` against timm's own ``RandomErasing`` (``timm/data/random_erasing.py``, timm is installed): with
``p=1`` over several hundred rows at the same image size, the erased boxes' area share and aspect ratio follow timm's
distributions (two-sample Kolmogorov-Smirnov statistic <= 0.1) and the mean erased share agrees within 0.01, for one
box per image and for timm's ``max_count=3``; then the graph: the boxes of ``meta`` are erased with 0 (``"const"``),
one standard normal value per box and channel (``"rand"``) or per pixel (``"pixel"``), every other pixel is
``method="none"``'s, and the CPU and GPU graphs agree bit for bit where a GPU is lent.

``PYTHONPATH=tests python tests/methods/test_random_erasing.py`` prints the statistics and writes them to
``results/random_erasing_vs_timm.json``.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import requires_gpu
from helpers import box_mask, make
from pipelines.methods import RandomErasing

ROWS, SIDE = 600, 224


def timm_boxes(n: int, side: int, seed: int, **kw) -> list[np.ndarray]:
    """The erased pixels of ``n`` images erased by timm's RandomErasing (mode const: zeros on ones)."""
    from timm.data.random_erasing import RandomErasing as TimmRandomErasing

    random.seed(seed)
    torch.manual_seed(seed)
    erase = TimmRandomErasing(probability=1.0, mode="const", device="cpu", **kw)
    return [(erase(torch.ones(3, side, side))[0] == 0).numpy() for _ in range(n)]


def box_stats(masks) -> dict:
    """Area share and aspect (h / w) of the single box of each mask, and every mask's erased share."""
    area, aspect = [], []
    for m in masks:
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        h, w = ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1
        area.append(h * w / m.size)
        aspect.append(h / w)
    return {"area": np.array(area), "aspect": np.array(aspect), "share": np.array([m.mean() for m in masks])}


def ours(n: int, side: int, seed: int, **kw) -> list[np.ndarray]:
    plan = RandomErasing(p=1.0, **kw).plan(np.random.default_rng(seed), n, side, 0.0)
    return [box_mask(b, side) for b in plan.boxes]


def compare(**kw) -> dict:
    mine, theirs = ours(ROWS, SIDE, 1, **kw), timm_boxes(ROWS, SIDE, 2, **kw)
    out = {"share_mine": float(np.mean([m.mean() for m in mine])),
           "share_timm": float(np.mean([m.mean() for m in theirs]))}
    if kw.get("max_count", 1) == 1:
        a, b = box_stats(mine), box_stats(theirs)
        out["ks_area"] = float(stats.ks_2samp(a["area"], b["area"]).statistic)
        out["ks_aspect"] = float(stats.ks_2samp(np.log(a["aspect"]), np.log(b["aspect"])).statistic)
    else:
        out["ks_share"] = float(stats.ks_2samp([m.mean() for m in mine], [m.mean() for m in theirs]).statistic)
    return out


@pytest.mark.parametrize("kw", [{}, dict(min_area=0.1, max_area=0.4, min_aspect=0.5, max_aspect=3.0),
                                dict(max_count=3)], ids=["timm-defaults", "other-ranges", "max_count-3"])
def test_box_distributions_match_timm(kw):
    s = compare(**kw)
    for key in ("ks_area", "ks_aspect", "ks_share"):
        if key in s:
            assert s[key] <= 0.1, s
    assert abs(s["share_mine"] - s["share_timm"]) <= 0.01, s


def test_options_are_checked():
    for bad, match in [(dict(min_area=0.5, max_area=0.2), "min_area <= max_area"), (dict(min_aspect=0), "min_aspect"),
                       (dict(min_count=2, max_count=1), "max_count"), (dict(mode="noise"), "mode must be one of")]:
        with pytest.raises(ValueError, match=match):
            RandomErasing(**bad)


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_graph_erases_the_meta_boxes_with_timms_fills(structured_root, mode):
    opts = dict(seed=5, batch=8)
    plain = next(iter(make(structured_root, **opts)))
    erased = next(iter(make(structured_root, method="random_erasing", p=1.0, mode=mode, max_count=2, **opts)))
    assert torch.equal(erased.meta["lam"], torch.ones(8)) and (erased.meta["partner"] == -1).all()
    values = []
    for r in range(8):
        boxes = erased.meta["boxes"][r].numpy()
        inside = box_mask(boxes)
        assert inside.any()
        x, base = erased.images[r].numpy(), plain.images[r].numpy()
        np.testing.assert_array_equal(x[:, ~inside], base[:, ~inside])
        if mode == "const":
            assert (x[:, inside] == 0).all()
        elif mode == "rand":  # one value per box and channel: the later box's where two overlap
            for k, box in enumerate(boxes):
                own = box_mask(box[None]) & ~box_mask(boxes[k + 1:])
                if own.any():
                    vals = x[:, own]
                    assert (vals == vals[:, :1]).all()
                    values.extend(vals[:, 0])
        else:
            values.extend(x[:, inside].ravel())
    if mode == "pixel":
        assert stats.kstest(values, "norm").statistic < 0.02 and abs(np.mean(values)) < 0.02
    if mode == "rand":
        assert len(set(values)) == len(values)  # independent draws per box and channel


@requires_gpu
@pytest.mark.parametrize("mode", ["rand", "pixel"])
def test_cpu_and_gpu_graphs_agree(structured_root, mode):
    kw = dict(method="random_erasing", p=1.0, mode=mode, max_count=3, seed=3, color="clovaai")
    cpu = next(iter(make(structured_root, **kw)))
    gpu = next(iter(make(structured_root, **{**kw, "device": "gpu"})))
    assert torch.equal(cpu.images, gpu.images.cpu())


if __name__ == "__main__":  # the figures, also written to results/random_erasing_vs_timm.json
    import json
    from pathlib import Path

    import timm

    figures = {}
    for kw in ({}, dict(max_count=3)):
        figures[f"RandomErasing(p=1, {kw})"] = compare(**kw)
        print(f"RandomErasing({kw}) p=1, {ROWS} rows at {SIDE} px vs timm:", figures[f"RandomErasing(p=1, {kw})"])
    out = Path(__file__).resolve().parents[2] / "results" / "random_erasing_vs_timm.json"
    out.write_text(json.dumps({"rows": ROWS, "side": SIDE, "timm": timm.__version__, "figures": figures}, indent=2))
    print(f"wrote {out}")
