"""Loader throughput: our OcclusionLoader per method vs torchvision ImageFolder + DataLoader vs a
plain DALI ``fn.readers.file`` pipeline, on the same ImageNet-sized JPEGs, in one process.

Every contender does the same work: decode, random-resized-crop to 224 (scale 0.08-1, ratio
3/4-4/3), flip p=0.5, ImageNet mean/std normalisation to NCHW float32, batch 64. Worker counts are
equal: ``--workers`` DataLoader processes, DALI CPU threads for both DALI pipelines (our reader adds
``--reader-workers`` light file-reading processes, reported). Each measurement runs in a fresh
process (so no contender's threads or workers share the cores with another's) after
``--warmup`` batches; contenders run round-robin ``--repeats`` times, the order rotated each
round, so drift on a noisy machine and the position in a round hit all of them alike; the median
images/s and IQR are written to JSON with the conditions, and each method's ratio to ``none`` both
as a ratio of medians and as the median of per-repeat ratios.

    python -m bench.loader_bench [--images 1280] [--batches 15] [--workers 2] [--out results/loader_bench.json]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

from bench.common import conditions, summary, write_json
from pipelines.methods import get_method

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def attention_checkpoint(args) -> str:
    """``--attention-checkpoint``, or a randomly initialised ``--attention-arch`` saved once under .cache/
    (throughput does not depend on the weights; nothing is downloaded)."""
    if args.attention_checkpoint:
        return args.attention_checkpoint
    from pathlib import Path

    import torchvision

    path = Path(".cache") / f"bench_{args.attention_arch}_random.pth"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, args.attention_arch)(weights=None).state_dict(), path)
    return str(path)


def ours(root, args, method, **kw):
    from pipelines import OcclusionLoader

    if method == "attentive_cutmix":
        kw.update(checkpoint=attention_checkpoint(args), arch=args.attention_arch)
    loader = OcclusionLoader(root, args.batch_size, method, device=args.device, num_threads=args.workers,
                             py_workers=args.reader_workers, seed=0, verify="none", last_batch="drop", **kw)

    def batches():
        while True:
            for batch in loader:
                yield batch.images
    return batches()


def torchvision_loader(root, args, cutmix=False):
    """ImageFolder + DataLoader; with ``cutmix`` the batch then goes through ``transforms.v2.CutMix``
    in the training process, as torchvision's reference recipes apply it after collation."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([m / 255 for m in MEAN], [s / 255 for s in STD])])
    loader = torch.utils.data.DataLoader(ImageFolder(root, tf), batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, drop_last=True, persistent_workers=True,
                                         prefetch_factor=2)

    mix = v2.CutMix(alpha=1.0, num_classes=len(loader.dataset.classes)) if cutmix else None

    def batches():
        while True:
            for images, labels in loader:
                yield mix(images, labels)[0] if mix is not None else images
    return batches()


def dali_file_reader(root, args):
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    gpu = args.device == "gpu"

    @pipeline_def(batch_size=args.batch_size, num_threads=args.workers, device_id=0 if gpu else None, seed=0)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(root), random_shuffle=True, name="reader")
        images = fn.decoders.image_random_crop(jpegs, device="mixed" if gpu else "cpu", output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3])
        images = fn.resize(images, size=(224, 224), interp_type=types.INTERP_LINEAR, antialias=True)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=MEAN, std=STD,
                                          mirror=fn.random.coin_flip())
        return images, labels

    it = DALIGenericIterator(pipe(), ["images", "labels"], reader_name="reader", auto_reset=True)

    def batches():
        while True:
            for out in it:
                yield out[0]["images"]
    return batches()


def measure(gen, n_batches, warmup):
    for _ in range(warmup):  # start-up and prefetch fill
        next(gen)
    start = time.perf_counter()
    rows = 0
    for _ in range(n_batches):
        rows += next(gen).shape[0]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return rows / (time.perf_counter() - start)


