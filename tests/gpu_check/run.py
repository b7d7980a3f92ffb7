"""``make gpu-check``: the plugin's CUDA kernels and the training side's torch rules on a GPU machine without DALI.

1. builds ``dali_ops/csrc/*/*_gpu.cuh`` (DALI-free) into a torch extension for sm_90 only
   (:mod:`build_ext`);
2. checks each kernel against ``tests/gpu_vectors/*.npz`` (inputs and the CPU operators' outputs,
   written by ``make gpu-vectors`` where DALI is) -- bit for bit;
3. runs the training side's torch rules (``kernels.apply``'s erase / paste / cell paste and exact ``lam``,
   ``kernels.labels``' soft targets) on the GPU against the same calls on the CPU -- bit for bit;
4. times every kernel per 256 x 224^2 batch with CUDA events (median of ``--repeats``), beside the
   bytes-moved floor at an H200's 4.8 TB/s;
5. writes ``gpu_check.json`` to ``--out`` (``OUT=dir`` in make; default ``results/``) and exits 1 if any
   equality check failed.

Needs: torch with CUDA, nvcc, NumPy; nothing else from outside the repo.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS = {"peak": 0, "max_window": 1, "keep_cut": 2, "keep_paste": 3, "topk_cells": 4}
HBM_BYTES_PER_S = 4.8e12  # H200


def _ragged(z, case, name):
    n = int(z[f"{case}.{name}.n"])
    return [z[f"{case}.{name}.{i}"] for i in range(n)]


def _cases(z, suffix):
    return sorted({k[: -len(suffix)] for k in z.files if k.endswith(suffix)})


# ------------------------------------------------------------------------------------------ vectors
def check_box_search(ext, z, torch, out):
    for case in _cases(z, ".kwargs"):
        kw = json.loads(str(z[f"{case}.kwargs"]))
        maps = [torch.from_numpy(m).cuda() for m in _ragged(z, str(z[f"{case}.maps"]), "map")]
        draws = [torch.from_numpy(d).cuda() for d in _ragged(z, case, "draws")]
        index = [int(v) for v in z[f"{case}.index"]]
        got = ext.box_search(maps, draws, index, METHODS[kw["method"]], int(kw.get("size", 56)),
                             int(kw.get("stride", 1)), int(kw.get("jitter", 16)), float(kw.get("tau", "0.6")),
                             bool(kw.get("quantize", True)), int(kw.get("grid", 7)), int(kw.get("top_k", 6)),
                             int(kw.get("image_size", 0))).cpu().numpy()
        want = z[f"{case}.out"]
        got = got.reshape(want.shape)
        out[f"box_search {case}"] = "ok" if np.array_equal(got, want) else \
            f"mismatch rows {np.flatnonzero((got != want).any(1)).tolist()}: got {got.tolist()} want {want.tolist()}"


def check_saliency(ext, z, torch, out):
    for case in _cases(z, ".max_side"):
        imgs = [torch.from_numpy(i).cuda() for i in _ragged(z, case, "image")]
        got = ext.fine_grained_saliency(imgs, [int(v) for v in z[f"{case}.mirror"]], int(z[f"{case}.max_side"]))
        want = _ragged(z, case, "out")
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if not np.array_equal(g.cpu().numpy(), w)]
        out[f"fine_grained_saliency {case}"] = "ok" if not bad else f"mismatch samples {bad}"


def check_normalize(ext, z, torch, out):
    for case in _cases(z, ".plain"):
        g = {k: torch.from_numpy(z[f"{case}.{k}"]).cuda() for k in ("image", "boxes", "partner", "mean",
                                                                      "inv_std", "fill")}
        mirror = [int(v) for v in z[f"{case}.mirror"]]
        half = case == "float16"
        empty = torch.empty(0, dtype=torch.int32, device="cuda")
        for name, boxes, partner in (("plain", empty, empty), ("erased", g["boxes"], empty),
                                     ("pasted", g["boxes"], g["partner"])):
            got = ext.normalize_occlude(g["image"], boxes, partner, mirror, g["mean"], g["inv_std"], g["fill"], half)
            ok = np.array_equal(got.cpu().numpy().view(np.uint16 if half else np.uint32),
                                z[f"{case}.{name}"].view(np.uint16 if half else np.uint32))
            out[f"normalize_occlude {case} {name}"] = "ok" if ok else "mismatch"


def check_paste(ext, z, torch, out):
    for case in _cases(z, ".pasted"):
        layout, _ = case.split("_")
        img = torch.from_numpy(z[f"{case}.image"]).cuda()
        boxes = torch.from_numpy(z[f"{case}.boxes"]).cuda()
        part = torch.from_numpy(z[f"{case}.partner"]).cuda()
        got = ext.paste_boxes(img, boxes, part, layout == "CHW").cpu().numpy()
        ok = np.array_equal(got.view(np.uint8), z[f"{case}.pasted"].view(np.uint8))
        out[f"paste_boxes {case}"] = "ok" if ok else "mismatch"


# ---------------------------------------------------------------------------- the training side's torch rules
def training_side_cases(torch, n=5, h=33, w=41):
    """name -> f(device) of the training side's rules on fixed inputs (the CPU call is the GPU call's oracle)."""
    from kernels import apply, labels

    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(rng.standard_normal((n, 3, h, w)).astype(np.float32))
    boxes = torch.from_numpy(rng.integers(-3, 40, (n, 3, 4)).astype(np.int32))
    partner = torch.tensor([2, -1, 0, 4, 1])
    cells = torch.from_numpy(rng.random((n, 7, 7)) < 0.5)
    y = torch.from_numpy(rng.integers(0, 1000, n))
    lam = torch.from_numpy(rng.random(n).astype(np.float32))
    return {
        "erase f32": lambda d: apply.occlude(imgs.to(d), apply.box_mask(boxes.to(d), h, w), fill=[0.5, -1.0, 2.0]),
        "erase f16": lambda d: apply.occlude(imgs.half().to(d), apply.box_mask(boxes.to(d), h, w), fill=0.0),
        "paste partner": lambda d: apply.occlude(imgs.to(d), apply.box_mask(boxes.to(d), h, w), partner=partner.to(d)),
        "paste cells": lambda d: apply.occlude(imgs.to(d), apply.cell_mask(cells.to(d), h, w), partner=partner.to(d)),
        "lam_from_mask": lambda d: apply.lam_from_mask(apply.box_mask(boxes.to(d), h, w)),
        "soft_targets": lambda d: labels.soft_targets(y.to(d), y.flip(0).to(d), lam.to(d), 1000, 0.1),
    }


def check_training_side(torch, out):
    for name, f in training_side_cases(torch).items():
        try:
            cpu, gpu = f("cpu"), f("cuda").cpu()
            out[f"torch {name}"] = "ok" if cpu.dtype == gpu.dtype and torch.equal(cpu, gpu) else "mismatch"
        except Exception as e:  # reported, the other checks go on
            out[f"torch {name}"] = f"error: {e!r}"


# ---------------------------------------------------------------------------------------- timings
def timed(torch, fn, repeats):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ms.append(a.elapsed_time(b))
    return {"median_ms": float(np.median(ms)), "min_ms": float(np.min(ms)), "repeats": repeats}


def floors(n, size):
    """Bytes each op must read and write for n images of size^2 x 3 (uint8 in, float32 out), and the
    time that is at HBM_BYTES_PER_S."""
    px = n * size * size
    f = {
        "normalize_occlude float32": px * 3 * (1 + 4),
        "normalize_occlude float16": px * 3 * (1 + 2),
        "paste_boxes CHW float32": px * 3 * 4 * 2,
        "fine_grained_saliency": px * 3 + px * 4,
        "fine_grained_saliency float32 input": px * 3 * 4 + px * 4,
        "box_search peak": px * 4,
        "box_search max_window": px * 4,
        "box_search keep_cut": px * 4,
        "box_search topk_cells": px * 4,
    }
    return {k: {"bytes": v, "floor_ms": v / HBM_BYTES_PER_S * 1e3} for k, v in f.items()}


def time_all(ext, torch, n, size, repeats, res):
    g = torch.Generator(device="cuda").manual_seed(0)
    maps = list((torch.rand((n, size, size), device="cuda", generator=g) ** 3).unbind(0))
    imgs = torch.randint(0, 256, (n, size, size, 3), device="cuda", dtype=torch.uint8, generator=g)
    chw = torch.randn((n, 3, size, size), device="cuda", generator=g)
    hwc = chw.permute(0, 2, 3, 1).contiguous()  # a normalised-image stand-in for the float32-input saliency
    boxes = torch.randint(0, size, (n, 1, 2), device="cuda", generator=g, dtype=torch.int32)
    boxes = torch.cat([boxes, boxes + 56], -1).contiguous()
    partner = torch.randperm(n, device="cuda", generator=g).to(torch.int32)
    empty = torch.empty(0, dtype=torch.int32, device="cuda")
    mean = torch.tensor([123.7, 116.3, 103.5], device="cuda")
    inv = 1 / torch.tensor([58.4, 57.1, 57.4], device="cuda")
    fill = torch.zeros(3, device="cuda")
    cut = [torch.tensor([112, 112], dtype=torch.int32, device="cuda")] * n
    rnd = [t for t in torch.randint(0, 2**31 - 1, (n, 2), device="cuda", generator=g, dtype=torch.int32).unbind(0)]
    tries = [t for t in torch.randint(0, size, (n, 32, 2), device="cuda", generator=g, dtype=torch.int32).unbind(0)]
    idx = list(range(n))
    ops = {
        "box_search peak": lambda: ext.box_search(maps, cut, idx, 0, 56, 1, 16, 0.6, True, 7, 6, 0),
        "box_search max_window": lambda: ext.box_search(maps, rnd, idx, 1, 56, 1, 16, 0.6, True, 7, 6, 0),
        "box_search keep_cut": lambda: ext.box_search(maps, tries, idx, 2, 56, 1, 16, 0.6, True, 7, 6, 0),
        "box_search topk_cells": lambda: ext.box_search(maps, cut, idx, 4, 56, 1, 16, 0.6, True, 7, 6, 0),
        "fine_grained_saliency": lambda: ext.fine_grained_saliency(list(imgs.unbind(0)), [0] * n, 0),
        "fine_grained_saliency float32 input": lambda: ext.fine_grained_saliency(list(hwc.unbind(0)), [0] * n, 0),
        "normalize_occlude float32": lambda: ext.normalize_occlude(imgs, boxes, empty, [0] * n, mean, inv, fill, False),
        "normalize_occlude float16": lambda: ext.normalize_occlude(imgs, boxes, empty, [0] * n, mean, inv, fill, True),
        "paste_boxes CHW float32": lambda: ext.paste_boxes(chw, boxes, partner, True),
    }
    fl = floors(n, size)
    for name, f in ops.items():
        try:
            res[name] = {**timed(torch, f, repeats), **fl.get(name, {})}
        except Exception as e:
            res[name] = {"error": repr(e)}
    try:  # the training side's torch rules on the batch
        from kernels import apply

        cells = torch.rand((n, 7, 7), device="cuda", generator=g) < 0.5  # Attentive CutMix's 7 x 7 grid
        rules = {
            "torch erase CHW float32": lambda: apply.occlude(chw, apply.box_mask(boxes, size, size), fill=0.0),
            "torch paste cells CHW float32": lambda: apply.occlude(chw, apply.cell_mask(cells, size, size),
                                                                   partner=partner.long()),
        }
        for name, f in rules.items():
            res[name] = timed(torch, f, repeats)
    except Exception as e:
        res["torch timings"] = {"error": repr(e)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results"))
    ap.add_argument("--vectors", default=str(ROOT / "tests" / "gpu_vectors"))
    ap.add_argument("--build-dir", default=str(ROOT / "build" / "gpu_check"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    import torch

    from build_ext import build

    if not torch.cuda.is_available():
        print("gpu-check needs a CUDA device (torch.cuda.is_available() is False)")
        return 2
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "python": platform.python_version(), "batch": args.batch, "size": args.size, "checks": {},
           "timings": {}, "hbm_bytes_per_s": HBM_BYTES_PER_S}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save():
        res["total_s"] = time.perf_counter() - t0
        (out / "gpu_check.json").write_text(json.dumps(res, indent=1))

    print(f"[{time.perf_counter() - t0:6.1f} s] building the extension (sm_90) ...", flush=True)
    try:
        ext, res["extension_build_s"] = build(Path(args.build_dir))
    except Exception:  # the JSON says why, for the one run the GPU machine allows
        res["extension_build_error"] = traceback.format_exc(limit=5)
        save()
        print(res["extension_build_error"])
        return 1
    print(f"[{time.perf_counter() - t0:6.1f} s] checking against the vectors ...", flush=True)
    for name, f in (("box_search", check_box_search), ("saliency", check_saliency),
                    ("normalize_occlude", check_normalize), ("paste_boxes", check_paste)):
        try:
            with np.load(Path(args.vectors) / f"{name}.npz") as z:
                f(ext, z, torch, res["checks"])
        except Exception:
            res["checks"][name] = "error: " + traceback.format_exc(limit=3)
    try:
        check_training_side(torch, res["checks"])
    except Exception:
        res["checks"]["training side"] = "error: " + traceback.format_exc(limit=3)
    torch.cuda.synchronize()
    save()  # the checks are on disk even if the timings do not finish
    print(f"[{time.perf_counter() - t0:6.1f} s] timing per {args.batch} x {args.size}^2 batch ...", flush=True)
    time_all(ext, torch, args.batch, args.size, args.repeats, res["timings"])
    save()
    failed = {k: v for k, v in res["checks"].items() if v != "ok"}
    for k, v in res["timings"].items():
        print(f"{k:40s} {v.get('median_ms', float('nan')):8.3f} ms   floor {v.get('floor_ms', float('nan')):.3f} ms"
              + (f"   {v['error']}" if "error" in v else ""))
    print(f"{len(res['checks']) - len(failed)}/{len(res['checks'])} checks ok; results in {out / 'gpu_check.json'} "
          f"({res['total_s']:.0f} s)")
    for k, v in failed.items():
        print(f"FAILED {k}: {v}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
