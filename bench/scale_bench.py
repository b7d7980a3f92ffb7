"""The loader at a GPU node's scale, simulated on this machine (issue 20): JSON + plot.

Five measurements, each with the load average of the machine when it was taken (the cores may be shared):

* **reader**: images/s against ``py_workers`` (1, 2, 4, 8) with every file open delayed by ``--open-ms`` (10 ms: an
  ``LD_PRELOAD`` shim compiled from ``bench/slow_open.c``, which the spawned reader workers inherit), method ``none``,
  64 px, batch 32, small JPEGs; the reader's own queue at its default (``2 * py_workers``) and, for comparison, at
  the graph's prefetch (2), which is what it had before. One fresh process per measurement, ``--repeats`` rounds.
* **bank**: 224 px, ImageNet-weight JPEGs (``make_imagenet_like``), ``saliency_occlusion``, batch 32. Epoch 0 is
  iterated (with the bank, every row pushes a map); then epoch 1 is timed: the wait for its first batch after
  the loop finished epoch 0, and the rate of its other batches (the loader alone: no pushes in epoch 1), for the
  bank and for image saliency, alternating, ``--repeats`` rounds; and the share of epoch 1's rows whose map came
  from the bank.
* **first batch**: seconds from the constructor's call to the first batch on trees of 10,000 and 100,000 small
  JPEGs, default runtime (``verify="full"``), in a fresh process: a first run (no file records) and a second,
  cached run; beside it the seconds a full check of every file takes (``python -m pipelines.data.verify``, the
  pass the loader made before its first batch until issue 20).
* **bank traffic**: 2 and 4 gloo processes, each pushing one batch per step for an epoch through the bank's writer
  (the loader's order and shards decide where each map goes): bytes received and rows written per rank per step.
* **per-row costs and reader cores**: the reader's work per row, timed in this process on ImageNet-weight JPEGs
  in the page cache (read, the full check of a first epoch -- the JPEG walk, and Pillow's decode for comparison
  --, the record lookup of later epochs, the batch's draws, the bank lookup), and from them the reader cores a rank
  needs for 8,000 images/s (a GPU's share of an 8-GPU node at MLPerf ResNet-50 speed), first epoch and later.

    python -m bench.scale_bench [--repeats 3] [--out results/scale_bench.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import conditions, pillow_draft_decode, summary, write_json

ROOT = Path(__file__).resolve().parents[1]
NODE_RATE = 8000  # images/s per GPU


def load() -> float:
    return round(os.getloadavg()[0], 2)


def bench_cache() -> Path:
    from pipelines.data.demo_data import cache_dir

    return cache_dir() / "scale_bench"


def child(kind: str, env: dict | None = None, **args) -> dict:
    """Run ``_child_<kind>`` in a fresh Python process (its own workers, its own environment); its JSON result."""
    cmd = [sys.executable, "-m", "bench.scale_bench", "--child", kind, "--args", json.dumps(args)]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- reader ------------------------------------------------------------------------------------------------------
def _child_reader(root, workers, depth, batches, warmup):
    from pipelines import OcclusionLoader

    loader = OcclusionLoader(root, 32, "none", output_size=64, device="cpu", seed=0, last_batch="drop",
                             runtime=dict(num_threads=2, py_workers=workers, reader_depth=depth, verify="none"))
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start, rows = time.perf_counter(), 0
    for _ in range(batches):
        rows += next(it).images.shape[0]
    rate = rows / (time.perf_counter() - start)
    loader.close()
    return {"images_per_s": rate, "load": load()}


def shim(tmp: Path) -> Path:
    so = tmp / "slow_open.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(ROOT / "bench" / "slow_open.c"), "-o", str(so), "-ldl"],
                   check=True)
    return so


def measure_reader(args, tmp: Path) -> dict:
    from pipelines.data.demo_data import ensure_demo_data

    root = ensure_demo_data(bench_cache() / "small", train_per_class=320, val_per_class=0, num_classes=10,
                            width_range=(64, 120), height_range=(64, 120)) / "train"
    env = {"LD_PRELOAD": str(shim(tmp)), "SLOW_OPEN_PREFIX": str(root), "SLOW_OPEN_MS": str(args.open_ms)}
    out = {"open_ms": args.open_ms, "batch": 32, "size": 64, "files": sum(1 for _ in root.rglob("*.jpg")),
           "by_workers": {}}
    for workers in (1, 2, 4, 8):
        runs = {"reader_depth_default": [], "reader_depth_2": []}
        loads = []
        for r in range(args.repeats):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                got = child("reader", env, root=str(root), workers=workers, depth=None if name.endswith("default")
                            else 2, batches=args.reader_batches, warmup=3)
                runs[name].append(got["images_per_s"])
                loads.append(got["load"])
        out["by_workers"][str(workers)] = {**{k: summary(v) for k, v in runs.items()}, "load": loads}
        print(f"reader: {workers} workers: " + ", ".join(f"{k} {np.median(v):.0f}/s" for k, v in runs.items()),
              flush=True)
    by = out["by_workers"]
    out["speedup_8_over_1"] = by["8"]["reader_depth_default"]["median"] / by["1"]["reader_depth_default"]["median"]
    out["speedup_8_over_1_depth_2"] = by["8"]["reader_depth_2"]["median"] / by["1"]["reader_depth_2"]["median"]
    out["target"] = "8 workers >= 6 x 1 worker"
    return out


# -- bank ----------------------------------------------------------------------------------------------------------
def _child_bank(root, source, bank, push_epoch1):
    import torch

    from pipelines import OcclusionLoader

    kw = dict(saliency="bank", bank=bank) if source == "bank" else {}
    loader = OcclusionLoader(root, 32, "saliency_occlusion", size=56, output_size=224, device="cpu", seed=0,
                             last_batch="drop", runtime=dict(num_threads=2, py_workers=1), **kw)
    start = time.perf_counter()
    for i, batch in enumerate(loader):  # epoch 0
        if i == 0:
            first0 = time.perf_counter() - start
        if source == "bank":
            loader.feedback(batch, torch.rand(batch.images.shape[0], 14, 14))
    start = time.perf_counter()  # the loop is done with epoch 0: now its first batch of epoch 1
    stamps, share = [], []
    for batch in loader:
        stamps.append(time.perf_counter())
        share.append(float(batch.meta["map_source"].float().mean()))
        if source == "bank" and push_epoch1:
            loader.feedback(batch, torch.rand(batch.images.shape[0], 14, 14))
    loader.close()
    return {"first_batch_epoch0_s": first0, "first_batch_wait_s": stamps[0] - start,
            "images_per_s": 32 * (len(stamps) - 1) / (stamps[-1] - stamps[0]), "bank_rows": float(np.mean(share)),
            "load": load()}


def measure_bank(args, tmp: Path) -> dict:
    from pipelines.data.demo_data import make_imagenet_like

    root = make_imagenet_like(bench_cache() / "imagenet_like", n=args.bank_images) / "train"
    runs = {s: {"first_batch_wait_s": [], "images_per_s": [], "bank_rows": [], "load": []} for s in ("image", "bank")}
    for r in range(args.repeats):
        for source in (("image", "bank") if r % 2 == 0 else ("bank", "image")):
            got = child("bank", root=str(root), source=source, bank=str(tmp / f"bank{r}.bin"), push_epoch1=False)
            for k in runs[source]:
                runs[source][k].append(got[k])
        print(f"bank round {r}: " + ", ".join(f"{s} {runs[s]['images_per_s'][-1]:.0f}/s first "
                                              f"{runs[s]['first_batch_wait_s'][-1]:.3f}s" for s in runs), flush=True)
    rate_ratio = [b / i for b, i in zip(runs["bank"]["images_per_s"], runs["image"]["images_per_s"])]
    later = [b - i for b, i in zip(runs["bank"]["first_batch_wait_s"], runs["image"]["first_batch_wait_s"])]
    return {"files": args.bank_images, "batch": 32, "size": 224, "method": "saliency_occlusion:size=56",
            **{s: {k: summary(v) if k != "load" else v for k, v in m.items()} for s, m in runs.items()},
            "rate_bank_over_image": summary(rate_ratio), "first_batch_later_s": summary(later),
            "targets": {"rate_bank_over_image": ">= 1.05", "first_batch_later_s": "<= 0.5", "bank_rows": ">= 0.8"}}


# -- first batch ---------------------------------------------------------------------------------------------------
def make_tree(root: Path, files: int, per_class: int = 100) -> Path:
    """``files`` small distinct JPEGs (48 x 64) in classes of ``per_class``, built once and kept."""
    done = root / ".complete"
    if done.exists():
        return root
    from PIL import Image

    rng = np.random.default_rng(0)
    bases = []
    for k in range(64):
        import io

        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
        bases.append(buf.getvalue())
    for i in range(files):
        folder = root / f"c{i // per_class:05d}"
        if i % per_class == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.jpg").write_bytes(bases[i % len(bases)])
    done.write_text(str(files))
    return root


def _child_first_batch(root):
    start = time.perf_counter()
    from pipelines import OcclusionLoader  # the import counts: a user's script pays it too

    loader = OcclusionLoader(root, 32, "none", output_size=64, device="cpu", seed=0)
    built = time.perf_counter() - start
    next(iter(loader))
    first = time.perf_counter() - start
    loader.close()
    return {"constructor_s": built, "first_batch_s": first, "load": load()}


def _child_full_pass(root):
    from pipelines.data.imagefiles import scan_image_folder
    from pipelines.data.verify import find_bad_images

    paths, _, _ = scan_image_folder(root)
    start = time.perf_counter()
    find_bad_images(paths, full=True, workers=max(2, os.cpu_count() or 2))
    return {"full_check_s": time.perf_counter() - start, "load": load()}


def measure_first_batch(args, tmp: Path) -> dict:
    out = {}
    for files in (10_000, 100_000):
        root = make_tree(bench_cache() / f"tree_{files}", files)
        records = tmp / f"records_{files}"
        first = child("first_batch", {"DALI_OCCLUSION_CACHE": str(records)}, root=str(root))
        cached = child("first_batch", {"DALI_OCCLUSION_CACHE": str(records)}, root=str(root))
        full = child("full_pass", root=str(root))
        out[str(files)] = {"first_run": first, "cached_run": cached, "full_check_before": full}
        print(f"first batch, {files} files: first run {first['first_batch_s']:.2f}s, cached "
              f"{cached['first_batch_s']:.2f}s (a full check of every file: {full['full_check_s']:.1f}s)", flush=True)
    out["target"] = "100,000 files, first run: first batch within 5 s of the constructor's call"
    return out


# -- bank traffic --------------------------------------------------------------------------------------------------
def _traffic_rank(rank, world, port, n, out):
    import torch
    import torch.distributed as dist

    from pipelines.loader.plan import AugmentConfig
    from pipelines.loader.source import ImageSource
    from pipelines.saliency.bank import BankFile, EpochProgress, make_stamp, progress_path
    from pipelines.saliency.bank_writer import Bank

    os.environ.update(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        folder = Path(out).parent
        source = ImageSource([f"{i}.jpg" for i in range(n)], np.zeros(n, np.int64), 32, AugmentConfig("none"),
                             shard_id=rank, num_shards=world, last_batch="drop")
        file = BankFile(folder / "bank.bin", n, 22, "bench")
        bank = Bank(file, EpochProgress(progress_path(file.path), world, create=True), world)
        bank.route(source.owners, rank)
        bank.before_epoch(0)
        ids = source.shard_plan(0).ids
        steps = source.batches_per_epoch()
        rng = np.random.default_rng(rank)
        start = time.perf_counter()
        for step in range(steps):
            batch = torch.from_numpy(ids[step * 32:(step + 1) * 32].astype(np.int64))
            cells = torch.from_numpy(rng.integers(1, 256, (batch.numel(), 22, 22), dtype=np.uint8))
            bank.writer.push(batch, torch.full((batch.numel(),), int(make_stamp(0, step)), dtype=torch.int64), cells)
        bank.end_epoch(0)
        seconds = time.perf_counter() - start
        traffic = dict(bank.writer.traffic)
        Path(out).write_text(json.dumps({"steps": steps, "traffic": traffic, "seconds": seconds, "load": load()}))
        bank.close()
    finally:
        dist.destroy_process_group()


def _child_traffic(world, n, folder):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = [str(Path(folder) / f"rank{r}.json") for r in range(world)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_traffic_rank, args=(r, world, port, n, outs[r])) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    return [json.loads(Path(o).read_text()) for o in outs]


def measure_traffic(args, tmp: Path) -> dict:
    out = {"samples": args.traffic_samples, "batch": 32, "grid": 22, "row_bytes": 16 + 22 * 22}
    for world in (2, 4):
        folder = tmp / f"traffic{world}"
        folder.mkdir()
        ranks = child("traffic", world=world, n=args.traffic_samples, folder=str(folder))
        per_step = [{k: v / r["steps"] for k, v in r["traffic"].items()} for r in ranks]
        out[str(world)] = {"per_rank_per_step": per_step,
                      "bytes_received_per_step": float(np.mean([p["bytes_received"] for p in per_step])),
                      "rows_written_per_step": float(np.mean([p["rows_written"] for p in per_step])),
                      "all_gather_bytes_per_step": (world - 1) * 32 * out["row_bytes"],
                      "seconds_per_step": float(np.mean([r["seconds"] / r["steps"] for r in ranks])),
                      "load": [r["load"] for r in ranks]}
        print(f"bank traffic, {world} processes: {out[str(world)]['bytes_received_per_step']:.0f} B received and "
              f"{out[str(world)]['rows_written_per_step']:.1f} rows written per rank per step", flush=True)
    out["growth_2_to_4"] = {k: out["4"][k] / out["2"][k] for k in ("bytes_received_per_step", "rows_written_per_step")}
    return out


# -- per-row costs -------------------------------------------------------------------------------------------------
def per_call(fn, items, repeats=3) -> float:
    """Median over ``repeats`` of the seconds per item of ``fn`` over ``items``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - start) / len(items))
    return float(np.median(times))


