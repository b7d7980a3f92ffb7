"""Loader throughput: our OcclusionLoader per method vs torchvision ImageFolder + DataLoader vs timm's
``create_loader`` (+ its ``Mixup``) vs a plain DALI ``fn.readers.file`` pipeline, on the same JPEGs: generated
ImageNet-sized ones, or any ImageFolder tree of yours (``--data ROOT``).

Every contender does the same work: decode, random-resized-crop to 224 (scale 0.08-1, ratio
3/4-4/3), flip p=0.5, ImageNet mean/std normalisation to NCHW float32, batch 64 (timm's loader with its colour
jitter off, its ``Mixup`` -- mixup 0.8 / cutmix 1.0, switch 0.5, timm's recipe -- applied to the collated batch
in the training process as timm's ``train.py`` does without the prefetcher). Worker counts are
equal: ``--workers`` DataLoader processes, DALI CPU threads for both DALI pipelines (our reader adds
``--reader-workers`` light file-reading processes, reported). Each measurement runs in a fresh
process (so no contender's threads or workers share the cores with another's) after
``--warmup`` batches; contenders run round-robin ``--repeats`` times, the order rotated each
round, so drift on a noisy machine and the position in a round hit all of them alike; the median
images/s and IQR are written to JSON with the conditions, and each method's ratio to ``none`` both
as a ratio of medians and as the median of per-repeat ratios.

    python -m bench.loader_bench [--images 1280] [--batches 15] [--workers 2] [--out results/loader_bench.json]
    python -m bench.loader_bench --data /my/imagefolder/train --methods none,cutmix_mixup
    python -m bench.loader_bench --data ROOT --model resnet50 --device gpu   # is my loader the bottleneck?

Model-bound mode (``--model NAME``, a torchvision model): every contender feeds a training loop (forward,
cross entropy, backward, SGD step) and is timed against the same loop on ``cached``: a few batches of our
loader held in memory and replayed, i.e. a loader that costs nothing (the idea of DALI's
``LoaderEvaluator``). ``loader_efficiency_<contender>`` = loop images/s with the loader / with the cache:
near 1 the model is the bottleneck, well below 1 the loader is.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
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
    loader = OcclusionLoader(root, args.batch_size, method, device=args.device, seed=0, last_batch="drop",
                             output_size=args.image_size, runtime=dict(num_threads=args.workers,
                                                                       py_workers=args.reader_workers, verify="none"),
                             **kw)

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

    tf = T.Compose([T.RandomResizedCrop(args.image_size), T.RandomHorizontalFlip(), T.ToTensor(),
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


def timm_loader(root, args):
    """timm's ``create_loader`` on its ``ImageDataset`` (RandomResizedCrop + flip, colour jitter off, normalise
    in the workers: ``use_prefetcher=False``), then timm's ``Mixup`` on the collated batch in this process --
    timm's ``train.py`` data path with ``--mixup 0.8 --cutmix 1.0``."""
    from timm.data import ImageDataset, Mixup, create_loader

    dataset = ImageDataset(str(root))
    loader = create_loader(dataset, input_size=(3, args.image_size, args.image_size), batch_size=args.batch_size,
                           is_training=True, color_jitter=None, num_workers=args.workers, use_prefetcher=False,
                           device=torch.device("cuda" if args.device == "gpu" else "cpu"), persistent_workers=True)
    num_classes = max(len(dataset.reader.class_to_idx), 1)
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, mode="batch", label_smoothing=0.0,
                num_classes=num_classes)

    def batches():
        while True:
            for images, labels in loader:
                if args.device == "gpu":
                    images, labels = images.cuda(non_blocking=True), labels.cuda(non_blocking=True)
                yield mix(images, labels)[0]
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
        images = fn.resize(images, size=(args.image_size, args.image_size), interp_type=types.INTERP_LINEAR,
                           antialias=True)
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


