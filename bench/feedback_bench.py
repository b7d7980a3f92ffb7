"""Cost of the model's saliency in the training step, the same-step paths under DDP (issues 11, 21): CPU, ``--ranks``
gloo processes (2), ResNet-18 on the demo data, each configuration with and without ``--amp`` (bf16 autocast).

Training-step time (forward + backward + the gradient all-reduce + optimizer step, plus the training-side search
and occlusion of ``loader.occlude``), batches fetched from each rank's sharded loaders beforehand, so the loader
is not timed. The graph-side image saliency (OpenCV's map + search in the DALI graph) is therefore *not* in the
image-saliency baselines: a model-saliency loader skips that work, so the ratios are conservative. Each rank
runs one torch thread; the figure of a step is the process CPU time summed over the ranks (the work of the step,
robust to the other tenants of a shared machine, which move the wall clock), the wall time of rank 0 is stored
beside. Configurations are timed round-robin, in an order rotated every round (load drift hits them alike),
median of ``--repeats`` after one warm-up round:

* ``joint_image``: Fong & Vedaldi joint training, ``copies=2, joint, p_keep_image=(1.0, 0.0)``,
  ``saliency_occlusion`` with image saliency: one DDP step on the 2B batch;
* ``joint_free``: the same with ``saliency="model"`` and the free joint step (NormGrad at ``maxpool`` of the
  clean copy's loss, from its own backward; :class:`pipelines.saliency.step.SaliencyStep`);
* ``joint_label``: the joint step with the paper's map (NormGrad of the label's logit at ``maxpool``: one extra
  backward to the layer from the clean copy's forward);
* ``plain``: ``keep_cutout``, one copy, image saliency: one DDP step on B rows;
* ``input_grad_half``, ``input_grad``, ``early_head``: ``keep_cutout`` with ``saliency="model"`` and a fresh
  KeepAugment map (input gradient at half / full resolution, early head after ``layer1``).

Targets (issue 21): joint_free / joint_image <= 1.05; input_grad_half / plain <= 1.3 (KeepAugment's Table 3:
1.26x), with and without AMP.

    PYTHONPATH=. python -m bench.feedback_bench [--ranks 2] [--batch 32] [--size 128] [--repeats 5]
        [--out results/feedback_bench_ddp.json]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import socket
import time

import numpy as np
import torch
import torchvision

from bench.common import conditions, summary, write_json

NAMES = ["joint_image", "joint_free", "joint_label", "plain", "input_grad_half", "input_grad", "early_head"]
RATIOS = {"joint_free / joint_image": ("joint_free", "joint_image"),
          "joint_label / joint_image": ("joint_label", "joint_image"),
          "input_grad_half / plain": ("input_grad_half", "plain"), "input_grad / plain": ("input_grad", "plain"),
          "early_head / plain": ("early_head", "plain")}
TARGETS = {"joint_free / joint_image": 1.05, "input_grad_half / plain": 1.3}


def _rank(rank, world, port, args, out):
    import torch.distributed as dist

    from kernels.labels import soft_cross_entropy
    from pipelines import EarlyHead, InputGradient, NormGrad, OcclusionLoader, SaliencyStep
    from pipelines.data.demo_data import ensure_demo_data

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        root = ensure_demo_data() / "train"
        common = dict(output_size=args.size, device="cpu", seed=0, shard_id=rank, num_shards=world, last_batch="drop",
                      runtime=dict(num_threads=1, py_workers=1, verify="none"))
        joint = dict(copies=2, copy_mode="joint", p_keep_image=(1.0, 0.0))
        side = dict(size=min(56, args.size // 2))  # the papers' 56 px window and region (smaller on tiny images)
        loaders = {
            "joint_image": OcclusionLoader(root, args.batch, "saliency_occlusion", **side, **joint, **common),
            "joint_model": OcclusionLoader(root, args.batch, "saliency_occlusion", saliency="model", **side, **joint,
                                           **common),
            "plain": OcclusionLoader(root, args.batch, "keep_cutout", **side, **common),
            "keep_model": OcclusionLoader(root, args.batch, "keep_cutout", saliency="model", **side, **common),
        }
        rounds = args.repeats + 1
        batches = {}
        for name, loader in loaders.items():
            batches[name] = []
            while len(batches[name]) < rounds:  # on into the next epoch when a shard has fewer batches
                for batch in loader:
                    batches[name].append(batch)
                    if len(batches[name]) == rounds:
                        break
            loader.close()
        num_classes = loaders["plain"].num_classes
        torch.manual_seed(0)
        base = torchvision.models.resnet18(weights=None, num_classes=num_classes).train()

        def ddp(model):
            return torch.nn.parallel.DistributedDataParallel(model)

        def plain_step(model, opt, autocast):
            def step(batch):
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = soft_cross_entropy(model(batch.images), batch.targets).mean()
                loss.backward()
                opt.step()
            return step

        def make(name, amp):
            autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else None
            net = copy.deepcopy(base)
            if name in ("joint_image", "plain"):
                model = ddp(net)
                return plain_step(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                                  autocast or contextlib.nullcontext), name
            if name.startswith("joint_"):
                sal, source = NormGrad(net, "maxpool", "loss" if name == "joint_free" else "label"), "joint_model"
            elif name == "early_head":
                sal, source = EarlyHead(net, "layer1", num_classes=num_classes), "keep_model"
                net.add_module("early_head", sal)  # its gradient is reduced with the model's
            else:
                sal, source = InputGradient(net, 1.0 if name == "input_grad" else 0.5), "keep_model"
            model = ddp(net)
            step = SaliencyStep(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), loaders[source],
                                sal, autocast=autocast)
            return step, source

        configs = [(name, amp) for amp in args.amp_modes for name in args.names]
        steps = {c: make(*c) for c in configs}
        cpu = {c: [] for c in configs}
        wall = {c: [] for c in configs}
        for i in range(rounds):
            order = configs[i % len(configs):] + configs[:i % len(configs)]
            for c in order:
                step, source = steps[c]
                dist.barrier()
                t, p = time.perf_counter(), time.process_time()
                step(batches[source][i])
                dt, dp = time.perf_counter() - t, time.process_time() - p
                if i > 0:  # the first round is the warm-up
                    cpu[c].append(dp)
                    wall[c].append(dt)
            if rank == 0:
                print(f"round {i} done, load {os.getloadavg()[0]:.1f}", flush=True)
        torch.save({"cpu": cpu, "wall": wall}, out)
    finally:
        dist.destroy_process_group()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="rows per rank (per copy)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--names", default=",".join(NAMES), help="configurations to time (comma-separated)")
    ap.add_argument("--amp", default="both", choices=("both", "off", "on"), help="bf16 autocast off, on or both")
    ap.add_argument("--out", default="results/feedback_bench_ddp.json")
    args = ap.parse_args(argv)
    args.names = [n for n in NAMES if n in args.names.split(",")]
    args.amp_modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.amp]

    import tempfile

    import torch.multiprocessing as mp

    cond = conditions(ranks=args.ranks, batch_per_rank=args.batch, size=args.size, repeats=args.repeats,
                      torch_threads_per_rank=1, model="resnet18", backend="gloo", amp="bfloat16 autocast (CPU)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"rank{r}.pt") for r in range(args.ranks)]
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_rank, args=(r, args.ranks, port, args, outs[r])) for r in range(args.ranks)]
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):  # a failed rank would leave the other one waiting in a collective
            time.sleep(1)
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.terminate()
                raise SystemExit(f"a rank failed (exit codes {[p.exitcode for p in procs]})")
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit(f"a rank failed (exit codes {[p.exitcode for p in procs]})")
        ranks = [torch.load(o, weights_only=False) for o in outs]
    cond["loadavg_end"] = os.getloadavg()
    results = {}
    ratios = {k: (a, b) for k, (a, b) in RATIOS.items() if a in args.names and b in args.names}
    for amp in args.amp_modes:
        key = "amp_bf16" if amp else "fp32"
        # per round: the step's CPU time summed over the ranks
        per_round = {n: np.sum([r["cpu"][(n, amp)] for r in ranks], axis=0) for n in args.names}
        med = {n: float(np.median(v)) for n, v in per_round.items()}
        results[key] = {
            "step_cpu_seconds_all_ranks": {n: summary(v) for n, v in per_round.items()},
            "step_wall_seconds_rank0": {n: summary(ranks[0]["wall"][(n, amp)]) for n in args.names},
            "ratios_of_median_cpu_time": {k: med[a] / med[b] for k, (a, b) in ratios.items()},
            "median_of_per_round_ratios": {k: float(np.median(per_round[a] / per_round[b]))
                                           for k, (a, b) in ratios.items()},
        }
    payload = {"conditions": cond, "results": results, "targets": TARGETS}
    print(write_json(args.out, payload))
    for key, res in results.items():
        for k, v in res["ratios_of_median_cpu_time"].items():
            print(f"{key:9s} {k}: {v:.3f} (per-round median {res['median_of_per_round_ratios'][k]:.3f})"
                  + (f", target <= {TARGETS[k]}" if k in TARGETS else ""))
    return payload


if __name__ == "__main__":
    main()