def build(name, root, args):
    if name.startswith("ours:"):  # ours:<method>[+<auto_augment policy>]
        method, _, policy = name.split(":", 1)[1].partition("+")
        return ours(root, args, method, **({"auto_augment": policy} if policy else {}))
    if name == "torchvision_cutmix":
        return torchvision_loader(root, args, cutmix=True)
    return {"torchvision": torchvision_loader, "dali_readers_file": dali_file_reader}[name](root, args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1280, help="ImageNet-sized JPEGs to generate (cached)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=15, help="timed batches per contender per repeat")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reader-workers", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--methods", default="none,cutout,hide_and_seek",
                   help="comma-separated registry methods (pipelines.methods.METHODS), each optionally with "
                        "options as name:key=value (a method with its own augmentation policy, keep_paste, "
                        "adds the baseline ours:none+<policy>)")
    p.add_argument("--against", default="",
                   help="another checkout of this repository (e.g. a git worktree at an older commit): its "
                        "loader runs each method in the same rounds, as 'base:ours:<method>' (before/after)")
    p.add_argument("--against-pythonpath", default="",
                   help="PYTHONPATH for the --against runs (default: the checkout itself)")
    p.add_argument("--attention-checkpoint", default="",
                   help="attentive_cutmix extractor checkpoint (default: a random-init one, see attention_checkpoint)")
    p.add_argument("--attention-arch", default="resnet50")
    p.add_argument("--out", default="results/loader_bench.json")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one contender, print images/s
    args = p.parse_args(argv)

    from pipelines.demo_data import make_imagenet_like

    root = make_imagenet_like(n=args.images) / "train"
    if args.one:
        print(f"RESULT {measure(build(args.one, root, args), args.batches, args.warmup)}", flush=True)
        # Skip the slow interpreter teardown, but stop the loaders' worker processes first: left
        # behind, they would hold the output pipe open and keep prefetching next to the next contender.
        import multiprocessing

        for child in multiprocessing.active_children():
            child.kill()
        os._exit(0)
    files = sorted(root.rglob("*.jpg"))
    mean_kb = float(np.mean([f.stat().st_size for f in files]) / 1024)
    methods = args.methods.split(",")
    names = [f"ours:{m}" for m in methods] + ["torchvision", "dali_readers_file"]
    policies = {m: get_method(m).default_policy for m in methods}
    for policy in sorted({p for p in policies.values() if p}):  # the same policy without the method
        names.append(f"ours:none+{policy}")
    if "cutmix" in methods:
        names.append("torchvision_cutmix")
    if args.against:
        names += [f"base:ours:{m}" for m in methods]
    runs = {name: [] for name in names}
    passthrough = [f"--images={args.images}", f"--batch-size={args.batch_size}", f"--batches={args.batches}",
                   f"--warmup={args.warmup}", f"--workers={args.workers}",
                   f"--reader-workers={args.reader_workers}", f"--device={args.device}",
                   f"--attention-checkpoint={args.attention_checkpoint}", f"--attention-arch={args.attention_arch}"]
    for r in range(args.repeats):
        # rotated each round, so no contender always runs first (just after the previous round's
        # last one winds down) -- a fixed order biased the `none` baseline that way
        for name in names[r % len(names):] + names[:r % len(names)]:
            one, cwd, env = name, None, None
            if name.startswith("base:"):
                one, cwd = name[len("base:"):], args.against
                env = dict(os.environ, PYTHONPATH=args.against_pythonpath or args.against)
            proc = subprocess.run([sys.executable, "-m", "bench.loader_bench", *passthrough, "--one", one],
                                  capture_output=True, text=True, cwd=cwd, env=env)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                raise RuntimeError(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            runs[name].append(float(line[-1].split()[1]))
            print(f"repeat {r} {name}: {runs[name][-1]:.1f} images/s", flush=True)
    results = {name: summary(v) for name, v in runs.items()}
    base = results["ours:none"]["median"]
    ratios = {"ours_none_vs_torchvision": base / results["torchvision"]["median"],
              "ours_none_vs_dali_readers_file": base / results["dali_readers_file"]["median"]}
    for m in methods:
        ratios[f"ours_{m}_vs_ours_none"] = results[f"ours:{m}"]["median"] / base
    for m, policy in policies.items():
        if policy:
            ratios[f"ours_{m}_vs_ours_none+{policy}"] = (results[f"ours:{m}"]["median"]
                                                         / results[f"ours:none+{policy}"]["median"])
    if args.against:
        for m in methods:
            ratios[f"ours_{m}_vs_base_{m}"] = results[f"ours:{m}"]["median"] / results[f"base:ours:{m}"]["median"]
    if "cutmix" in methods:
        ratios["ours_cutmix_vs_torchvision_cutmix"] = (results["ours:cutmix"]["median"]
                                                       / results["torchvision_cutmix"]["median"])
    # The same ratios repeat by repeat (each contender against the `none` run of its own round),
    # median over repeats: on a shared machine whose speed drifts between rounds this pairs
    # measurements taken minutes apart instead of medians taken across the whole run.
    base_runs = np.array(runs["ours:none"])
    paired = {f"ours_{m}_vs_ours_none": float(np.median(np.array(runs[f"ours:{m}"]) / base_runs))
              for m in methods}
    if args.against:
        paired.update({f"ours_{m}_vs_base_{m}": float(np.median(np.array(runs[f"ours:{m}"])
                                                                 / np.array(runs[f"base:ours:{m}"])))
                       for m in methods})
    payload = {"unit": "images/s", "results": results, "ratios": ratios, "paired_ratios": paired,
               "conditions": conditions(device=args.device, batch_size=args.batch_size, workers=args.workers,
                                        reader_workers=args.reader_workers, images=len(files),
                                        mean_file_kb=mean_kb, image_size=224, batches=args.batches,
                                        warmup=args.warmup, repeats=args.repeats, against=args.against,
                                        against_commit=subprocess.run(
                                            ["git", "-C", args.against, "rev-parse", "HEAD"], capture_output=True,
                                            text=True).stdout.strip() if args.against else None)}
    path = write_json(args.out, payload)
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x" + (f" (paired {paired[k]:.2f}x)" if k in paired else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
