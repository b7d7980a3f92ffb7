"""Per-call benchmarks of the library's training-side steps on the CPU: CutMix sampling + paste, the
max-window search, KeepAugment's selective cut / paste, against the reference codes.

    python -m bench.kernels_bench --out results/kernels_bench.json

Method (kornia's): every case is run ``warmup`` times untimed (Numba compilation and caches), then
``repeat`` times, the cases of a group interleaved round-robin so that load changes on a shared
machine hit all of them alike; we report the median and the inter-quartile range (q1, q3) in
milliseconds per call (a call = one batch unless stated). Conditions (versions, CPU, threads, load average, batch and
image sizes, commit) are written with the results. CPU only: no GPU timing is reported here.

(a) CutMix box sampling + paste on a (64, 3, 224, 224) float32 torch batch:
    ours ("elem": one box and partner per row; "batch": one box) is ``kernels.boxes.cutmix_box`` + the
    training side's paste (``kernels.apply.occlude``, a new batch), beside the official
    CutMix step restated literally (``np.random.beta`` + ``torch.randperm`` + ``rand_bbox`` + slicing, in
    place, one box per batch), torchvision ``transforms.v2.CutMix`` (one box per batch, clones, one-hot
    labels) and timm ``Mixup`` in cutmix mode ("batch" and the per-sample "elem" loop; in place, soft
    labels). (The graph's fused paste is timed by ``bench.ops_bench``.)
(b) Fong & Vedaldi max window, 224 x 224, S = 56, T = 1: ours is the plugin's CPU ``box_search``
    operator called eagerly as the training side calls it (``eager_box_search``, DALI dynamic mode, one
    call per batch), against the brute-force NumPy oracle of the tests summing every window directly
    (``tests/oracles.py``'s ``max_window``: the figure the search's speed-up is quoted against, and the
    answer both must give), a vectorised NumPy ``sliding_window_view`` brute force and a NumPy cumsum
    integral image.
(c) KeepAugment selective cut / paste per batch, 32 tries per row (scores of every candidate, quantile,
    pick), the same operator called eagerly.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.common import conditions as common_conditions
from kernels import boxes as mix, labels
from tests import oracles  # bench is not library code: it may time the tests' oracle as a contender


def time_cases(cases, warmup=3, repeat=30, repeat_of=None):
    """Time several cases round-robin (one call of each per round), so that load changes on a shared
    machine hit every case alike. ``repeat_of`` maps slow case names to a smaller repeat count."""
    repeat_of = repeat_of or {}
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    ts = {name: [] for name in cases}
    for r in range(repeat):
        for name, fn in cases.items():
            if r < repeat_of.get(name, repeat):
                t0 = time.perf_counter()
                fn()
                ts[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, v in ts.items():
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        out[name] = {"median_ms": round(float(med), 4), "q1_ms": round(float(q1), 4), "q3_ms": round(float(q3), 4),
                     "iqr_ms": round(float(q3 - q1), 4), "repeat": len(v), "warmup": warmup}
    return out


def conditions(args):
    import torch
    try:
        import timm
        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    return common_conditions(timm=timm_version, torch_threads=torch.get_num_threads(), device="cpu (no GPU timings)",
                             repeat=args.repeat, warmup=args.warmup, batch=args.batch)


# -------------------------------------------------------------------------------------- (a) CutMix
def clovaai_rand_bbox(size, lam):
    """clovaai/CutMix-PyTorch train.py ``rand_bbox``, verbatim apart from ``np.int`` -> ``int``."""
    W = size[2]
    H = size[3]
    cut_rat = np.sqrt(1. - lam)
    cut_w = int(W * cut_rat)
    cut_h = int(H * cut_rat)

    # uniform
    cx = np.random.randint(W)
    cy = np.random.randint(H)

    bbx1 = np.clip(cx - cut_w // 2, 0, W)
    bby1 = np.clip(cy - cut_h // 2, 0, H)
    bbx2 = np.clip(cx + cut_w // 2, 0, W)
    bby2 = np.clip(cy + cut_h // 2, 0, H)

    return bbx1, bby1, bbx2, bby2


def clovaai_cutmix_step(input, target, beta=1.0):
    """The CutMix branch of clovaai's training loop (per batch, in place), without the forward pass."""
    import torch
    lam = np.random.beta(beta, beta)
    rand_index = torch.randperm(input.size()[0])
    target_a = target
    target_b = target[rand_index]
    bbx1, bby1, bbx2, bby2 = clovaai_rand_bbox(input.size(), lam)
    input[:, :, bbx1:bbx2, bby1:bby2] = input[rand_index, :, bbx1:bbx2, bby1:bby2]
    # adjust lambda to exactly match pixel ratio
    lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (input.size()[-1] * input.size()[-2]))
    return input, target_a, target_b, lam


