"""Per-batch time of the plugin's fused and box operators against the DALI chains they replace, on one
batch of 224x224 photos fed from memory (CPU, ``--threads`` DALI threads):

* ``crop_mirror_normalize`` alone vs ``fn.occlusion.normalize_occlude`` without boxes (same output, bit
  for bit);
* normalise then erase (``crop_mirror_normalize`` + DALI's ``fn.erase``, whose CPU argument inputs are
  sliced from the same boxes in the graph, as in-graph boxes would need) vs ``normalize_occlude`` erasing
  the same boxes; normalise then paste (``+ fn.occlusion.paste_boxes``) vs the fused paste;
* ``fn.occlusion.box_search`` per method (peak, max window, KeepAugment cut) on the images' saliency maps.

Each contender is its own pipeline; times are the median (and IQR) of ``--repeats`` runs of
``--iters`` iterations after a warm-up, per batch.

    python -m bench.ops_bench [--batch 64] [--threads 2] [--out results/ops_bench.json]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import conditions, summary, write_json
from bench.saliency_bench import photos

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def contenders():
    from nvidia.dali import fn, types

    from dali_ops import mixing

    def cmn(u8, m):
        return fn.crop_mirror_normalize(u8, dtype=types.FLOAT, output_layout="CHW", mirror=m, mean=MEAN, std=STD)

    def fused(u8, m, *inputs):
        return mixing.normalize_occlude(u8, *inputs, mirror=m, mean=MEAN, std=STD)

    def anchor_shape(b):  # fn.erase takes (y, x) anchors and shapes as CPU argument inputs
        return fn.cast(b[0, 0:2], dtype=types.FLOAT), fn.cast(b[0, 2:4] - b[0, 0:2], dtype=types.FLOAT)

    def erase_dali(u8, m, b, i, s):
        a, sh = anchor_shape(b)
        return fn.erase(cmn(u8, m), anchor=a, shape=sh, axis_names="HW", fill_value=0.0)

    return {
        "crop_mirror_normalize": lambda u8, m, b, i, s: cmn(u8, m),
        "normalize_occlude (no boxes)": lambda u8, m, b, i, s: fused(u8, m),
        "crop_mirror_normalize + fn.erase": erase_dali,
        "normalize_occlude (erase)": lambda u8, m, b, i, s: fused(u8, m, b),
        "crop_mirror_normalize + paste_boxes": lambda u8, m, b, i, s: mixing.paste_boxes(cmn(u8, m), b,
                                                                                          partner_index=i),
        "normalize_occlude (paste)": lambda u8, m, b, i, s: fused(u8, m, b, i),
        "box_search peak": lambda u8, m, b, i, s: mixing.saliency_peak_box(s, fn.constant(
            idata=[112, 112], dtype=types.INT32)),
        "box_search max_window (S=56, T=1)": lambda u8, m, b, i, s: mixing.max_window(s, 56, 1),
        "box_search keep_cut (size=56, tau=0.6)": lambda u8, m, b, i, s: mixing.keep_box(s, fn.constant(
            idata=list(np.random.default_rng(0).integers(0, 224, 64)), shape=[32, 2], dtype=types.INT32),
            size=56),
    }


def pipeline(body, images, sal, threads):
    from nvidia.dali import fn, pipeline_def

    n = len(images)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 168, n)
    x = rng.integers(0, 168, n)
    boxes = [np.array([[y[k], x[k], y[k] + 56, x[k] + 56]], np.int32) for k in range(n)]
    index = list(rng.permutation(n).astype(np.int32))
    mirror = list((rng.random(n) < 0.5).astype(np.int32))

    @pipeline_def(batch_size=n, num_threads=threads, device_id=None, prefetch_queue_depth=1, exec_dynamic=True)
    def pipe():
        u8 = fn.external_source(source=lambda: list(images), batch=True, layout="HWC")
        s = fn.external_source(source=lambda: list(sal), batch=True)
        m = fn.external_source(source=lambda: mirror, batch=True)
        b = fn.external_source(source=lambda: boxes, batch=True)
        i = fn.external_source(source=lambda: index, batch=True)
        return body(u8, m, b, i, s)

    p = pipe()
    p.build()
    return p


def main(argv=None):
    import dali_ops
    from kernels.saliency import fine_grained

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/ops_bench.json")
    args = p.parse_args(argv)
    dali_ops.load()
    images = photos(args.batch, 224)
    sal = fine_grained(images)
    res = {}
    for name, body in contenders().items():
        pipe = pipeline(body, images, sal, args.threads)
        for _ in range(3):
            pipe.run()
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for _ in range(args.iters):
                pipe.run()
            runs.append((time.perf_counter() - t) / args.iters * 1e3)
        res[name] = summary(runs)
        print(f"{name}: {res[name]['median']:.2f} ms/batch (IQR {res[name]['iqr']:.2f})", flush=True)
    r = {k: v["median"] for k, v in res.items()}
    ratios = {"normalize_occlude_no_boxes_vs_crop_mirror_normalize":
              r["crop_mirror_normalize"] / r["normalize_occlude (no boxes)"],
              "fused_erase_vs_cmn_plus_fn_erase": r["crop_mirror_normalize + fn.erase"] / r["normalize_occlude (erase)"],
              "fused_paste_vs_cmn_plus_paste_boxes":
              r["crop_mirror_normalize + paste_boxes"] / r["normalize_occlude (paste)"]}
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    payload = {"unit": "ms per batch (wall, includes the feeding external_source)", "results": res,
               "speedup": ratios, "conditions": conditions(batch=args.batch, size=224, threads=args.threads,
                                                          iters=args.iters, repeats=args.repeats)}
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
