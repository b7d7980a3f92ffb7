"""Costs of the saliency bank (issue 12), CPU, ResNet-18 on the demo data at 128 px.

Two measurements, each against the same method with image saliency (OpenCV's map in the graph):

* **step**: training-step time -- forward, cross entropy, backward, SGD step -- of ``saliency_occlusion`` with
  image saliency (the plain step: the map is made in the loader) vs the same step feeding the bank:
  :class:`pipelines.saliency.extractors.SaliencyTap` hooks (NormGrad at ``layer1.0.conv1``; also attention at ``layer4``
  and the input gradient) and ``loader.feedback`` with the push *included* (the grid reduction, and the
  background write waited for inside the timed region). One model and, per round, one batch for every
  variant, the order rotated each round; batches fetched beforehand, so the loader is not timed. Ratios use
  the process's CPU time (all its threads, ``--threads 1`` for torch: the step's work on a shared machine);
  wall times are stored too.
* **loader**: images/s of the loader alone in epoch 1, image saliency vs bank maps (the bank filled in
  epoch 0 by pushes of every served row, so most rows of epoch 1 read a map and skip the image saliency).
  Fresh loaders per repeat, alternating, ``--warmup`` batches dropped.

Targets: step bank / image <= 1.03; loader bank / image >= 0.95. The bank's size per sample is also written.

    PYTHONPATH=. python -m bench.bank_bench [--batch 32] [--size 128] [--repeats 5] [--out results/bank_bench.json]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from bench.common import conditions, summary, write_json


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loader-batches", type=int, default=12, help="timed batches per loader repeat")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU time = the work)")
    ap.add_argument("--out", default="results/bank_bench.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from bench.loader_bench import measure
    from pipelines import OcclusionLoader
    from pipelines.saliency.bank import SaliencyBank
    from pipelines.data.demo_data import ensure_demo_data
    from kernels.labels import soft_cross_entropy
    from pipelines import SaliencyTap

    root = ensure_demo_data() / "train"
    bank_path = Path(tempfile.mkdtemp(prefix="bank-bench-")) / "bank.bin"
    common = dict(output_size=args.size, device="cpu", seed=0, runtime=dict(num_threads=2, py_workers=1, verify="none"))

    def loader(source):
        kw = dict(saliency="bank", bank=SaliencyBank(bank_path)) if source == "bank" else {}
        return OcclusionLoader(root, args.batch, "saliency_occlusion", size=args.size // 4, **kw, **common)

    # -- fill the bank in epoch 0 (every served row pushes a smooth random map), keep batches for the steps
    n_steps = args.repeats + 1
    bank_loader = loader("bank")
    bank_batches = []
    for batch in bank_loader:
        bank_loader.feedback(batch, torch.rand(batch.images.shape[0], 8, 8))
        if len(bank_batches) < n_steps:
            bank_batches.append(batch)
    state = bank_loader.state_dict()  # every push written (the state is epoch 1, batch 0)
    num_classes = bank_loader.num_classes
    del bank_loader  # frees the bank's writer slot for the loaders below
    # the steps push the epoch-0 batches kept above into a loader of their own: the filled loader has sealed
    # epoch 0, and a push after the seal is ignored by rule
    push_loader = OcclusionLoader(root, args.batch, "saliency_occlusion", size=args.size // 4, saliency="bank",
                                  bank=SaliencyBank(bank_path.with_name("steps.bin")), **common)

    # -- step cost: one model, one batch per round for every variant, the order rotated each round ---------
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    taps = {"image": None, "bank_normgrad": "normgrad:layer1.0.conv1", "bank_attention": "attention:layer4",
            "bank_input_grad": "input_grad"}
    taps = {name: spec and SaliencyTap.parse(spec, model) for name, spec in taps.items()}
    names = list(taps)

    def step(name, batch):
        tap = taps[name]
        opt.zero_grad(set_to_none=True)
        images = batch.images if tap is None else tap.watch(batch.images)
        loss = soft_cross_entropy(model(images), batch.targets).mean()
        loss.backward()
        if tap is not None:
            push_loader.feedback(batch, tap.maps())
            push_loader._channel.writer.flush()  # the push's background write, counted in the step
        opt.step()

    cpu = {name: [] for name in names}
    wall = {name: [] for name in names}
    for i in range(n_steps):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            t, c = time.perf_counter(), time.process_time()
            step(name, bank_batches[i])
            if i > 0:  # the first round is the warm-up
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        print(f"step round {i}: " + ", ".join(f"{k} {v[-1]:.3f}s cpu" for k, v in cpu.items() if v), flush=True)

    # -- loader throughput in epoch 1 -------------------------------------------------------------------
    rates = {"image": [], "bank": []}
    shares = []
    for r in range(args.repeats):
        for source in (("image", "bank") if r % 2 == 0 else ("bank", "image")):
            ld = loader(source)
            if source == "bank":
                ld.load_state_dict(state)
            else:
                ld.set_epoch(1)
            it = iter(ld)

            def images(it=it):
                for batch in it:
                    if source == "bank":
                        shares.append(float(batch.meta["map_source"].float().mean()))
                    yield batch.images

            rates[source].append(measure(images(), args.loader_batches, args.warmup))
            ld.close()
            del ld, it  # the next bank loader on the file needs its writer slot
        print(f"loader round {r}: image {rates['image'][-1]:.1f}/s, bank {rates['bank'][-1]:.1f}/s", flush=True)

    res_cpu = {k: summary(v) for k, v in cpu.items()}
    res_wall = {k: summary(v) for k, v in wall.items()}
    step_ratios = {f"{k} / image": res_cpu[k]["median"] / res_cpu["image"]["median"] for k in names[1:]}
    # the same round's steps ran back to back: the median of per-round ratios is robust to load drift
    round_ratios = {f"{k} / image": float(torch.tensor([x / y for x, y in zip(cpu[k], cpu["image"])]).median())
                    for k in names[1:]}
    loader_res = {k: summary(v) for k, v in rates.items()}
    per_repeat = [b / i for i, b in zip(rates["image"], rates["bank"])]
    per_sample = SaliencyBank.bytes_per_sample(SaliencyBank().grid)
    payload = {
        "conditions": conditions(batch=args.batch, size=args.size, repeats=args.repeats, model="resnet18",
                                 torch_threads=torch.get_num_threads(), method="saliency_occlusion",
                                 loader_batches=args.loader_batches, warmup=args.warmup),
        "step_cpu_seconds": res_cpu, "step_wall_seconds": res_wall, "step_ratios_of_cpu_time": step_ratios,
        "step_ratios_median_per_round": round_ratios,
        "step_wall_ratios": {f"{k} / image": res_wall[k]["median"] / res_wall["image"]["median"] for k in names[1:]},
        "loader_images_per_s": loader_res,
        "loader_ratio_bank_over_image": loader_res["bank"]["median"] / loader_res["image"]["median"],
        "loader_ratio_median_per_repeat": float(torch.tensor(per_repeat).median()),
        "bank_share_of_rows_epoch1": sum(shares) / max(len(shares), 1),
        "bank_bytes_per_sample": per_sample, "bank_bytes_imagenet_1281167": per_sample * 1281167,
        "targets": {"step bank / image": 1.03, "loader bank / image": 0.95},
    }
    print(write_json(args.out, payload))
    for k, v in step_ratios.items():
        print(f"step {k}: {v:.3f} (median per round {round_ratios[k]:.3f}; target <= 1.03)")
    print(f"loader bank / image: {payload['loader_ratio_bank_over_image']:.3f} (target >= 0.95), "
          f"bank rows {100 * payload['bank_share_of_rows_epoch1']:.0f}%")
    print(f"bank: {per_sample} B per sample, {per_sample * 1281167 / 2 ** 30:.2f} GiB for ImageNet's 1,281,167")
    return payload


if __name__ == "__main__":
    main()