def bench_cutmix(args, res):
    import torch
    from torchvision.transforms import v2

    from kernels.apply import box_mask, occlude

    B, C, H, W = args.batch, 3, 224, 224
    gen = np.random.default_rng(0)
    x = gen.standard_normal((B, C, H, W), dtype=np.float32)
    y = gen.integers(0, 1000, B)
    xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(y)
    ours_x = torch.from_numpy(x)  # ours writes a new batch: its input stays as generated
    rng = np.random.default_rng(1)
    np.random.seed(1)
    torch.manual_seed(1)

    def paste(boxes, perm):  # the training side's rule: kernels.apply.occlude with the partner's pixels
        return occlude(ours_x, box_mask(torch.from_numpy(boxes), H, W), partner=torch.from_numpy(perm))

    def ours_elem():
        boxes, lam = mix.cutmix_box(rng, H, W, 1.0, n=B)
        return paste(boxes[:, None], rng.permutation(B)), lam

    def ours_elem_targets():
        boxes, lam = mix.cutmix_box(rng, H, W, 1.0, n=B)
        perm = rng.permutation(B)
        targets = labels.soft_targets(yt, yt[perm], torch.from_numpy(lam), 1000)
        return paste(boxes[:, None], perm), targets

    def ours_batch():
        box, lam = mix.cutmix_box(rng, H, W, 1.0)
        return paste(np.broadcast_to(box, (B, 1, 4)), rng.permutation(B)), lam

    cases = {
        "ours_elem (cutmix_box n=B + kernels.apply.occlude, new batch)": ours_elem,
        "ours_elem + soft_targets(1000)": ours_elem_targets,
        "ours_batch (one box + kernels.apply.occlude, new batch)": ours_batch,
        "clovaai official (per batch, in place)": lambda: clovaai_cutmix_step(xt, yt),
    }
    tv = v2.CutMix(num_classes=1000)
    cases["torchvision v2.CutMix (per batch, clone + one-hot)"] = lambda: tv(xt, yt)
    try:
        from timm.data import Mixup
        for mode in ("batch", "elem"):
            m = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, mode=mode, label_smoothing=0.0,
                      num_classes=1000)
            cases[f"timm Mixup cutmix mode={mode} (in place + soft targets)"] = (lambda m=m: m(xt, yt))
        res["timm_note"] = "timm installed from PyPI without changing torch"
    except ImportError:
        res["timm_note"] = "timm not installed: skipped"
    out = time_cases(cases, args.warmup, args.repeat)
    for name, r in out.items():
        print(f"  {name}: {r['median_ms']:.2f} ms (IQR {r['iqr_ms']:.2f})", flush=True)
    res["cutmix_sample_and_paste"] = {"shape": [B, C, H, W], "dtype": "float32", "alpha": 1.0, "results": out}


# ----------------------------------------------------------------------------------- (b) max window
def search(maps, draws, **kwargs):
    """The plugin's CPU box_search on every map, called as the training side calls it: (N, 4) boxes."""
    from pipelines.methods.saliency_guided import eager_box_search

    return eager_box_search(maps, draws, np.arange(len(maps), dtype=np.int32), **kwargs)[:, 0]