def measure_training(gen, n_batches, warmup, args):
    """Images/s of a training loop (forward, cross entropy, backward, SGD step) of ``--model`` fed by ``gen``."""
    import torchvision

    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(num_classes=10).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(images):
        images = images.to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        target = torch.zeros(images.shape[0], dtype=torch.long, device=device)
        loss = torch.nn.functional.cross_entropy(model(images), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return images.shape[0]

    for _ in range(warmup):
        step(next(gen))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    rows = sum(step(next(gen)) for _ in range(n_batches))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return rows / (time.perf_counter() - start)


def cached(root, args, n=3):
    """``n`` batches of our loader (``none``) held in memory and replayed: a loader that costs nothing."""
    gen = ours(root, args, "none")
    held = [next(gen).clone() for _ in range(n)]

    def batches():
        while True:
            yield from held
    return batches()


def build(name, root, args):
    if name == "cached":
        return cached(root, args)
    if name.startswith("ours:"):  # ours:<method>[+<auto_augment policy>]
        method, _, policy = name.split(":", 1)[1].partition("+")
        return ours(root, args, method, **({"auto_augment": policy} if policy else {}))
    if name == "torchvision_cutmix":
        return torchvision_loader(root, args, cutmix=True)
    return {"torchvision": torchvision_loader, "dali_readers_file": dali_file_reader,
            "timm_mixup": timm_loader}[name](root, args)


def data_root(args):
    """``--data`` (an ImageFolder tree; a root holding ``train/`` means its train split), else generated
    ImageNet-sized JPEGs."""
    if args.data:
        root = Path(args.data)
        if not root.is_dir():
            raise ValueError(f"--data {root}: not a folder")
        return root / "train" if (root / "train").is_dir() else root
    from pipelines.data.demo_data import make_imagenet_like

    return make_imagenet_like(n=args.images) / "train"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="", help="an ImageFolder tree to time instead of generated JPEGs")
    p.add_argument("--images", type=int, default=1280, help="ImageNet-sized JPEGs to generate (cached)")
    p.add_argument("--image-size", type=int, default=224, help="output side of every contender")
    p.add_argument("--model", default="", help="model-bound mode: time a training loop of this torchvision model")
    p.add_argument("--no-timm", action="store_true", help="leave out timm's loader")
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
    p.add_argument("--against-python", default=sys.executable,
                   help="the interpreter of the --against runs (e.g. one whose editable install is that checkout)")
    p.add_argument("--attention-checkpoint", default="",
                   help="attentive_cutmix extractor checkpoint (default: a random-init one, see attention_checkpoint)")
    p.add_argument("--attention-arch", default="resnet50")
    p.add_argument("--out", default="results/loader_bench.json")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one contender, print images/s
    args = p.parse_args(argv)

    for name in ("batch_size", "batches", "repeats", "workers", "image_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    root = data_root(args)
    if args.one:
        gen = build(args.one, root, args)
        rate = (measure_training(gen, args.batches, args.warmup, args) if args.model
                else measure(gen, args.batches, args.warmup))
        print(f"RESULT {rate}", flush=True)
        # Skip the slow interpreter teardown, but stop the loaders' worker processes first: left
        # behind, they would hold the output pipe open and keep prefetching next to the next contender.
        import multiprocessing

        for child in multiprocessing.active_children():
            child.kill()
        os._exit(0)
    from pipelines.data.imagefiles import scan_image_folder

    files = [Path(f) for f in scan_image_folder(root)[0]]
    mean_kb = float(np.mean([f.stat().st_size for f in files]) / 1024)
    methods = args.methods.split(",")
    names = [f"ours:{m}" for m in methods] + ["torchvision", "dali_readers_file"]
    if not args.no_timm:
        names.append("timm_mixup")
    if args.model:
        names.append("cached")
    policies = {m: get_method(m).default_policy for m in methods}
    for policy in sorted({p for p in policies.values() if p}):  # the same policy without the method
        names.append(f"ours:none+{policy}")
    if "cutmix" in methods:
        names.append("torchvision_cutmix")
    if args.against:
        if args.data or args.image_size != 224 or args.model:
            raise ValueError("--against compares on the generated ImageNet-like data at 224 px without --model "
                             "(the options an older checkout's loader_bench knows)")
        names += [f"base:ours:{m}" for m in methods]
    runs = {name: [] for name in names}
    passthrough = [f"--data={args.data}", f"--image-size={args.image_size}", f"--model={args.model}",
                   f"--images={args.images}", f"--batch-size={args.batch_size}", f"--batches={args.batches}",
                   f"--warmup={args.warmup}", f"--workers={args.workers}",
                   f"--reader-workers={args.reader_workers}", f"--device={args.device}",
                   f"--attention-checkpoint={args.attention_checkpoint}", f"--attention-arch={args.attention_arch}"]
    for r in range(args.repeats):
        # rotated each round, so no contender always runs first (just after the previous round's
        # last one winds down) -- a fixed order biased the `none` baseline that way
        for name in names[r % len(names):] + names[:r % len(names)]:
            one, cwd, env, flags, python = name, None, None, passthrough, sys.executable
            if name.startswith("base:"):  # an older checkout knows only the options every version had
                one, cwd, flags, python = name[len("base:"):], args.against, passthrough[3:], args.against_python
                env = dict(os.environ, PYTHONPATH=args.against_pythonpath or args.against)
            proc = subprocess.run([python, "-m", "bench.loader_bench", *flags, "--one", one],
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
    if not args.no_timm:
        for m in ("cutmix_mixup", "cutmix", "none"):  # timm's Mixup switch is our cutmix_mixup
            if m in methods:
                ratios[f"ours_{m}_vs_timm_mixup"] = results[f"ours:{m}"]["median"] / results["timm_mixup"]["median"]
                break
    if args.model:
        for name in names:
            if name != "cached":
                ratios[f"loader_efficiency_{name}"] = results[name]["median"] / results["cached"]["median"]
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
    payload = {"unit": f"training-loop images/s ({args.model})" if args.model else "images/s", "results": results, "ratios": ratios, "paired_ratios": paired,
               "conditions": conditions(device=args.device, batch_size=args.batch_size, workers=args.workers,
                                        reader_workers=args.reader_workers, images=len(files),
                                        mean_file_kb=mean_kb, image_size=args.image_size, batches=args.batches,
                                        data=str(root), model=args.model or None,
                                        timm=None if args.no_timm else __import__("timm").__version__,
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