def measure_costs(args, tmp: Path) -> dict:
    from pipelines.data.demo_data import make_imagenet_like
    from pipelines.data.file_cache import FileRecords, read_checked
    from pipelines.data.imagefiles import check_image, probe_image, scan_image_folder
    from pipelines.data.jpeg_scan import compile_walk, scan_error
    from pipelines.loader.plan import AugmentConfig, batch_rng, plan_batch
    from pipelines.methods import get_method
    from pipelines.saliency.bank import BankFile, BankReader, EpochProgress, progress_path, window_holds_pushed_cell

    compile_walk()
    paths, _, _ = scan_image_folder(make_imagenet_like(bench_cache() / "imagenet_like", n=args.bank_images) / "train")
    paths = paths[:args.cost_files]
    blobs = [Path(p).read_bytes() for p in paths]  # and the page cache holds them
    records = FileRecords.for_paths(paths, directory=str(tmp / "records"))
    index = {p: i for i, p in enumerate(paths)}

    probe = per_call(probe_image, paths)
    costs = {
        "read_s": per_call(lambda p: read_checked(p, index[p], None, "none"), paths) - probe,
        "header_probe_s": probe,
        "jpeg_walk_s": per_call(scan_error, blobs),
        "pillow_decode_s": per_call(pillow_draft_decode, paths),
        "full_check_s": per_call(lambda b: check_image("x.jpg", full=True, data=b), blobs),
    }
    for p in paths:
        read_checked(p, index[p], records, "full")
    costs["read_with_record_s"] = per_call(lambda p: read_checked(p, index[p], records, "full"), paths)
    heights, widths = np.full(32, 375), np.full(32, 500)
    for name, method in (("none", "none"), ("saliency_occlusion", "saliency_occlusion:size=56")):
        cfg = AugmentConfig(get_method(method), output_size=224)
        costs[f"draws_{name}_s"] = per_call(lambda k: plan_batch(cfg, batch_rng(0, 0, k, 0), heights, widths),
                                            range(200)) / 32
    bank = BankFile(tmp / "bank.bin", 100_000, 22, "bench")
    EpochProgress(progress_path(bank.path), 1, create=True).set(0, 10)
    reader = BankReader(bank.path, 100_000, 22, "image")
    rng = np.random.default_rng(0)
    crops = np.tile([40, 50, 200, 300], (32, 1))
    sizes = np.tile([375, 500], (32, 1))

    def lookup(k):
        cells, _, found = reader.lookup(rng.integers(0, 100_000, 32), 1)
        window_holds_pushed_cell(cells, crops, sizes)

    costs["bank_lookup_s"] = per_call(lookup, range(200)) / 32
    steady = costs["read_with_record_s"] + costs["draws_saliency_occlusion_s"] + costs["bank_lookup_s"]
    first = costs["read_s"] + costs["full_check_s"] + costs["draws_saliency_occlusion_s"] + costs["bank_lookup_s"]
    return {"files": len(paths), "mean_file_bytes": float(np.mean([len(b) for b in blobs])),
            "per_row_seconds": costs, "load": load(),
            "reader_cores_for_8000_per_s": {
                "later_epochs": NODE_RATE * steady, "first_epoch": NODE_RATE * first,
                "what": "reader work per row (read + record lookup + draws + bank lookup; the first epoch adds the "
                        "full check) x 8,000 rows/s; excludes DALI's copy of the batch into shared memory"}}