def bench_max_window(args, res):
    H = W = 224
    S, T = 56, 1
    gen = np.random.default_rng(2)
    one = gen.random((1, H, W), dtype=np.float32)
    batch = gen.random((args.batch, H, W), dtype=np.float32)
    from numpy.lib.stride_tricks import sliding_window_view

    def max_window(maps, tau=0):
        draws = rng.integers(0, 2**31 - 1, (len(maps), 2)).astype(np.int32)
        return search(maps, draws, method="max_window", size=S, stride=T, jitter=tau)

    def numpy_cumsum():
        ii = np.zeros((H + 1, W + 1))
        ii[1:, 1:] = one[0].astype(np.float64).cumsum(0).cumsum(1)
        ws = ii[S:, S:] - ii[:-S, S:] - ii[S:, :-S] + ii[:-S, :-S]
        return np.unravel_index(np.argmax(ws), ws.shape)

    rng = np.random.default_rng(3)
    slow = {"numpy sliding_window_view brute force N=1": lambda: np.argmax(
                sliding_window_view(one[0], (S, S)).sum(axis=(-2, -1), dtype=np.float64)),
            "brute-force oracle (tests/oracles.py max_window) N=1": lambda: oracles.max_window(one[0], S, T)}
    cases = {
        "ours box_search max_window N=1": lambda: max_window(one),
        "ours box_search max_window N=1 tau=16": lambda: max_window(one, 16),
        f"ours box_search max_window N={args.batch} (per batch)": lambda: max_window(batch),
        "numpy cumsum integral image N=1": numpy_cumsum,
        **slow,
    }
    n_slow = max(5, args.repeat // 3)
    out = time_cases(cases, args.warmup, args.repeat, {k: n_slow for k in slow})
    for name, r in out.items():
        print(f"  {name}: {r['median_ms']:.3f} ms", flush=True)
    brute = out["brute-force oracle (tests/oracles.py max_window) N=1"]["median_ms"]
    ours = out["ours box_search max_window N=1"]["median_ms"]
    # the two must agree on the answer
    (y, x), _ = oracles.max_window(one[0], S, T)
    assert max_window(one)[0, :2].tolist() == [y, x]
    res["max_window"] = {"H": H, "W": W, "S": S, "T": T, "results": out,
                         "speedup_vs_bruteforce_oracle": round(brute / ours, 1),
                         "target_speedup": 10}


# ----------------------------------------------------------------------------------- (c) KeepAugment
def bench_keep(args, res):
    cases = {}
    tries = 32
    for name, (n, hw, size) in {"ImageNet 224, size 56": (args.batch, 224, 56),
                                "CIFAR 32, size 16": (128, 32, 16)}.items():
        sal = np.random.default_rng(4).random((n, hw, hw), dtype=np.float32)
        rng = np.random.default_rng(5)
        for selective in ("cut", "paste"):
            def keep(sal=sal, size=size, rng=rng, selective=selective):
                centres = rng.integers(0, sal.shape[1], (len(sal), tries, 2)).astype(np.int32)  # candidate centres
                return search(sal, centres, method=f"keep_{selective}", size=size, tau="0.6")

            cases[f"box_search keep_{selective} N={n} {name}"] = keep
    out = time_cases(cases, args.warmup, args.repeat)
    for name, r in out.items():
        print(f"  {name}: {r['median_ms']:.2f} ms", flush=True)
    res["keepaugment"] = {"tau": 0.6, "max_tries": tries, "results": out}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the JSON here (e.g. results/kernels_bench.json)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    res = {"conditions": conditions(args)}
    print("(a) CutMix sampling + paste", flush=True)
    bench_cutmix(args, res)
    print("(b) max window", flush=True)
    bench_max_window(args, res)
    print("(c) KeepAugment", flush=True)
    bench_keep(args, res)
    res["conditions"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(res, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
