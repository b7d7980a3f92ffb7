"""Train a torchvision ResNet on an ImageFolder tree with the occlusion loader, on one device or under ``torchrun``.

    python train_example.py --demo                       # built-in demo data, CPU or GPU, a few minutes
    python train_example.py --preset list                # the papers' ImageNet runs
    torchrun --nproc_per_node 8 train_example.py --data /imagenet --preset cutmix_resnet50
    torchrun --nproc_per_node 8 train_example.py --data /imagenet --method cutout --amp --save ckpt/
    torchrun --nproc_per_node 8 train_example.py --data /imagenet --resume ckpt/      # exact resume
    python train_example.py --demo --method cutmix:alpha=1.0,p=0.5
    python train_example.py --demo --method saliency_occlusion --copies 2 --p-keep-image 1.0,0.0
    python train_example.py --evaluate ckpt/checkpoint.pt --occlusion-sweep --demo  # robustness sweep
    python train_example.py --demo --method saliency_occlusion --copies 2 --p-keep-image 1.0,0.0 \
        --saliency normgrad:maxpool                  # Fong & Vedaldi joint training, the model's NormGrad
    torchrun --nproc_per_node 2 train_example.py --demo --method saliency_occlusion --copies 2 \
        --p-keep-image 1.0,0.0 --saliency normgrad:maxpool:loss --amp   # the free joint step, DDP + bf16
    python train_example.py --demo --method attentive_cutmix --saliency attention:layer4   # no checkpoint
    torchrun --nproc_per_node 2 train_example.py --demo --method keep_cutout \
        --saliency normgrad:maxpool --feedback bank  # the model's map of the previous visit, free

``--data`` defaults to the ResNet-50 ImageNet recipe (Goyal et al. 2017, "Accurate, Large Minibatch SGD",
arXiv 1706.02677; torchvision's references): 32 images per process (256 on 8 GPUs, scaled linearly with
the number of processes), SGD momentum 0.9, lr 0.1 x B/256 with a linear warm-up (5 epochs), weight decay
1e-4 on the weights only (none on BatchNorm and biases), 90 epochs cosine (``--schedule cosine``) or Fong
& Vedaldi's 100 epochs x0.1 at 30/60/90 (``--schedule step``). ``--demo`` keeps it small: ResNet-18, two
epochs, a short warm-up.

The papers' recipes are flags too: ``--milestones 75,150,225`` or ``--decay-every 75`` with ``--gamma``,
``--nesterov``, ``--wd-all`` (weight decay on every parameter, as clovaai's and SaliencyMix's code),
``--warmup-epochs 0``, ``--color-jitter 0.4 --lighting 0.1`` (clovaai's ImageNet ColorJitter and PCA Lighting,
in the graph), ``--auto-augment rand-m9-mstd0.5-inc1`` (timm's strings, :mod:`pipelines.loader.policy`), and timm's
flag names ``--reprob --remode --recount`` (Random Erasing), ``--mixup --cutmix --mixup-prob --mixup-switch-prob
--mixup-mode`` (timm's Mixup: the ``cutmix_mixup`` method) and ``--smoothing``. ``--preset NAME`` sets every flag
of a published ImageNet run (``--preset list`` lists them, docs/recipes.md gives the papers' tables); flags after
it override it. Every evaluation reports top-1 and top-5.

Under ``torchrun`` the rank and world size become the loader's ``shard_id`` / ``num_shards`` (every sample
once per epoch across ranks), ``LOCAL_RANK`` the CUDA device (``device_id``), ``last_batch="drop"`` keeps
the ranks in step, the model is wrapped in ``DistributedDataParallel`` (NCCL on GPUs, gloo on the CPU),
metrics are summed across ranks and only rank 0 prints and saves.

The step never waits for the device: the loss is accumulated on the device and read every
``--log-every`` steps. Soft-target cross entropy, so CutMix-style label mixing and label smoothing come
for free; pad rows (``meta["valid"] == 0``) are masked out of loss and metrics.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torchvision

from kernels.labels import soft_cross_entropy
from pipelines import OcclusionLoader, SaliencyTap
from pipelines.data.demo_data import ensure_demo_data
from pipelines.methods import METHODS, REGISTRY, get_method
from pipelines.saliency import EarlyHead, SaliencyStep, parse_saliency
from pipelines.tools.occlusion_sweep import plot_sweep, run_sweep

#: The ImageNet recipe (Goyal et al. 2017; torchvision references/classification) and the demo's.
RECIPES = {
    "imagenet": dict(arch="resnet50", batch_size=32, base_lr=0.1, warmup_epochs=5.0, epochs=None),
    "demo": dict(arch="resnet18", batch_size=32, base_lr=0.4, warmup_epochs=0.3, epochs=2),
}
#: Fong & Vedaldi 2019's stepped schedule: 100 epochs, lr x0.1 at these epochs.
STEP_MILESTONES = (30, 60, 90)
CHECKPOINT = "checkpoint.pt"
#: the method when neither --method nor timm's --reprob / --mixup / --cutmix says one
DEFAULT_METHOD = "cutout"

# One preset per paper table: every flag of a published ImageNet run, as its paper (and where the paper is silent,
# its reference code) sets it. ``source`` says where each value comes from; docs/recipes.md is the table for users
# and tests/test_presets.py checks the resolved arguments against the papers' values. ``processes``: the run's
# world size, so that the global batch is the papers' 256 (``--batch-size`` is per process; lr scales with
# --base-lr). The model-saliency presets take the map in the same step (``--feedback step``), under torchrun too.
# The PyTorch ImageNet ResNet-50 SGD the papers below train with: 8 x 32 = 256 images, lr 0.1 per 256, momentum 0.9,
# wd 1e-4, x0.1 steps, no warm-up, no label smoothing.
_SGD_256 = ["--arch", "resnet50", "--gamma", "0.1", "--batch-size", "32", "--base-lr", "0.1", "--momentum", "0.9",
            "--weight-decay", "1e-4", "--warmup-epochs", "0", "--smoothing", "0"]
_CLOVAAI = [*_SGD_256, "--epochs", "300", "--decay-every", "75", "--nesterov", "--wd-all", "--color-jitter", "0.4",
            "--lighting", "0.1"]
PRESETS = {
    "fong_vedaldi_normgrad": dict(
        paper="Fong & Vedaldi 2019, Occlusions for Effective Data Augmentation in Image Classification",
        arxiv="1910.10651", table="ResNet-50 on ImageNet, joint training with saliency (NormGrad) occlusion",
        top1=None,
        source="S=56, tau=16, two copies (clean + occluded, Figure 1), NormGrad (their Eq. 1); 100 epochs x0.1 every "
               "30, SGD 0.9, wd 1e-4, batch 256 (the PyTorch ImageNet recipe the paper trains with)",
        argv=[*_SGD_256, "--method", "saliency_occlusion:size=56,stride=1,jitter=16", "--copies", "2", "--copy-mode",
              "joint", "--p-keep-image", "1.0,0.0", "--saliency", "normgrad:maxpool", "--epochs", "100",
              "--milestones", "30,60,90"],
        processes=8),
    "cutmix_resnet50": dict(
        paper="Yun et al. 2019, CutMix", arxiv="1905.04899", table="Table 3 (ResNet-50, ImageNet)", top1=78.60,
        source="section 4.1.1: 300 epochs, lr 0.1 x0.1 at 75/150/225, batch 256, alpha=1; clovaai/CutMix-PyTorch "
               "README and train.py: cutmix_prob 1.0, one box per batch, Nesterov SGD with weight decay on every "
               "parameter, ColorJitter 0.4 + Lighting 0.1",
        argv=[*_CLOVAAI, "--method", "cutmix:alpha=1.0,p=1.0,mode=batch"], processes=8),
    "saliencymix_resnet50": dict(
        paper="Uddin et al. 2021, SaliencyMix", arxiv="2006.01791", table="ImageNet table (ResNet-50)", top1=78.74,
        source="the CutMix ImageNet setting (300 epochs, x0.1 at 75/150/225, batch 256, beta=1); the official "
               "SaliencyMix-ImageNet/train.py (clovaai's loop and pipeline): one box per batch from the first "
               "permuted image's OpenCV saliency of the normalised float image",
        argv=[*_CLOVAAI, "--method", "saliencymix:alpha=1.0,p=1.0,mode=batch,saliency_input=official"], processes=8),
    "keepcutmix_resnet50": dict(
        paper="Gong et al. 2021, KeepAugment", arxiv="2011.11778", table="Table 6 (KeepCutMix, ResNet-50)", top1=79.0,
        source="Table 6 compares with CutMix's 78.6 under CutMix's setting; tau=0.6; saliency = the trained "
               "model's input gradient (their section 3)",
        argv=[*_CLOVAAI, "--method", "keep_cutmix:alpha=1.0,p=1.0,tau=0.6", "--saliency", "input_grad"],
        processes=8),
    "keepautoaugment_resnet50": dict(
        paper="Gong et al. 2021, KeepAugment", arxiv="2011.11778", table="ImageNet table (KeepAutoAugment, ResNet-50)",
        top1=78.0,
        source="AutoAugment's ImageNet ResNet-50 setting (Cubuk et al. 2019, arXiv 1805.09501: 270 epochs, x0.1 at "
               "90/180/240, the AutoAugment ImageNet policy); tau=0.6, the model's input gradient",
        argv=[*_SGD_256, "--method", "keep_paste:policy=auto_augment,tau=0.6,p=1.0", "--saliency", "input_grad",
              "--epochs", "270", "--milestones", "90,180,240"], processes=8),
    "attentive_cutmix_resnet50": dict(
        paper="Walawalkar et al. 2020, Attentive CutMix", arxiv="2003.13048",
        table="ImageNet results (ResNet-50 classifier, ResNet-50 extractor)", top1=None,
        source="section 2: a pretrained ResNet-50's 7 x 7 final feature map, the top 6 cells kept; the training "
               "schedule is CutMix's, which the paper compares with; give the extractor's weights with --extractor",
        argv=[*_CLOVAAI, "--method", "attentive_cutmix:arch=resnet50,top_k=6,p=1.0"], processes=8),
    "timm_a1_augmentation": dict(
        paper="Wightman, Touvron & Jegou 2021, ResNet strikes back (procedure A1)", arxiv="2110.00476",
        table="Table 1 (A1's augmentation column)", top1=80.4,
        source="Table 1: RandAugment 7/0.5 (rand-m7-mstd0.5-inc1), Mixup alpha 0.2, CutMix alpha 1.0, no random "
               "erasing, no label smoothing (A1 trains with BCE), 600 epochs cosine with 5 warm-up epochs; the "
               "optimizer (LAMB, lr 5e-3, wd 0.01), the BCE loss and repeated augmentation are not this script's",
        argv=["--arch", "resnet50", "--auto-augment", "rand-m7-mstd0.5-inc1", "--mixup", "0.2", "--cutmix", "1.0",
              "--mixup-prob", "1.0", "--mixup-switch-prob", "0.5", "--mixup-mode", "batch", "--reprob", "0",
              "--smoothing", "0", "--epochs", "600", "--schedule", "cosine", "--warmup-epochs", "5"], processes=8),
}


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--preset" in argv[:-1]:  # the preset's flags first: flags given after them override them
        name = argv[argv.index("--preset") + 1]
        if name == "list":
            print_presets()
            raise SystemExit(0)
        if name not in PRESETS:
            raise SystemExit(f"--preset {name!r}: unknown preset; `--preset list` lists {', '.join(PRESETS)}")
        argv = PRESETS[name]["argv"] + argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=None, help="every flag of a paper's ImageNet run (`--preset list`)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="folder with train/ and val/ ImageFolder splits (ImageNet recipe)")
    src.add_argument("--demo", action="store_true", help="generate (once) and use the built-in demo data")
    p.add_argument("--arch", default=None, help="torchvision model name (resnet50 with --data, resnet18 with --demo)")
    p.add_argument("--method", default=None,
                   help=f"one of {', '.join(METHODS)}, with options as name:key=value,... "
                        f"(e.g. cutmix:alpha=1.0,p=0.5; attentive_cutmix:checkpoint=PATH, or attentive_cutmix with "
                        f"--saliency attention:layer4); default {DEFAULT_METHOD}")
    p.add_argument("--extractor", type=Path, default=None,
                   help="attentive_cutmix's frozen feature extractor (a local torchvision checkpoint): its checkpoint=")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--copy-mode", default="joint", choices=("joint", "batch_aug"))
    p.add_argument("--p-keep-image", type=_probabilities, default=0.0,
                   help="one probability, or one per copy (Fong & Vedaldi joint training: 1.0,0.0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="default: 90 (cosine) or 100 (step) with --data, 2 with --demo")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per process (32; the global batch is this x the world size)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: base-lr x global batch / 256)")
    p.add_argument("--base-lr", type=float, default=None, help="lr per 256 images (0.1 with --data, 0.4 with --demo)")
    p.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up (5 with --data, 0.3 with --demo)")
    p.add_argument("--schedule", default=None, choices=("cosine", "step"),
                   help="cosine (90 epochs; the default) or step (100 epochs, x0.1 at 30/60/90: Fong & Vedaldi's; "
                        "--milestones / --decay-every imply it)")
    p.add_argument("--milestones", type=_ints, default=None, help="step schedule: epochs where lr is x --gamma")
    p.add_argument("--decay-every", type=int, default=None, help="step schedule: x --gamma every N epochs")
    p.add_argument("--gamma", type=float, default=0.1, help="the step schedule's factor")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=False,
                   help="Nesterov momentum (clovaai's CutMix and SaliencyMix code)")
    p.add_argument("--weight-decay", "--wd", type=float, default=1e-4,
                   help="on conv/linear weights only, not BN or biases (with --wd-all: on every parameter)")
    p.add_argument("--wd-all", action=argparse.BooleanOptionalAction, default=False,
                   help="weight decay on every parameter, BN and biases included (torch.optim.SGD's weight_decay, as "
                        "the papers' reference codes)")
    p.add_argument("--label-smoothing", "--smoothing", type=float, default=0.0, help="timm's --smoothing")
    p.add_argument("--color-jitter", type=float, default=0.0,
                   help="clovaai's ColorJitter strength (brightness, contrast, saturation; 0.4 in CutMix / SaliencyMix): "
                        "random order, no clamping, no hue -- timm's --color-jitter is torchvision's, clamped")
    p.add_argument("--lighting", type=float, default=0.0, help="clovaai's PCA Lighting alphastd (0.1)")
    p.add_argument("--auto-augment", "--aa", default=None,
                   help="rand_augment, auto_augment, or a timm string (rand-m9-mstd0.5-inc1, original): "
                        "pipelines.loader.policy says what maps exactly")
    p.add_argument("--reprob", type=float, default=0.0, help="timm's Random Erasing probability (method random_erasing)")
    p.add_argument("--remode", default="pixel", choices=("const", "rand", "pixel"), help="timm's Random Erasing fill")
    p.add_argument("--recount", type=int, default=1, help="timm's Random Erasing max count")
    p.add_argument("--mixup", type=float, default=0.0, help="timm's Mixup alpha (method cutmix_mixup)")
    p.add_argument("--cutmix", type=float, default=0.0, help="timm's CutMix alpha (method cutmix_mixup)")
    p.add_argument("--mixup-prob", type=float, default=1.0, help="timm's probability of mixing a batch / pair / row")
    p.add_argument("--mixup-switch-prob", type=float, default=0.5, help="timm's probability of CutMix when both are on")
    p.add_argument("--mixup-mode", default="batch", choices=("batch", "pair", "elem"), help="timm's Mixup mode")
    p.add_argument("--amp", action="store_true", help="autocast: bfloat16 (default) or --amp-dtype float16 + GradScaler")
    p.add_argument("--amp-dtype", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC model and inputs (default: on a GPU)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--workers", type=int, default=None,
                   help="DALI threads per process (default: the node's cores / its processes, LOCAL_WORLD_SIZE)")
    p.add_argument("--reader-workers", type=int, default=None,
                   help="reader processes per loader (default: half the process's cores, 1 to 8; pipelines.Runtime)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50, help="steps between loss read-outs (the only host syncs)")
    p.add_argument("--log-ids", type=Path, default=None,
                   help="write every served (epoch, sample_id) of this rank to FILE.rank<k>.json (checks shards)")
    p.add_argument("--save", type=Path, default=None, help="checkpoint folder: written after every epoch")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (0: epochs only)")
    p.add_argument("--resume", type=Path, default=None, help="checkpoint folder (or file) to resume from exactly")
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop (after checkpointing) once this many steps are done in total (0: never)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms (the CPU resume check; slower on a GPU)")
    p.add_argument("--evaluate", type=Path, default=None, help="evaluate this checkpoint instead of training")
    p.add_argument("--occlusion-sweep", action="store_true",
                   help="with --evaluate: top-1 / top-5 under CutMix's centre / boundary occlusion (hole 0..224) and "
                        "Hide-and-Seek grids and Cutout squares (pipelines.tools.occlusion_sweep)")
    p.add_argument("--sweep-out", type=Path, default=None,
                   help="sweep JSON path (default: occlusion_sweep.json beside the checkpoint); the PNG goes beside it")
    p.add_argument("--saliency", default="image",
                   help="saliency of a saliency-guided method: image (the graph's OpenCV map), or the model's: "
                        "normgrad[:LAYER[:label|loss]] (default maxpool and the label's logit, Fong & Vedaldi's "
                        "Table 5; :loss with joint copies is the free joint step), input_grad[:SCALE], "
                        "early_head[:AFTER], attention[:LAYER]")
    p.add_argument("--feedback", default="step", choices=("step", "bank"),
                   help="how the model's map reaches the method: step (this very batch, pipelines.saliency.step."
                        "SaliencyStep) or bank (hooks on the normal step push it into the loader's saliency bank; "
                        "it steers the sample's next visit in the graph: no extra pass, any copies, torchrun)")
    p.add_argument("--bank", type=Path, default=None,
                   help="saliency bank file with --feedback bank (default: saliency_bank.bin in --save, else a "
                        "temporary file); the ranks of a node share it")
    p.add_argument("--fresh", action="store_true",
                   help="with --saliency normgrad and joint copies: take the map from an extra pass and train on "
                        "one 2B forward, instead of the free joint step (BatchNorm over 2B rows, not B per half)")
    args = p.parse_args(argv)
    if args.data is None and not args.demo and args.evaluate is None:
        p.error("one of --data or --demo is required")
    try:
        args.method = resolve_method(args)
    except ValueError as exc:
        p.error(str(exc))
    if args.milestones is not None and args.decay_every is not None:
        p.error("give --milestones or --decay-every, not both")
    if args.schedule == "cosine" and (args.milestones is not None or args.decay_every is not None):
        p.error("--milestones / --decay-every make a step schedule; drop --schedule cosine")
    if args.schedule is None:
        args.schedule = "step" if args.milestones is not None or args.decay_every is not None else "cosine"
    if args.occlusion_sweep and args.evaluate is None:
        p.error("--occlusion-sweep needs --evaluate CKPT")
    recipe = RECIPES["imagenet" if args.data is not None else "demo"]
    for key in ("arch", "batch_size", "base_lr", "warmup_epochs"):
        if getattr(args, key) is None:
            setattr(args, key, recipe[key])
    if args.epochs is None:
        args.epochs = recipe["epochs"] or (100 if args.schedule == "step" else 90)
    if args.schedule == "step" and args.milestones is None:
        args.milestones = (tuple(range(args.decay_every, args.epochs, args.decay_every)) if args.decay_every
                           else STEP_MILESTONES)
    if args.decay_every is not None and args.decay_every < 1:
        p.error(f"--decay-every must be >= 1, got {args.decay_every}")
    if args.color_jitter or args.lighting:
        args.color = {"jitter": args.color_jitter, "lighting": args.lighting}
    else:
        args.color = None
    for name in ("epochs", "batch_size", "image_size", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("save_every", "stop_after"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.warmup_epochs < 0:
        p.error(f"--warmup-epochs must be >= 0, got {args.warmup_epochs}")
    if args.feedback == "bank" and args.saliency.partition(":")[0] not in SaliencyTap.KINDS:
        p.error(f"--feedback bank takes the maps the training step already has: --saliency normgrad:LAYER, "
                f"attention:LAYER or input_grad, got {args.saliency!r}")
    if args.feedback == "bank" and args.fresh:
        p.error("--fresh is a --feedback step option")
    return args


def resolve_method(args):
    """The loader's method from ``--method`` or timm's flags (``--reprob`` -> ``random_erasing``, ``--mixup`` /
    ``--cutmix`` -> ``cutmix_mixup``: timm's ``Mixup``), one of them; ``--extractor`` completes
    ``attentive_cutmix``'s ``checkpoint``. With a model's ``--saliency`` the method takes its map from the model
    (``saliency="model"``; ``--feedback bank`` turns it into the bank once the bank's path is known). The loader runs one method: timm's Random Erasing together with its Mixup
    is refused rather than silently dropped."""
    timm = []
    if args.reprob > 0:
        timm.append(f"random_erasing:p={args.reprob},mode={args.remode},max_count={args.recount}")
    if args.mixup > 0 or args.cutmix > 0:
        switch = args.mixup_switch_prob if args.mixup > 0 and args.cutmix > 0 else float(args.cutmix > 0)
        timm.append(f"cutmix_mixup:mixup_alpha={args.mixup or 1.0},cutmix_alpha={args.cutmix or 1.0},"
                    f"switch_prob={switch},p={args.mixup_prob},mode={args.mixup_mode}")
    if len(timm) > 1:
        raise ValueError("--reprob together with --mixup / --cutmix: the loader runs one method per copy; give one")
    if timm and args.method is not None:
        raise ValueError(f"--method {args.method} and timm's --reprob / --mixup / --cutmix both name a method")
    text = timm[0] if timm else args.method or DEFAULT_METHOD
    if args.extractor is not None:
        text += f"{',' if ':' in text else ':'}checkpoint={args.extractor}"
    model_saliency = args.saliency != "image"
    cls = REGISTRY.get(text.partition(":")[0])
    if model_saliency and cls is not None and "saliency" not in cls.options():
        raise ValueError(f"--saliency needs a saliency-guided method ({guided_methods()}), got {text}")
    try:
        return get_method(text, saliency="model") if model_saliency else get_method(text)
    except ValueError as exc:
        hint = " (train_example.py: --extractor PATH)" if "attentive_cutmix needs checkpoint" in str(exc) else ""
        raise ValueError(f"{exc}{hint}") from None


def print_presets():
    print("presets (train_example.py --preset NAME; flags after it override it; docs/recipes.md):")
    for name, preset in PRESETS.items():
        top1 = f"{preset['top1']:.2f}% top-1" if preset["top1"] is not None else "top-1 not transcribed"
        run = "python" if preset["processes"] == 1 else f"torchrun --nproc_per_node {preset['processes']}"
        extra = " --extractor RESNET50.pth" if "attentive_cutmix" in " ".join(preset["argv"]) else ""
        print(f"\n  {name}: {preset['paper']} (arXiv {preset['arxiv']}), {preset['table']}, {top1}")
        print(f"    {run} train_example.py --data IMAGENET --preset {name}{extra}")
        print(f"    = {' '.join(preset['argv'])}")


def _ints(text):
    return tuple(int(v) for v in text.split(","))


def _probabilities(text):
    values = tuple(float(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


# ------------------------------------------------------------------------------------------------
# distributed set-up
# ------------------------------------------------------------------------------------------------
@dataclass
class Dist:
    """Where this process stands: rank, world size, its device; ``torchrun`` sets the environment."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` under ``DistributedDataParallel`` when the run has several processes, else itself."""
        if not self.enabled:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.local_rank] if self.device.type == "cuda" else None)


