"""The same-step saliency paths under ``DistributedDataParallel`` (two CPU processes, gloo) and under AMP (bf16
autocast on the CPU; float16 with a ``GradScaler``).

DDP: each rank runs ``SaliencyStep`` on its shard; the oracle is the single-process ``SaliencyStep`` on the very
rows of both ranks, merged into one batch (the union of the ranks' batches is what one process with the global
batch would see). They must end with the same parameters (to float tolerance) and occlude the same boxes,
with one gradient all-reduce per optimizer step (counted by a DDP communication hook). BatchNorm: statistics
over a rank's rows are not statistics over the global batch (that is what DDP does, and the one difference a
``SyncBatchNorm`` would remove), so the comparison uses a model without BatchNorm and a ResNet-18 with its
BatchNorm in eval mode (running statistics: each row's output depends on that row only).

AMP: the step under bf16 autocast against the step restated with autograd (``retain_grad`` at the layer,
``loader.occlude``, the second copy); float16 with a ``GradScaler`` searches the same boxes as float16
without one (the maps are divided by their maximum: the loss scale cancels)."""
from __future__ import annotations

import copy
import socket

import pytest
import torch
import torchvision

from helpers import NoBatchNorm, make
from kernels.labels import soft_cross_entropy

B = 4
S = 16


def loader_of(root, method, shard_id=0, num_shards=1, **kw):
    copies = dict(copies=2, copy_mode="joint", p_keep_image=(1.0, 0.0)) if method == "saliency_occlusion" else {}
    opts = dict(size=S, jitter=0) if method == "saliency_occlusion" else dict(size=S)
    return make(root, batch=B, method=method, saliency="model", num_classes=3, seed=5, shard_id=shard_id,
                num_shards=num_shards, last_batch="drop", **copies, **opts, **kw)


def build_model(kind):
    torch.manual_seed(0)
    if kind == "nobn":
        return NoBatchNorm()
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    model.eval()  # BatchNorm on running statistics (see the module docstring); nothing else differs in eval
    return model


def extractor(kind, net):
    from pipelines import InputGradient, NormGrad

    layer = "conv1" if isinstance(net, NoBatchNorm) else "maxpool"
    return {"free": lambda: NormGrad(net, layer, target="loss"), "joint": lambda: NormGrad(net, layer, "label"),
            "fresh": lambda: InputGradient(net, scale=0.5)}[kind]()


#: (model, path, method): the free joint step, the paper's joint step (label), the fresh low-resolution path
CONFIGS = [("nobn", "free", "saliency_occlusion"), ("nobn", "joint", "saliency_occlusion"),
           ("nobn", "fresh", "keep_cutout"), ("resnet_bn_eval", "free", "saliency_occlusion")]
STEPS = 2


def run_steps(model, loader, path, batches, opt_model=None):
    """``STEPS`` SaliencySteps over ``batches``; returns (losses, occluded boxes)."""
    from pipelines import SaliencyStep

    net = getattr(model, "module", model)
    opt = torch.optim.SGD((opt_model or model).parameters(), lr=0.2, momentum=0.9, weight_decay=1e-4)
    step = SaliencyStep(model, opt, loader, extractor(path, net))
    assert step.joint == (path != "fresh") and step.free == (path == "free")
    losses, boxes = [], []
    for batch in batches:
        loss, out = step(batch)
        losses.append(float(loss))
        boxes.append(out.meta["boxes"])
    return losses, boxes


def _rank_main(rank, world, port, root, out):
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    results = {}
    try:
        for kind, path, method in CONFIGS:
            loader = loader_of(root, method, shard_id=rank, num_shards=world)
            it = iter(loader)
            batches = [next(it) for _ in range(STEPS)]
            loader.close()
            calls = []

            def counting(state, bucket):
                calls.append(1)
                return allreduce_hook(state, bucket)

            ddp = torch.nn.parallel.DistributedDataParallel(build_model(kind), bucket_cap_mb=1000)
            ddp.register_comm_hook(dist.group.WORLD, counting)
            losses, boxes = run_steps(ddp, loader, path, batches)
            results[(kind, path)] = dict(batches=batches, losses=losses, boxes=boxes, calls=len(calls),
                                         params=[p.detach().clone() for p in ddp.module.parameters()])
        torch.save(results, out)
    finally:
        dist.destroy_process_group()


