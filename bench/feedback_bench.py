"""Cost of the model's saliency in the training step (issue 11), CPU, ResNet-18 on the demo data.

Training-step time (forward + backward + optimizer step, plus the training-side search and occlusion of
``loader.occlude``), batches fetched from the loaders beforehand, so the loader is not timed. The
graph-side image saliency (OpenCV's map + search in the DALI graph) is therefore *not* in the
image-saliency baselines: a model-saliency loader skips that work, so the ratios below are conservative.
Ratios use the process's CPU time (``--threads 1`` by default), which on a shared machine measures the
step's work where the wall clock follows the other tenants' load; wall times are stored too.
Configurations, timed round-robin (load drift hits them alike), median of ``--repeats`` after one warm-up:

* ``joint_image``: Fong & Vedaldi joint training, ``copies=2, joint, p_keep_image=(1.0, 0.0)``,
  ``saliency_occlusion`` with image saliency: one step on the 2B batch;
* ``joint_free``: the same with ``saliency="model"`` and the free joint step (NormGrad of the clean copy's
  loss at ``layer1.0.conv1`` from its own backward; :class:`pipelines.saliency.extractors.SaliencyStep`);
* ``plain``: ``keep_cutout``, one copy, image saliency: one step on B rows;
* ``input_grad``, ``input_grad_half``, ``early_head``: ``keep_cutout`` with ``saliency="model"`` and a fresh
  KeepAugment map (input gradient at full / half resolution, early head after ``layer1``).

Targets (issue 11): joint_free / joint_image <= 1.05; input_grad / plain <= 2.0 and input_grad_half /
plain <= 1.35 (KeepAugment's Table 3: 2.0x and 1.26x).

    PYTHONPATH=. python -m bench.feedback_bench [--batch 32] [--size 128] [--repeats 5]
        [--out results/feedback_bench.json]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torchvision

from bench.common import conditions, summary, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU time = the work)")
    ap.add_argument("--out", default="results/feedback_bench.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pipelines import OcclusionLoader
    from pipelines.data.demo_data import ensure_demo_data
    from kernels.labels import soft_cross_entropy
    from pipelines import EarlyHead, InputGradient, NormGrad, SaliencyStep

    root = ensure_demo_data() / "train"
    common = dict(output_size=args.size, device="cpu", seed=0, runtime=dict(num_threads=2, py_workers=1, verify="none"))
    joint = dict(copies=2, copy_mode="joint", p_keep_image=(1.0, 0.0))
    loaders = {
        "joint_image": OcclusionLoader(root, args.batch, "saliency_occlusion", **joint, **common),
        "joint_model": OcclusionLoader(root, args.batch, "saliency_occlusion", saliency="model", **joint, **common),
        "plain": OcclusionLoader(root, args.batch, "keep_cutout", **common),
        "keep_model": OcclusionLoader(root, args.batch, "keep_cutout", saliency="model", **common),
    }
    n_batches = args.repeats + 1
    batches = {}
    for name, loader in loaders.items():
        it = iter(loader)
        batches[name] = [next(it) for _ in range(n_batches)]
        loader.close()
    torch.manual_seed(0)
    base = torchvision.models.resnet18(weights=None, num_classes=loaders["plain"].num_classes).train()

    def plain_step(model, opt):
        def step(batch):
            opt.zero_grad(set_to_none=True)
            loss = soft_cross_entropy(model(batch.images), batch.targets).mean()
            loss.backward()
            opt.step()
        return step

    def make(name):
        model = copy.deepcopy(base)
        params = list(model.parameters())
        if name in ("joint_image", "plain"):
            return plain_step(model, torch.optim.SGD(params, lr=0.01, momentum=0.9)), name
        if name == "joint_free":
            opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
            return SaliencyStep(model, opt, loaders["joint_model"], NormGrad(model, "layer1.0.conv1", "loss")), \
                "joint_model"
        if name == "early_head":
            sal = EarlyHead(model, "layer1", num_classes=loaders["plain"].num_classes)
            params += list(sal.parameters())
        else:
            sal = InputGradient(model, 1.0 if name == "input_grad" else 0.5)
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        return SaliencyStep(model, opt, loaders["keep_model"], sal), "keep_model"

    names = ["joint_image", "joint_free", "plain", "input_grad", "input_grad_half", "early_head"]
    steps = {name: make(name) for name in names}
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for i in range(n_batches):
        for name in names:
            step, source = steps[name]
            t, c = time.perf_counter(), time.process_time()
            step(batches[source][i])
            dt, dc = time.perf_counter() - t, time.process_time() - c
            if i > 0:  # the first is the warm-up
                times[name].append(dt)
                cpu[name].append(dc)
        print(f"round {i}: " + ", ".join(f"{k} {v[-1]:.2f}s cpu" for k, v in cpu.items() if v), flush=True)
    # On a shared machine the wall clock follows the other tenants' load; the process's CPU time (all
    # its threads) is the work of the step, so the ratios use it; the wall times are stored beside.
    res = {name: summary(v) for name, v in cpu.items()}
    wall = {name: summary(v) for name, v in times.items()}
    med = {name: r["median"] for name, r in res.items()}
    ratios = {"joint_free / joint_image": med["joint_free"] / med["joint_image"],
              "input_grad / plain": med["input_grad"] / med["plain"],
              "input_grad_half / plain": med["input_grad_half"] / med["plain"],
              "early_head / plain": med["early_head"] / med["plain"]}
    targets = {"joint_free / joint_image": 1.05, "input_grad / plain": 2.0, "input_grad_half / plain": 1.35}
    payload = {"conditions": conditions(batch=args.batch, size=args.size, repeats=args.repeats,
                                        torch_threads=torch.get_num_threads(), model="resnet18"),
               "step_cpu_seconds": res, "step_wall_seconds": wall, "ratios_of_cpu_time": ratios,
               "wall_ratios": {"joint_free / joint_image": wall["joint_free"]["median"] / wall["joint_image"]["median"],
                               "input_grad / plain": wall["input_grad"]["median"] / wall["plain"]["median"],
                               "input_grad_half / plain": wall["input_grad_half"]["median"] / wall["plain"]["median"],
                               "early_head / plain": wall["early_head"]["median"] / wall["plain"]["median"]},
               "targets": targets}
    print(write_json(args.out, payload))
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}" + (f" (target <= {targets[k]})" if k in targets else ""))
    return payload


if __name__ == "__main__":
    main()
