"""``make gpu-vectors``: inputs and the CPU operators' outputs as small ``.npz`` test vectors.

Runs here (with DALI and the plugin): every CUDA kernel of the plugin gets inputs and the output of
its CPU operator on them, so ``make gpu-check`` on a GPU machine without DALI can check the DALI-free
kernels (``dali_ops/csrc/*/*_gpu.cuh``) bit for bit against the CPU operators. Deterministic (fixed
seeds): regenerating gives the same files. One file per operator in ``tests/gpu_vectors/``; keys are
``<case>.<field>`` (ragged batches as one key per sample), ``<case>.kwargs`` a JSON string.

Usage: ``python tests/gpu_check/make_vectors.py [--out DIR]`` (``make gpu-vectors``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import random_boxes, run_op  # noqa: E402  (the tests' own CPU-pipeline runner)


def _put(store, case, name, values):
    if isinstance(values, list):
        store[f"{case}.{name}.n"] = np.array(len(values))
        for i, v in enumerate(values):
            store[f"{case}.{name}.{i}"] = np.asarray(v)
    else:
        store[f"{case}.{name}"] = np.asarray(values)


def box_search_vectors(occ):
    store = {}
    shapes = [(31, 37), (17, 23), (9, 5), (40, 33), (23, 23), (6, 7), (224, 224), (224, 224)]
    n = len(shapes)
    for seed, variant in enumerate(("plain", "ties", "index", "ties_index_const")):
        rng = np.random.default_rng(100 + seed)
        sal = []
        for H, W in shapes:
            m = rng.random((H, W)).astype(np.float32) ** 3
            if "ties" in variant:
                m = (np.floor(m * 4) / 4).astype(np.float32)
            sal.append(m)
        if "const" in variant:
            sal[1][:] = 0.5
        index = np.array([3, -1, 0, 4, 4, -1, 7, 6], np.int32) if "index" in variant else None
        _put(store, f"maps/{variant}", "map", sal)  # shared by the methods' cases
        for method in ("peak_q", "peak_f", "max_window", "keep_cut", "keep_paste"):
            if method.startswith("peak"):
                draws = list(rng.integers(0, 200, (n, 2)).astype(np.int32))
                kw = dict(method="peak", quantize=method == "peak_q")
            elif method == "max_window":
                draws = list(rng.integers(0, 2**31 - 1, (n, 2)).astype(np.int32))
                kw = dict(method="max_window", size=7, stride=2, jitter=5)  # (6, 7) is smaller
            else:
                draws = [rng.integers(0, 224, (int(rng.integers(1, 33)), 2)).astype(np.int32) for _ in range(n)]
                kw = dict(method=method, size=7 if variant != "plain" else 56,
                          tau=repr(float(rng.choice([0.0, 0.3, 0.6, 1.0]))))
            inputs = [sal, draws] + ([list(index)] if index is not None else [])
            (out,) = run_op(inputs, lambda *x, kw=kw: occ.box_search(*x, **kw), n)
            case = f"{method}/{variant}"
            store[f"{case}.maps"] = np.array(f"maps/{variant}")
            _put(store, case, "draws", draws)
            _put(store, case, "index", index if index is not None else np.arange(n, dtype=np.int32))
            store[f"{case}.kwargs"] = np.array(json.dumps(kw))
            _put(store, case, "out", np.stack(out).reshape(n, 4))
    # Attentive CutMix's top-k cells: maps of the grid's own size, larger ones, ties, NaN, -1 rows, k at both ends
    rng = np.random.default_rng(200)
    shapes = [(7, 7), (7, 7), (64, 64), (17, 23), (224, 224), (9, 30), (7, 8), (50, 50)]
    n = len(shapes)
    sal = [rng.random(s).astype(np.float32) for s in shapes]
    sal[1] = (np.floor(sal[1] * 3) / 3).astype(np.float32)  # ties
    sal[5][:, :5] = np.nan
    _put(store, "maps/topk", "map", sal)
    for variant, kw, index in (("k6", dict(grid=7, top_k=6, image_size=0), np.arange(n, dtype=np.int32)),
                               ("k0_image", dict(grid=7, top_k=0, image_size=224),
                                np.array([2, -1, 0, 4, 4, -1, 7, 1], np.int32)),
                               ("k49", dict(grid=7, top_k=49), np.arange(n, dtype=np.int32)),
                               ("g5_k3", dict(grid=5, top_k=3, image_size=64), np.arange(n, dtype=np.int32))):
        kw = dict(method="topk_cells", **kw)
        draws = [np.zeros(2, np.int32)] * n
        (out,) = run_op([sal, draws, list(index)], lambda *x, kw=kw: occ.box_search(*x, **kw), n)
        case = f"topk_cells/{variant}"
        store[f"{case}.maps"] = np.array("maps/topk")
        _put(store, case, "draws", draws)
        _put(store, case, "index", index)
        store[f"{case}.kwargs"] = np.array(json.dumps(kw))
        _put(store, case, "out", np.stack(out).reshape(n, -1, 4))
    return store


def _images(rng, shapes):
    out = []
    for H, W in shapes:
        yy, xx = np.mgrid[0:H, 0:W]
        base = np.stack([xx * 255 // max(W, 1), yy * 255 // max(H, 1), ((xx + yy) * 5) % 256], -1)
        out.append(np.clip(base + rng.normal(0, 30, (H, W, 3)), 0, 255).astype(np.uint8))
    return out


def saliency_vectors(occ):
    store = {}
    rng = np.random.default_rng(7)
    imgs = _images(rng, [(37, 53), (64, 48), (224, 224), (5, 3), (120, 90)])
    mirror = [0, 1, 1, 0, 1]
    for max_side in (0, 64):
        (out,) = run_op([imgs, [np.int32(v) for v in mirror]],
                        lambda im, m, s=max_side: occ.fine_grained_saliency(im, mirror=m, max_side=s), len(imgs),
                        layouts=("HWC",))
        case = f"max_side{max_side}"
        _put(store, case, "image", imgs)
        _put(store, case, "mirror", np.array(mirror, np.int32))
        store[f"{case}.max_side"] = np.array(max_side)
        _put(store, case, "out", out)
    # float32 input: SaliencyMix's official call (the normalised image as OpenCV gets it), full resolution
    norm = [((im.astype(np.float32) / np.float32(255) - np.float32([0.485, 0.456, 0.406]))
             / np.float32([0.229, 0.224, 0.225])).astype(np.float32) for im in imgs]
    (out,) = run_op([norm, [np.int32(v) for v in mirror]], lambda im, m: occ.fine_grained_saliency(im, mirror=m),
                    len(norm), layouts=("HWC",))
    _put(store, "float", "image", norm)
    _put(store, "float", "mirror", np.array(mirror, np.int32))
    store["float.max_side"] = np.array(0)
    _put(store, "float", "out", out)
    return store




def normalize_vectors(occ):
    from nvidia.dali import types

    store = {}
    rng = np.random.default_rng(11)
    n, H, W = 7, 45, 61
    imgs = _images(rng, [(H, W)] * n)
    mirror = [np.int32(v) for v in rng.integers(0, 2, n)]
    boxes = random_boxes(rng, n, 3, H, W)
    partner = np.array([3, -1, 0, 6, 6, 2, 1], np.int32)
    mean = [0.485 * 255, 0.456 * 255, 0.406 * 255]
    std = [0.229 * 255, 0.224 * 255, 0.225 * 255]
    fill = [0.5, -1.0, 2.0]
    for dtype, kind in (("float32", types.FLOAT), ("float16", types.FLOAT16)):
        kw = dict(mean=mean, std=std, fill=fill, dtype=kind)
        erased, pasted, plain = run_op(
            [imgs, list(boxes), list(partner), mirror],
            lambda im, b, i, m: (occ.normalize_occlude(im, b, mirror=m, **kw),
                                 occ.normalize_occlude(im, b, i, mirror=m, **kw),
                                 occ.normalize_occlude(im, mirror=m, **kw)), n, layouts=("HWC",))
        case = dtype
        _put(store, case, "image", np.stack(imgs))
        _put(store, case, "mirror", np.array(mirror, np.int32))
        _put(store, case, "boxes", boxes)
        _put(store, case, "partner", partner)
        _put(store, case, "mean", np.array(mean, np.float32))
        _put(store, case, "inv_std", np.float32(1) / np.array(std, np.float32))  # the op's 1.f / std
        _put(store, case, "fill", np.array(fill, np.float32))
        _put(store, case, "erased", np.stack(erased))
        _put(store, case, "pasted", np.stack(pasted))
        _put(store, case, "plain", np.stack(plain))
    return store


def paste_vectors(occ):
    store = {}
    rng = np.random.default_rng(13)
    n, H, W = 6, 19, 23
    for layout, dtype in (("CHW", "float32"), ("HWC", "uint8"), ("CHW", "float16")):
        x = (rng.integers(0, 256, (n, 3, H, W)).astype(np.uint8) if dtype == "uint8"
             else rng.standard_normal((n, 3, H, W)).astype(dtype))
        feed = np.ascontiguousarray(x if layout == "CHW" else x.transpose(0, 2, 3, 1))
        boxes = random_boxes(rng, n, 3, H, W)
        partner = np.array([2, -1, 0, 5, 5, 1], np.int32)
        (pasted,) = run_op([list(feed), list(boxes), list(partner)], lambda im, b, i: occ.paste_boxes(im, b, im, i), n,
                           layouts=(layout,))
        case = f"{layout}_{dtype}"
        _put(store, case, "image", feed)
        _put(store, case, "boxes", boxes)
        _put(store, case, "partner", partner)
        _put(store, case, "pasted", np.stack(pasted))
    return store


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "gpu_vectors"))
    args = ap.parse_args(argv)
    import sys

    sys.path.insert(0, str(ROOT))
    import dali_ops
    from nvidia.dali import fn

    dali_ops.load()
    occ = fn.occlusion
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, make in (("box_search", box_search_vectors), ("saliency", saliency_vectors),
                       ("normalize_occlude", normalize_vectors), ("paste_boxes", paste_vectors)):
        store = make(occ)
        np.savez_compressed(out / f"{name}.npz", **store)
        print(f"{name}: {len(store)} arrays, {(out / f'{name}.npz').stat().st_size / 1e6:.2f} MB")
    print(f"gpu vectors written to {out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