def merged(batches):
    """The rows of the ranks' batches as one batch (copy-major, rank after rank within each copy), with the draws'
    row indices moved to the merged copy's rows."""
    m = int(batches[0].meta["copy"].max()) + 1
    b = batches[0].images.shape[0] // m

    def cat(key_of):
        return torch.cat([key_of(x)[c * b:(c + 1) * b] for c in range(m) for x in batches])

    meta = {}
    for key, value in batches[0].meta.items():
        if not isinstance(value, torch.Tensor) or value.shape[:1] != (m * b,):
            meta[key] = value
            continue
        parts = []
        for c in range(m):
            for r, x in enumerate(batches):
                v = x.meta[key][c * b:(c + 1) * b]
                if key in ("draw.map_index", "draw.partner"):  # a row of the copy: of the merged copy now
                    v = torch.where(v >= 0, v + r * b, v)
                parts.append(v)
        meta[key] = torch.cat(parts)
    return batches[0].replace(images=cat(lambda x: x.images), targets=cat(lambda x: x.targets),
                              labels=cat(lambda x: x.labels), meta=meta)


def test_the_same_step_under_ddp_equals_one_process_on_the_same_rows(structured_root, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(r, 2, port, structured_root, outs[r])) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=900)
        assert p.exitcode == 0, p.exitcode
    ranks = [torch.load(o, weights_only=False) for o in outs]
    for kind, path, method in CONFIGS:
        r0, r1 = ranks[0][(kind, path)], ranks[1][(kind, path)]
        assert r0["calls"] == r1["calls"] == STEPS, (kind, path, r0["calls"])  # one all-reduce per step
        for a, b in zip(r0["params"], r1["params"]):
            assert torch.equal(a, b)  # DDP kept the replicas equal
        single = loader_of(structured_root, method)
        batches = [merged([r0["batches"][i], r1["batches"][i]]) for i in range(STEPS)]
        model = build_model(kind)
        losses, boxes = run_steps(model, single, path, batches)
        single.close()
        for i in range(STEPS):
            assert losses[i] == pytest.approx((r0["losses"][i] + r1["losses"][i]) / 2, rel=1e-5), (kind, path, i)
            want = merged([b.replace(meta={**b.meta, "boxes": r["boxes"][i]}) for b, r in
                           ((r0["batches"][i], r0), (r1["batches"][i], r1))]).meta["boxes"]
            assert torch.equal(boxes[i], want), (kind, path, i)
        for (name, p), q in zip(model.named_parameters(), r0["params"]):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=f"{kind} {path} {name}")