def setup_distributed(device_arg: str) -> Dist:
    """Read ``torchrun``'s RANK / WORLD_SIZE / LOCAL_RANK; NCCL on GPUs, gloo on the CPU. Without them
    (plain ``python``) one process on one device."""
    use_gpu = device_arg == "gpu" or (device_arg == "auto" and torch.cuda.is_available())
    if device_arg == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("--device gpu was given but CUDA is not available; use --device cpu or auto")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_gpu:
        torch.cuda.set_device(local_rank)  # the loader's device_id default and DDP's device
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if use_gpu else "gloo", rank=rank, world_size=world,
                                device_id=device if use_gpu else None)
    return Dist(rank, world, local_rank, device)


def all_sum(values, d: Dist) -> torch.Tensor:
    """Sum a float64 vector across ranks (metrics); on NCCL the tensor lives on the GPU."""
    t = torch.as_tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    if d.enabled:
        dist.all_reduce(t)
    return t.cpu()


def say(d: Dist, *msg):
    if d.main:
        print(*msg, flush=True)


# ------------------------------------------------------------------------------------------------
# model, optimiser, schedule
# ------------------------------------------------------------------------------------------------
def build_model(arch: str, num_classes: int, device, channels_last: bool) -> torch.nn.Module:
    model = getattr(torchvision.models, arch)(num_classes=num_classes).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def build_optimizer(model: torch.nn.Module, lr: float, momentum: float, weight_decay: float, nesterov: bool = False,
                    wd_all: bool = False):
    """SGD; weight decay only on conv/linear weights (Goyal et al.: none on BN's gamma/beta and biases --
    every parameter of ndim <= 1), or with ``wd_all`` on every parameter (``torch.optim.SGD(model.parameters(),
    weight_decay=...)``, clovaai's CutMix and SaliencyMix code); ``nesterov`` as theirs."""
    decay = [p for p in model.parameters() if wd_all or p.ndim > 1]
    no_decay = [p for p in model.parameters() if not wd_all and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}] + (
        [{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def lr_factor(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: float, schedule: str,
              milestones=STEP_MILESTONES, gamma: float = 0.1) -> float:
    """Per-step multiplier of the peak lr: linear warm-up from ~0 over ``warmup_epochs``, then cosine to 0 at
    the end, or x ``gamma`` at each of ``milestones`` (epochs; clovaai's ``lr * 0.1 ** (epoch // 75)`` is
    ``milestones=(75, 150, 225)`` at 300 epochs)."""
    warm = int(round(warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    if schedule == "step":
        return gamma ** sum(step >= m * steps_per_epoch for m in milestones)
    total = max(epochs * steps_per_epoch - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, total) / total))


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
@dataclass
class Trainer:
    """Everything a step touches and a checkpoint holds."""

    args: argparse.Namespace
    d: Dist
    model: torch.nn.Module          # DDP-wrapped when distributed
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train: OcclusionLoader
    val: OcclusionLoader
    step: int = 0                   # optimiser steps done in total

    @property
    def module(self) -> torch.nn.Module:
        return getattr(self.model, "module", self.model)

    def autocast(self):
        return make_autocast(self.args, self.d.device)()

    def inputs(self, images):
        images = images.to(self.d.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.args.channels_last else images


def train_step(t: Trainer, batch, tap=None) -> torch.Tensor:
    """One optimiser step on one batch; returns the loss as a device tensor (no host sync).

    With ``tap`` (:class:`pipelines.saliency.extractors.SaliencyTap`, ``--feedback bank``) the model's map of the batch is
    read off this very forward / backward and pushed into the loader's saliency bank: one map per sample with
    joint copies (the first copy's rows, which hold the crop the copies share: the clean ones in Fong &
    Vedaldi's joint training), one per row with ``batch_aug``."""
    images = t.inputs(batch.images)
    with t.autocast():
        logits = t.model(images if tap is None else tap.watch(images))
    # non_blocking: a blocking host-to-device copy of the (CPU) mask would wait for the GPU every step
    valid = batch.meta["valid"].to(t.d.device, non_blocking=True)
    loss = soft_cross_entropy(logits, batch.targets.to(t.d.device, non_blocking=True), valid)
    t.opt.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    if tap is not None:
        maps = tap.maps()
        t.train.feedback(batch, maps[:t.train.training_side().map_rows(maps.shape[0])])
    t.scaler.step(t.opt)
    t.scaler.update()
    t.sched.step()
    return loss.detach()


def train_one_epoch(t: Trainer, epoch: int, step_fn=train_step, ids_log: list | None = None) -> dict:
    """One epoch (or the rest of one, after a mid-epoch resume) of ``step_fn`` over the training loader.

    Returns ``{"loss", "images_per_s", "stopped", "bank_share", "bank_age"}``; the loss is summed on the device
    and read every ``--log-every`` steps and at the end (summed across ranks). With a saliency bank,
    ``bank_share`` is the share of valid rows whose map came from the bank and ``bank_age`` its mean age in
    epochs (``meta["map_source"]``, ``meta["map_age"]``)."""
    a = t.args
    t.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=t.d.device)
    steps = seen = 0
    bank_rows = bank_age = rows = 0
    start = time.perf_counter()
    for batch in t.train:
        loss = step_fn(t, batch)
        loss_sum += loss.double()
        steps += 1
        t.step += 1
        seen += batch.images.shape[0]
        if t.train.bank is not None:
            valid = batch.meta["valid"].bool()
            from_bank = batch.meta["map_source"][valid] > 0
            rows += int(valid.sum())
            bank_rows += int(from_bank.sum())
            bank_age += int(batch.meta["map_age"][valid][from_bank].sum())
        if ids_log is not None:
            valid = batch.meta["valid"].bool() & (batch.meta["copy"] == 0)
            ids_log.append([epoch, batch.meta["sample_id"][valid].tolist()])
        if t.step % a.log_every == 0:
            say(t.d, f"epoch {epoch} step {t.step}: loss {float(loss):.4f} lr {t.sched.get_last_lr()[0]:.4g}")
        if a.save and a.save_every and t.step % a.save_every == 0:
            save_checkpoint(t, a.save)
        if a.stop_after and t.step >= a.stop_after:
            break
    if t.d.device.type == "cuda":
        torch.cuda.synchronize(t.d.device)
    elapsed = time.perf_counter() - start
    total = all_sum([float(loss_sum), steps, seen, bank_rows, bank_age, rows], t.d)
    return {"loss": float(total[0] / max(total[1], 1)), "images_per_s": float(total[2]) / max(elapsed, 1e-9),
            "stopped": bool(a.stop_after and t.step >= a.stop_after),
            "bank_share": float(total[3] / max(total[5], 1)), "bank_age": float(total[4] / max(total[3], 1))}


# -- the model's saliency (issues 11, 21): kept apart from the plain step above ---------------------------
def guided_methods() -> str:
    """The methods that take a saliency source (``--saliency`` needs one of them)."""
    return ", ".join(n for n, c in REGISTRY.items() if "saliency" in c.options())


def model_saliency_method(method, source: str = "model", bank=None):
    """The same method taking its map from the model: this step's (``saliency="model"``) or the bank's
    (``saliency="bank"``, kept in the file ``bank``)."""
    if "saliency" not in method.options():
        raise SystemExit(f"--saliency needs a saliency-guided method ({guided_methods()}), got {method}")
    return dataclasses.replace(method, saliency=source, bank=bank)


def make_autocast(args, device):
    """``--amp``'s autocast (bf16, or float16 with ``--amp-dtype``) as a context factory."""
    dtype = torch.bfloat16 if args.amp_dtype == "bfloat16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype, enabled=args.amp)


def make_saliency_step(model, train, args, device, lr, d: Dist | None = None, scaler=None):
    """The model (DDP-wrapped under ``torchrun``), the optimizer (with an early head's parameters) and the step of
    ``--saliency``: Fong & Vedaldi's joint step for ``normgrad`` with ``--copies 2 --p-keep-image 1.0,0.0``
    (free with ``:loss``: the clean copy's own backward gives the map), else the fresh path (an extra pass for
    the map). The extractor is built on the bare model; an early head becomes a submodule of it before the
    model is wrapped, so DDP reduces its gradients with the model's in the step's one all-reduce."""
    saliency = parse_saliency(args.saliency, model, num_classes=train.num_classes)
    if isinstance(saliency, EarlyHead):
        model.add_module("early_head", saliency.to(device))  # trained beside the model, saved with it
    if d is not None:
        model = d.wrap(model)
    opt = build_optimizer(model, lr, args.momentum, args.weight_decay, args.nesterov, args.wd_all)
    step = SaliencyStep(model, opt, train, saliency, free=False if args.fresh else None,
                        prepare=lambda x: x.to(device, non_blocking=True).contiguous(
                            memory_format=torch.channels_last) if args.channels_last else x.to(device),
                        autocast=make_autocast(args, device), scaler=scaler)
    kind = "free joint step" if step.free else "joint step" if step.joint else "fresh maps (extra pass)"
    if d is None or d.main:
        print(f"saliency {args.saliency}: {kind}", flush=True)
    return model, opt, step


def saliency_train_step(t, batch, step) -> torch.Tensor:
    """``train_step`` with the model's saliency of this very batch (``pipelines.saliency.step.SaliencyStep``
    occludes the batch on the training side and takes the optimizer step)."""
    loss, _ = step(batch)
    t.sched.step()
    return loss.detach()


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    """Per row and k, whether the label is among the ``k`` largest logits (clovaai's ``accuracy``: ``topk``, k
    capped at the number of classes): ``(N, len(ks))`` bool."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return torch.stack([hit[:, :k].any(1) for k in ks], 1)


@torch.no_grad()
def evaluate(model, loader, d: Dist, inputs=lambda x: x, autocast=None) -> dict:
    """``{"top1", "top5"}`` on ``loader`` (sharded across ranks with ``last_batch="pad"``: pad rows masked, counts
    summed)."""
    model.eval()
    correct = torch.zeros(2, dtype=torch.float64, device=d.device)
    total = torch.zeros((), dtype=torch.float64, device=d.device)
    for batch in loader:
        valid = batch.meta["valid"].bool().to(d.device)
        with autocast() if autocast else torch.autocast(d.device.type, enabled=False):
            logits = model(inputs(batch.images))
        correct += (topk_correct(logits.float(), batch.labels.to(d.device)) & valid[:, None]).sum(0)
        total += valid.sum()
    c1, c5, n = all_sum([*correct.tolist(), float(total)], d)
    return {"top1": float(c1 / max(n, 1.0)), "top5": float(c5 / max(n, 1.0))}


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def rng_state(device) -> dict:
    """The global generators' states as tensors and plain values, so a checkpoint loads with
    ``torch.load(weights_only=True)`` (NumPy's state is an array and a tuple: stored as a tensor and numbers)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(t: Trainer, folder: Path) -> None:
    """Rank 0 writes ``folder/checkpoint.pt`` atomically: model, optimiser, scheduler, scaler, step, and
    per rank the loader position and RNG states (gathered; each rank's loader is its own shard)."""
    per_rank = {"loader": t.train.state_dict(), "rng": rng_state(t.d.device)}
    if t.d.enabled:
        gathered = [None] * t.d.world
        dist.all_gather_object(gathered, per_rank)
    else:
        gathered = [per_rank]
    if not t.d.main:
        return
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = {"model": t.module.state_dict(), "optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(),
            "scaler": t.scaler.state_dict(), "step": t.step, "ranks": gathered, "world_size": t.d.world,
            "arch": t.args.arch, "num_classes": t.train.num_classes, "image_size": t.args.image_size,
            "classes": t.train.classes, "args": {k: str(v) for k, v in vars(t.args).items()}}
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, folder / CHECKPOINT)


def checkpoint_path(path: Path) -> Path:
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def read_checkpoint(path: Path) -> dict:
    """A checkpoint file as :func:`save_checkpoint` wrote it, unpickled with ``weights_only=True``: tensors, numbers,
    strings and containers only, so a checkpoint from elsewhere cannot run code when it is read (a pickle may call
    any function while it loads; PyTorch's weights-only unpickler refuses every global it does not allow)."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise SystemExit(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise SystemExit(f"{path} is not a checkpoint of this script: it holds objects other than tensors, numbers "
                         f"and strings ({reason}). It was not loaded (unpickling it could run code); resume or "
                         f"evaluate only checkpoints written by train_example.py --save.") from None


def load_checkpoint(t: Trainer, path: Path) -> None:
    """Restore everything :func:`save_checkpoint` wrote; this rank gets its own loader position and RNGs."""
    ckpt = read_checkpoint(path)
    if ckpt["world_size"] != t.d.world:
        raise ValueError(f"--resume {path}: saved with world size {ckpt['world_size']}, running with {t.d.world}; "
                         "exact resume needs the same number of processes (the shards differ otherwise)")
    t.module.load_state_dict(ckpt["model"])
    t.opt.load_state_dict(ckpt["optimizer"])
    t.sched.load_state_dict(ckpt["scheduler"])
    t.scaler.load_state_dict(ckpt["scaler"])
    t.step = int(ckpt["step"])
    mine = ckpt["ranks"][t.d.rank]
    t.train.load_state_dict(mine["loader"])
    set_rng_state(mine["rng"], t.d.device)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def data_root(args) -> Path:
    if args.demo or args.data is None:
        return ensure_demo_data()
    return args.data


def bank_path(args, d: Dist) -> tuple[Path | None, Path | None]:
    """The bank's path and the temporary folder to remove once every rank has opened it: ``--bank``, else
    ``saliency_bank.bin`` in ``--save``, else a temporary bank. One process leaves that to the loader (path
    ``None``: its file is unlinked as soon as it is open, so nothing is left behind however the run ends);
    ranks share one that rank 0 names in a temporary folder, removed by :func:`make_loaders` once every rank
    has it open (each rank's reader workers open it through their rank's descriptor)."""
    if args.bank is not None:
        return args.bank, None
    if args.save is not None:
        return args.save / "saliency_bank.bin", None
    if not d.enabled:
        return None, None
    path = [str(Path(tempfile.mkdtemp(prefix="occlusion-bank-")) / "bank.bin") if d.main else None]
    dist.broadcast_object_list(path, src=0)
    return Path(path[0]), Path(path[0]).parent


def make_loaders(args, d: Dist, root: Path, temp_bank: Path | None = None):
    """The train and val loaders; ``temp_bank``: the shared temporary bank's folder, removed once every rank's
    train loader has the bank open (or failed to open it)."""
    try:
        return _make_loaders(args, d, root)
    finally:
        if temp_bank is not None:
            dist.barrier()
            if d.main:
                shutil.rmtree(temp_bank, ignore_errors=True)


def _make_loaders(args, d: Dist, root: Path):
    # Runtime's defaults divide the node's cores by its ranks (LOCAL_WORLD_SIZE), not by the world size
    common = dict(output_size=args.image_size, device="gpu" if d.device.type == "cuda" else "cpu",
                  device_id=d.device.index if d.device.type == "cuda" else None, seed=args.seed,
                  runtime=dict(num_threads=args.workers, py_workers=args.reader_workers), shard_id=d.rank,
                  num_shards=d.world)
    train = OcclusionLoader(root / "train", args.batch_size, args.method, copies=args.copies,
                            copy_mode=args.copy_mode, p_keep_image=args.p_keep_image,
                            auto_augment=args.auto_augment, color=args.color,
                            label_smoothing=args.label_smoothing, last_batch="drop", **common)
    for note in getattr(train.cfg.policy, "notes", ()):
        say(d, f"--auto-augment {args.auto_augment}: {note}")
    val = OcclusionLoader(root / "val", args.batch_size, train=False, num_classes=train.num_classes,
                          last_batch="pad", **common)
    return train, val


def main(argv=None):
    args = parse_args(argv)
    d = setup_distributed(args.device)
    try:
        if args.evaluate is not None:
            return evaluate_checkpoint(args, d)
        return fit(args, d)
    finally:
        if d.enabled:
            dist.destroy_process_group()


def fit(args, d: Dist) -> float:
    if args.channels_last is None:
        args.channels_last = d.device.type == "cuda"
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif d.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    root = data_root(args)
    same_step = args.saliency != "image" and args.feedback == "step"
    temp_bank = None
    if args.saliency != "image" and args.feedback == "bank":
        path, temp_bank = bank_path(args, d)
        args.method = model_saliency_method(args.method, "bank", path)
    train, val = make_loaders(args, d, root, temp_bank)
    model = build_model(args.arch, train.num_classes, d.device, args.channels_last)
    global_batch = args.batch_size * d.world
    lr = args.lr if args.lr is not None else args.base_lr * global_batch / 256
    scaler = torch.amp.GradScaler(d.device.type, enabled=args.amp and args.amp_dtype == "float16")
    step_fn = train_step
    saliency_step = None
    if same_step:  # the model's map of this very batch: the joint step or the fresh path, DDP and AMP included
        model, opt, saliency_step = make_saliency_step(model, train, args, d.device, lr, d, scaler)
        step_fn = partial(saliency_train_step, step=saliency_step)
    else:
        model = d.wrap(model)
        opt = build_optimizer(model, lr, args.momentum, args.weight_decay, args.nesterov, args.wd_all)
    if args.feedback == "bank":
        step_fn = partial(train_step, tap=SaliencyTap.parse(args.saliency, getattr(model, "module", model)))
    steps = len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, args.epochs, args.warmup_epochs, args.schedule, args.milestones, args.gamma))
    t = Trainer(args, d, model, opt, sched, scaler, train, val)
    if args.resume is not None:
        load_checkpoint(t, args.resume)
    say(d, f"data {root}: {train.dataset_size} train / {val.dataset_size} val images, {train.num_classes} "
           f"classes; {args.arch} method={args.method} copies={args.copies} ({args.copy_mode}); {d.world} "
           f"process(es) on {d.device.type}, global batch {global_batch}, lr {lr:.4g}, {args.schedule} "
           f"{args.epochs} epochs" + (f" (x{args.gamma} at {','.join(map(str, args.milestones))})"
                                      if args.schedule == "step" else "")
           + f", {steps} steps/epoch" + (f"; resumed at step {t.step}" if args.resume else ""))
    ids_log = [] if args.log_ids is not None else None
    scores = {"top1": float("nan"), "top5": float("nan")}
    first = t.step // steps
    if args.resume is None:
        train.set_epoch(first)
    for epoch in range(first, args.epochs):
        if epoch != first:
            train.set_epoch(epoch)
        stats = train_one_epoch(t, epoch, step_fn=step_fn, ids_log=ids_log)
        if stats["stopped"] and t.step % steps:
            if args.save:
                save_checkpoint(t, args.save)
            say(d, f"stopped after step {t.step} (mid-epoch {epoch})")
            break
        scores = evaluate(t.model, val, d, t.inputs, t.autocast)
        bank = (f", maps from the bank {100 * stats['bank_share']:.0f}% of rows (mean age "
                f"{stats['bank_age']:.2f} epochs)" if train.bank is not None else "")
        if saliency_step is not None and saliency_step.unusable is not None:  # read once an epoch: no sync per step
            unusable = int(all_sum([float(saliency_step.unusable)], d)[0])
            bank += f", {unusable} rows left whole (their map carried no saliency)" if unusable else ""
            saliency_step.unusable = None
        say(d, f"epoch {epoch}: loss {stats['loss']:.4f}, train {stats['images_per_s']:.1f} images/s "
               f"(loader + model, all ranks), val top-1 {100 * scores['top1']:.1f}% top-5 "
               f"{100 * scores['top5']:.1f}%{bank}")
        if args.save:
            save_checkpoint(t, args.save)
        if stats["stopped"]:
            say(d, f"stopped after step {t.step} (end of epoch {epoch})")
            break
    if ids_log is not None:
        out = Path(f"{args.log_ids}.rank{d.rank}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        checksum = float(sum(p.detach().double().sum() for p in t.module.parameters()))
        out.write_text(json.dumps({"rank": d.rank, "world": d.world, "ids": ids_log, **scores,
                                   "param_checksum": checksum}))
    train.close()
    val.close()
    return scores["top1"]


def evaluate_checkpoint(args, d: Dist):
    """``--evaluate CKPT``: clean top-1 on the validation split, and with ``--occlusion-sweep`` the sweep
    of :mod:`pipelines.tools.occlusion_sweep` (JSON + PNG). One process (rank 0 does the work)."""
    path = checkpoint_path(args.evaluate)
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["arch"], ckpt["num_classes"], d.device, False)
    # an early head (--saliency early_head) is trained beside the model and saved with it; evaluation needs none
    model.load_state_dict({k: v for k, v in ckpt["model"].items() if not k.startswith("early_head.")})
    size = ckpt["image_size"]
    root = data_root(args)
    if not d.main:
        return None
    val = OcclusionLoader(root / "val", args.batch_size, train=False, num_classes=ckpt["num_classes"],
                          output_size=size, device="gpu" if d.device.type == "cuda" else "cpu",
                          device_id=d.device.index, seed=args.seed, last_batch="pad",
                          runtime=dict(num_threads=args.workers, py_workers=args.reader_workers))
    if not args.occlusion_sweep:
        scores = evaluate(model, val, d)
        print(f"{path}: val top-1 {100 * scores['top1']:.2f}% top-5 {100 * scores['top5']:.2f}%", flush=True)
        return scores["top1"]
    result = run_sweep(model, val, d.device, size, seed=args.seed)
    result["checkpoint"] = str(path)
    out = args.sweep_out or path.parent / "occlusion_sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    png = plot_sweep(result, out.with_suffix(".png"))
    for row in result["conditions"]:
        print(f"{row['family']:>14} {row['setting']:>16}: occluded {100 * row['occluded_share']:5.1f}%  "
              f"top-1 {100 * row['top1']:5.1f}%  top-5 {100 * row['top5']:5.1f}%", flush=True)
    print(f"wrote {out} and {png}", flush=True)
    return result


if __name__ == "__main__":
    main()
