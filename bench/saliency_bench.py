"""Per-image time of the fine-grained saliency (SaliencyMix's saliency) at 224x224: our DALI CPU
operator and ``kernels.saliency.fine_grained`` vs OpenCV contrib ``computeSaliency`` (the
reference code's call), on the same images (BGR for OpenCV).

The operator runs in a DALI pipeline over batches of ``--batch`` images fed from memory, with 1
thread (per-core comparison with OpenCV, which runs one image per call on one thread) and with all
threads; times are per image, median and IQR of ``--repeats`` timed runs after a warm-up.

Also the SaliencyMix step (saliency + peak box per image) vs the reference's OpenCV call + ``argmax``
+ box clip: ours as the DALI operators (``fine_grained_saliency`` + ``saliency_peak_box``, one thread).
A timed run of a pipeline is the mean of ``--inner`` consecutive batches (one batch takes ~10 ms,
where a single scheduler hiccup would otherwise set the figure).

    python -m bench.saliency_bench [--batch 64] [--repeats 7] [--inner 5] [--out results/saliency_bench.json]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.common import conditions, summary, write_json


def photos(n, size):
    from PIL import Image

    from pipelines.data.demo_data import ensure_demo_data

    root = ensure_demo_data()
    files = sorted((root / "train").rglob("*.jpg"))[:n]
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files])


def op_pipeline(images, threads, cut=None):
    """The saliency operator on ``images``; with ``cut``, followed by the SaliencyMix peak box."""
    import dali_ops
    from dali_ops import mixing
    from nvidia.dali import fn, pipeline_def, types

    dali_ops.load()

    @pipeline_def(batch_size=len(images), num_threads=threads, device_id=None, prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: list(images), batch=True, dtype=types.UINT8, layout="HWC")
        sal = fn.occlusion.fine_grained_saliency(x)
        if cut is None:
            return sal
        return mixing.saliency_peak_box(sal, fn.constant(idata=[cut, cut], dtype=types.INT32))

    p = pipe()
    p.build()
    return p


def timed(fn, repeats, per, inner=1):
    for _ in range(3):
        fn()  # warm-up (JIT, buffers growing to their size)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - t) / (inner * per) * 1e3)
    return summary(runs)


def reference_box(sal_u8_source, cut):
    """SaliencyMix ``saliency_bbox``: OpenCV saliency, uint8 quantisation, first argmax, clipped box."""
    import cv2

    ok, sal = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(sal_u8_source)
    sal = (sal * 255).astype("uint8")
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    h, w = sal.shape
    return np.clip(y - cut // 2, 0, h), np.clip(x - cut // 2, 0, w), np.clip(y + cut // 2, 0, h), np.clip(x + cut // 2, 0, w)


def main(argv=None):
    import cv2

    from kernels.saliency import fine_grained

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--inner", type=int, default=5, help="pipeline batches per timed run")
    p.add_argument("--out", default="results/saliency_bench.json")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    images = photos(args.batch, args.size)
    bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]
    n = len(images)
    sal = cv2.saliency.StaticSaliencyFineGrained_create()
    cut = int(args.size * np.sqrt(0.5))
    res = {}
    res["opencv_per_image"] = timed(lambda: [sal.computeSaliency(b) for b in bgr], args.repeats, n)
    for threads in sorted({1, os.cpu_count() or 1}):
        res[f"dali_cpu_op_{threads}_thread"] = timed(op_pipeline(images, threads).run, args.repeats, n, args.inner)
    res["kernel_numba"] = timed(lambda: fine_grained(images), args.repeats, n)
    res["saliencymix_reference_box"] = timed(lambda: [reference_box(b, cut) for b in bgr], args.repeats, n)
    res["saliencymix_op_box_1_thread"] = timed(op_pipeline(images, 1, cut).run, args.repeats, n, args.inner)
    ratios = {k: res["opencv_per_image"]["median"] / v["median"] for k, v in res.items() if k.startswith("dali")}
    ratios["kernel_numba"] = res["opencv_per_image"]["median"] / res["kernel_numba"]["median"]
    ratios["saliencymix_op_box_1_thread"] = (res["saliencymix_reference_box"]["median"]
                                             / res["saliencymix_op_box_1_thread"]["median"])
    payload = {"unit": "ms per image", "results": res, "speedup_vs_opencv": ratios,
               "conditions": conditions(batch=n, size=args.size, repeats=args.repeats, inner=args.inner,
                                        opencv=cv2.__version__, opencv_threads=1)}
    path = write_json(args.out, payload)
    for k, v in res.items():
        print(f"{k}: {v['median']:.3f} ms/image (IQR {v['iqr']:.3f})")
    for k, v in ratios.items():
        print(f"speed-up {k}: {v:.1f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