# -- plot ----------------------------------------------------------------------------------------------------------
def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(19, 4.2))
    r = payload["reader"]
    workers = sorted(int(w) for w in r["by_workers"])
    for name, style in (("reader_depth_default", "o-"), ("reader_depth_2", "s--")):
        ax[0].plot(workers, [r["by_workers"][str(w)][name]["median"] for w in workers], style,
                   label="reader queue 2 x workers (now)" if name.endswith("default") else "reader queue 2 (before)")
    ax[0].set(xlabel="py_workers", ylabel="images/s", xticks=workers,
              title=f"reader, {r['open_ms']} ms per file open\n(none, 64 px, batch 32)")
    ax[0].legend(fontsize=8)
    b = payload["bank"]
    names = ["image", "bank"]
    ax[1].bar(names, [b[n]["images_per_s"]["median"] for n in names], color=["grey", "tab:blue"])
    ax[1].set(ylabel="images/s, epoch 1", title=f"bank vs image saliency, 224 px\n(bank rows "
                                                  f"{100 * b['bank']['bank_rows']['median']:.0f}%)")
    twin = ax[1].twinx()
    twin.plot(names, [b[n]["first_batch_wait_s"]["median"] for n in names], "kD", label="epoch 1 first batch wait")
    twin.set(ylabel="first batch wait, s", ylim=(0, max(0.6, 1.2 * max(b[n]["first_batch_wait_s"]["median"]
                                                                          for n in names))))
    twin.legend(fontsize=8, loc="lower right")
    f = payload["first_batch"]
    counts = [10_000, 100_000]
    for key, style, label in (("first_run", "o-", "first run"), ("cached_run", "s-", "cached run"),
                              ("full_check_before", "x--", "a full check of every file (before)")):
        values = [f[str(c)][key]["full_check_s" if key == "full_check_before" else "first_batch_s"] for c in counts]
        ax[2].plot(counts, values, style, label=label)
    ax[2].set(xscale="log", xlabel="files", ylabel="s from the constructor", title="time to the first batch")
    ax[2].legend(fontsize=8)
    t = payload["traffic"]
    ranks = ["2", "4"]
    ax[3].bar(ranks, [t[k]["bytes_received_per_step"] / 1e3 for k in ranks], color="tab:blue",
              label="all_to_all to the next owner (now)")
    ax[3].plot(ranks, [t[k]["all_gather_bytes_per_step"] / 1e3 for k in ranks], "kx--",
               label="all_gather to every rank (before)")
    ax[3].set(xlabel="gloo processes", ylabel="kB received per rank per step", title="bank traffic per rank")
    ax[3].legend(fontsize=8)
    c = payload["conditions"]
    fig.suptitle(f"{c['cpu']}, {c['cores']} cores shared (load at start {c['loadavg_start'][0]:.1f}); "
                 f"commit {c['commit'][:8]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--open-ms", type=float, default=10.0)
    ap.add_argument("--reader-batches", type=int, default=20)
    ap.add_argument("--bank-images", type=int, default=640)
    ap.add_argument("--traffic-samples", type=int, default=4096)
    ap.add_argument("--cost-files", type=int, default=200)
    ap.add_argument("--only", default="reader,bank,first_batch,traffic,costs")
    ap.add_argument("--out", default="results/scale_bench.json")
    ap.add_argument("--plot", default="docs/scale_bench.png")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--args", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(globals()[f"_child_{args.child}"](**json.loads(args.args))))
        return None
    measures = {"reader": measure_reader, "bank": measure_bank, "first_batch": measure_first_batch,
                "traffic": measure_traffic, "costs": measure_costs}
    payload = {"conditions": conditions(repeats=args.repeats)}
    out = Path(args.out)
    if out.exists():  # a partial run (--only) keeps the other sections
        payload = {**json.loads(out.read_text()), "conditions": payload["conditions"]}
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        for name in args.only.split(","):
            payload[name] = measures[name](args, tmp)
            payload[name]["load_after"] = load()
            write_json(out, payload)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if all(k in payload for k in measures):
        plot(payload, Path(args.plot))
    print(out)
    return payload


if __name__ == "__main__":
    main()
