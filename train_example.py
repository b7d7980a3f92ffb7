"""Train a torchvision ResNet on an ImageFolder tree with the occlusion loader.

    python train_example.py --demo                       # built-in demo data, CPU or GPU
    python train_example.py --data /imagenet --method cutout --copies 4 --copy-mode batch_aug
    python train_example.py --demo --method cutmix:alpha=1.0,p=0.5
    python train_example.py --demo --method saliency_occlusion --copies 2 --p-keep-image 1.0,0.0
    python train_example.py --demo --method saliency_occlusion --copies 2 --p-keep-image 1.0,0.0 \
        --saliency normgrad:layer1.0.conv1           # Fong & Vedaldi joint training, the model's NormGrad

Soft-target cross entropy (so CutMix-style label mixing and label smoothing come for free), SGD
with momentum and cosine decay, top-1 on the validation split after every epoch, images/s of the
training loop (loader + model) printed per epoch. Pad rows of ``last_batch="pad"`` are masked out.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from pipelines import OcclusionLoader
from pipelines.methods import METHODS, get_method


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="folder with train/ and val/ ImageFolder splits")
    src.add_argument("--demo", action="store_true", help="generate (once) and use the built-in demo data")
    p.add_argument("--arch", default="resnet18", help="torchvision model name (default resnet18)")
    p.add_argument("--method", default="cutout", type=_method,
                   help=f"one of {', '.join(METHODS)}, with options as name:key=value,... "
                        "(e.g. cutmix:alpha=1.0,p=0.5; attentive_cutmix:checkpoint=PATH)")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--copy-mode", default="joint", choices=("joint", "batch_aug"))
    p.add_argument("--p-keep-image", type=_probabilities, default=0.0,
                   help="one probability, or one per copy (Fong & Vedaldi joint training: 1.0,0.0)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    p.add_argument("--workers", type=int, default=None, help="DALI threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--saliency", default="image",
                   help="saliency of a saliency-guided method: image (the graph's OpenCV map), or the model's: "
                        "normgrad:LAYER, input_grad[:SCALE], early_head[:AFTER], attention[:LAYER]")
    p.add_argument("--fresh", action="store_true",
                   help="with --saliency normgrad and joint copies: take the map from an extra pass and train on "
                        "one 2B forward, instead of the free joint step (BatchNorm over 2B rows, not B per half)")
    return p.parse_args(argv)


def _method(text):
    try:
        return get_method(text)
    except ValueError as exc:  # argparse would replace the message with "invalid value"
        raise argparse.ArgumentTypeError(str(exc)) from None


def _probabilities(text):
    values = tuple(float(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


def soft_cross_entropy(logits, targets, valid):
    loss = -(targets * F.log_softmax(logits.float(), dim=1)).sum(1)
    valid = valid.to(loss.device, torch.float32)
    return (loss * valid).sum() / valid.sum().clamp_min(1.0)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.demo:
        from pipelines.demo_data import ensure_demo_data

        root = ensure_demo_data()
    else:
        root = args.data
    common = dict(output_size=args.image_size, device=args.device, seed=args.seed, num_threads=args.workers)
    if args.saliency != "image":
        args.method = model_saliency_method(args.method)
    train = OcclusionLoader(root / "train", args.batch_size, args.method, copies=args.copies,
                            copy_mode=args.copy_mode, p_keep_image=args.p_keep_image,
                            label_smoothing=args.label_smoothing, **common)
    val = OcclusionLoader(root / "val", args.batch_size, train=False, num_classes=train.num_classes, **common)
    device = torch.device("cuda" if train.device == "gpu" else "cpu")
    model = getattr(torchvision.models, args.arch)(num_classes=train.num_classes).to(device)
    model = model.to(memory_format=torch.channels_last)
    saliency_step = None
    if args.saliency != "image":
        model, opt, saliency_step = make_saliency_step(model, train, args, device)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * len(train),
                                                pct_start=0.2)
    print(f"data {root}: {train.dataset_size} train / {val.dataset_size} val images, {train.num_classes} classes; "
          f"method={args.method} copies={args.copies} ({args.copy_mode}) device={train.device}")
    for epoch in range(args.epochs):
        model.train()
        seen, start = 0, time.perf_counter()
        bar = tqdm(train, desc=f"epoch {epoch}", unit="batch", leave=False)
        for batch in bar:
            if saliency_step is not None:  # the model's saliency of this batch (pipelines.feedback)
                loss, batch = saliency_step(batch)
                sched.step()
                seen += batch.images.shape[0]
                bar.set_postfix(loss=f"{loss.item():.3f}")
                continue
            images = batch.images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            loss = soft_cross_entropy(model(images), batch.targets.to(device), batch.meta["valid"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += images.shape[0]
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - start)
        top1 = evaluate(model, val, device)
        print(f"epoch {epoch}: train {rate:.1f} images/s (loader + model), val top-1 {100 * top1:.1f}%", flush=True)
    return top1


# -- the model's saliency (issue 11): kept apart from the plain loop above ---------------------------
def model_saliency_method(method):
    """The same method taking its map from the model (``saliency="model"``)."""
    import dataclasses

    if "saliency" not in method.options():
        raise SystemExit(f"--saliency needs a saliency-guided method (saliency_occlusion, keep_cutout, keep_paste, "
                         f"keep_cutmix, saliencymix), got {method}")
    return dataclasses.replace(method, saliency="model")


def make_saliency_step(model, train, args, device):
    """The extractor of ``--saliency``, the optimizer (with an early head's parameters) and the step:
    Fong & Vedaldi's free joint step for ``normgrad`` with ``--copies 2 --p-keep-image 1.0,0.0``
    (the clean copy's own backward gives the map), else the fresh path (an extra pass for the map)."""
    from pipelines.feedback import EarlyHead, SaliencyStep, parse_saliency

    saliency = parse_saliency(args.saliency, model, num_classes=train.num_classes)
    params = list(model.parameters())
    if isinstance(saliency, EarlyHead):
        saliency = saliency.to(device)
        params += list(saliency.parameters())
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    step = SaliencyStep(model, opt, train, saliency, free=False if args.fresh else None,
                        prepare=lambda x: x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))
    print(f"saliency {args.saliency}: {'free joint step' if step.free else 'fresh maps (extra pass)'}")
    return model, opt, step


@torch.no_grad()
def evaluate(model, loader, device):
    model.eval()
    correct = total = 0
    for batch in loader:
        valid = batch.meta["valid"].bool().to(device)
        pred = model(batch.images.to(device).contiguous(memory_format=torch.channels_last)).argmax(1)
        correct += int(((pred == batch.labels.to(device)) & valid).sum())
        total += int(valid.sum())
    return correct / max(total, 1)


if __name__ == "__main__":
    main()