# -- AMP --------------------------------------------------------------------------------------------------
def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_free_joint_step_under_bf16_autocast_is_the_restated_step(structured_root):
    """The free joint step under bf16 autocast: the clean copy's forward and backward in bf16, NormGrad at the layer
    from that backward, the second copy occluded by it, one step -- restated with retain_grad."""
    from pipelines import NormGrad, SaliencyStep

    loader = loader_of(structured_root, "saliency_occlusion")
    batch = next(iter(loader))
    model = build_model("resnet_bn_eval").train()
    oracle = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    step = SaliencyStep(model, opt, loader, NormGrad(model, "maxpool", target="loss"), autocast=bf16)
    loss, out = step(batch)
    # the restatement
    opt2 = torch.optim.SGD(oracle.parameters(), lr=0.2, momentum=0.9)
    kept = {}

    def keep(_m, _i, out):
        out.retain_grad()
        kept["x"] = out

    oracle.maxpool.register_forward_hook(keep)
    denom = float(2 * B)
    with bf16():
        logits = oracle(batch.images[:B])
        assert logits.dtype == torch.bfloat16
        loss0 = soft_cross_entropy(logits, batch.targets[:B]).sum() / denom
    loss0.backward()
    x = kept.pop("x")
    maps = x.grad.float().norm(dim=1) * x.detach().float().norm(dim=1)
    want = loader.occlude(batch, maps)
    with bf16():
        loss1 = soft_cross_entropy(oracle(want.images[B:]), want.targets[B:]).sum() / denom
    loss1.backward()
    opt2.step()
    assert torch.equal(out.images, want.images) and torch.equal(out.meta["boxes"], want.meta["boxes"])
    assert float(loss) == pytest.approx(float((loss0 + loss1).detach()), rel=1e-6)
    for (name, p), q in zip(model.named_parameters(), oracle.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_fresh_low_resolution_step_under_bf16_autocast_is_the_restated_step(structured_root):
    """KeepAugment's low-resolution input gradient under bf16: the map taken in autocast on the clean rows, the
    occlusion, one plain step in autocast."""
    from pipelines import InputGradient, SaliencyStep

    loader = loader_of(structured_root, "keep_cutout")
    batch = next(iter(loader))
    model = build_model("resnet_bn_eval").train()
    oracle = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    step = SaliencyStep(model, opt, loader, InputGradient(model, scale=0.5), autocast=bf16)
    assert not step.joint
    loss, out = step(batch)
    with bf16():
        maps = InputGradient(oracle, scale=0.5)(batch.images, batch.labels)
    want = loader.occlude(batch, maps)
    assert torch.equal(out.meta["boxes"], want.meta["boxes"]) and torch.equal(out.images, want.images)
    opt2 = torch.optim.SGD(oracle.parameters(), lr=0.2)
    with bf16():
        loss2 = soft_cross_entropy(oracle(want.images), want.targets).mean()
    loss2.backward()
    opt2.step()
    for (name, p), q in zip(model.named_parameters(), oracle.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("path", ["free", "joint", "fresh"])
def test_float16_with_a_grad_scaler_searches_the_boxes_of_the_unscaled_step(structured_root, path):
    """float16 autocast with a GradScaler (scale 2**16): every backward and the extractors' objectives are scaled,
    and the maps, divided by their maximum, give the boxes of the same step without the scaler; the scaler takes
    the step (the update agrees with the unscaled one to float16 rounding)."""
    from pipelines import SaliencyStep

    method = "keep_cutout" if path == "fresh" else "saliency_occlusion"
    loader = loader_of(structured_root, method)
    batch = next(iter(loader))
    results = []
    for scaled in (False, True):
        model = build_model("nobn")
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16) if scaled else None
        step = SaliencyStep(model, opt, loader, extractor(path, model),
                            autocast=lambda: torch.autocast("cpu", dtype=torch.float16), scaler=scaler)
        loss, out = step(batch)
        results.append((out, [p.detach().clone() for p in model.parameters()]))
        if scaled:
            assert scaler.get_scale() == 2.0 ** 16  # no inf / NaN gradient: the step was taken
    (plain, p_plain), (scaled, p_scaled) = results
    assert torch.equal(plain.meta["boxes"], scaled.meta["boxes"]) and torch.equal(plain.images, scaled.images)
    for a, b in zip(p_plain, p_scaled):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-4)


def test_a_grad_scaler_step_that_overflows_is_skipped_and_leaves_its_rows_whole(structured_root):
    """An overflowing float16 backward (a huge loss scale): the map is non-finite, so loader.occlude leaves the
    occluded copy whole (map_ok 0, counted by the step), and the GradScaler skips the optimizer step."""
    from pipelines import SaliencyStep

    loader = loader_of(structured_root, "saliency_occlusion")
    batch = next(iter(loader))
    model = build_model("nobn")
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 120)
    step = SaliencyStep(model, torch.optim.SGD(model.parameters(), lr=0.2), loader, extractor("free", model),
                        autocast=lambda: torch.autocast("cpu", dtype=torch.float16), scaler=scaler)
    _, out = step(batch)
    assert (out.meta["map_ok"] == 0).all() and (out.meta["boxes"] == -1).all()
    assert torch.equal(out.images, batch.images) and int(step.unusable) == 2 * B
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert scaler.get_scale() < 2.0 ** 120
