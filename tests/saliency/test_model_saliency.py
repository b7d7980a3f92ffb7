"""The model in the loop: per-copy ``p_keep_image`` (Fong & Vedaldi's clean + occluded copies),
``saliency="model"`` (the graph leaves the rows clean and hands the draws over) and ``loader.occlude``
(the method's search + apply on the training side) against the papers' rules on one-hot-spot maps and
against the graph's own fragments run by DALI on the same maps."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def

from dali_ops import mixing
from pipelines.methods import get_method
from helpers import MEAN, SIZE, STD, NoBatchNorm, box_mask, make

B, M = 6, 2
S = 16  # window / region side at 64 px


def first(root, method="none", **kw):
    kw.setdefault("copies", M)
    kw.setdefault("num_classes", 3)
    loader = make(root, batch=B, method=method, seed=5, **kw)
    return loader, next(iter(loader))


@pytest.mark.parametrize("method,opts", [("saliency_occlusion", dict(size=S)), ("cutout", dict(size=S))])
def test_p_keep_image_per_copy_clean_and_occluded(structured_root, method, opts):
    """Fong & Vedaldi's joint training (their Figure 1): copy 0 always clean, copy 1 always occluded, the
    copies equal outside the boxes (one crop and flip per sample)."""
    _, clean = first(structured_root)
    for seed_batch in range(2):
        loader = make(structured_root, batch=B, method=method, copies=2, copy_mode="joint",
                      p_keep_image=(1.0, 0.0), num_classes=3, seed=5 + seed_batch, **opts)
        batch = next(iter(loader))
        boxes = batch.meta["boxes"].numpy()
        imgs = batch.images.numpy()
        assert (boxes[:B] == -1).all()  # copy 0: never occluded
        if seed_batch == 0:
            np.testing.assert_array_equal(imgs[:B], clean.images[:B].numpy())
        for i in range(B):
            mask = box_mask(boxes[B + i])
            assert mask.any(), f"copy 1 row {i} not occluded"
            assert (imgs[B + i][:, mask] == 0).all()  # erased with the mean (0 after normalisation)
            np.testing.assert_array_equal(imgs[B + i][:, ~mask], imgs[i][:, ~mask])  # equal outside


def hot_maps(n, seed):
    """One hot pixel per map at a seeded random place."""
    rng = np.random.default_rng(seed)
    spots = np.stack([rng.integers(0, SIZE, n), rng.integers(0, SIZE, n)], -1)
    maps = np.zeros((n, SIZE, SIZE), np.float32)
    maps[np.arange(n), spots[:, 0], spots[:, 1]] = 1.0
    return torch.from_numpy(maps), spots


def contains(box, yx):
    y0, x0, y1, x1 = box
    return y0 <= yx[0] < y1 and x0 <= yx[1] < x1


class FragmentContext:
    """A GraphContext for running a method's own graph fragment on given rows: the 'uint8 crop' is the row's
    uint8 pixels (:func:`crops_of` the clean normalised row), the saliency is the given map, and normalise is
    the graph's own ``normalize_occlude`` (erase / paste fused with the normalisation)."""

    device = "cpu"

    def __init__(self, maps_node, augmented=None):
        self.maps_node = maps_node
        self.augmented = augmented

    def augment(self, u8):  # KeepAugment's selective-paste: the policy's output, given
        return self.augmented

    def on(self, node):
        return node

    def saliency(self, u8, mirror):
        return self.maps_node

    def normalize(self, u8, boxes=None, partner=None, blend=None, *, mirror, fill=0.0):
        return mixing.normalize_occlude(u8, boxes, partner, blend, mirror=mirror, mean=list(MEAN), std=list(STD),
                                        fill=fill)


def crops_of(rows):
    """The HWC uint8 pixels whose mean/std normalisation the (N, 3, H, W) rows are (the normalisation of a
    uint8 value is off it by far less than half a level, so rounding the inverse recovers it)."""
    u8 = np.rint(rows.astype(np.float64) * STD[:, None, None] + MEAN[:, None, None]).astype(np.uint8)
    return np.ascontiguousarray(u8.transpose(0, 2, 3, 1))


def graph_fragment(method, images, maps, draws, sources=None):
    """The method's graph fragment (:meth:`Method.graph`), run by DALI on one copy's rows and maps
    (``sources``: the un-augmented rows of selective-paste, ``images`` then being the policy's output)."""
    specs = list(method.inputs)
    n = len(images)

    def rows_of(a):
        return lambda: [np.ascontiguousarray(x) for x in a]

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, exec_dynamic=True)
    def pipe():
        img = fn.external_source(source=rows_of(crops_of(images)), batch=True, layout="HWC")
        sal = fn.external_source(source=lambda: list(maps), batch=True)
        nodes = {s: fn.external_source(source=rows_of(draws[s.name]), batch=True) for s in specs}
        if sources is None:
            part = method.graph(FragmentContext(sal), img, 0, nodes)
        else:
            src = fn.external_source(source=rows_of(crops_of(sources)), batch=True, layout="HWC")
            part = method.graph(FragmentContext(sal, augmented=img), src, 0, nodes)
        return part.image, part.boxes

    p = pipe()
    p.build()
    out, boxes = p.run()
    return np.array(out.as_tensor()), np.array(boxes.as_tensor())


RED = (255, 0, 0)  # keep_cutout's fill: the erase value of the training side and of the graph follow the method
#: every saliency-guided method (tests/test_layout.py-style completeness is checked below)
CASES = [("saliency_occlusion", dict(size=S, jitter=0)), ("keep_cutout", dict(size=S, fill=RED)),
         ("saliencymix", {}), ("keep_cutmix", {}), ("keep_paste", dict(size=S)), ("attentive_cutmix", {})]


def test_the_cases_cover_every_saliency_guided_method():
    from pipelines.methods import REGISTRY
    from pipelines.methods.saliency_guided import SaliencyGuided

    assert {name for name, cls in REGISTRY.items() if issubclass(cls, SaliencyGuided)} == {c for c, _ in CASES}


class NoHost(torch.Tensor):
    """A tensor that refuses every way to the host: ``occlude`` must hand it to DALI by DLPack and keep the rest
    in torch (on a GPU each of these would be a device-to-host copy and a synchronisation)."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("a device-to-host transfer in occlude")

    numpy = cpu = item = tolist = __array__ = __bool__ = __float__ = __int__ = _refuse


@pytest.mark.parametrize("method,opts", CASES)
def test_occlude_reads_nothing_back_to_the_host(structured_root, method, opts):
    """The images, the maps and the un-augmented rows as :class:`NoHost`: ``occlude`` runs, and gives what it gives
    on plain tensors."""
    loader, batch = first(structured_root, method, saliency="model", **opts)
    maps, _ = hot_maps(B * M, seed=11)
    want = loader.occlude(batch, maps)
    meta = dict(batch.meta)
    if "source_images" in meta:
        meta["source_images"] = meta["source_images"].as_subclass(NoHost)
    guarded = batch.replace(images=batch.images.as_subclass(NoHost), meta=meta)
    got = loader.occlude(guarded, maps.as_subclass(NoHost))
    assert torch.equal(torch.Tensor.as_subclass(got.images, torch.Tensor), want.images)
    for key in ("boxes", "lam", "partner", "map_ok"):
        assert torch.equal(torch.Tensor.as_subclass(got.meta[key], torch.Tensor), want.meta[key]), key
    assert torch.equal(got.targets, want.targets)


def attentive_boxes(sal, size=SIZE):
    """Attentive CutMix's pasted cells of a map: tests/oracles.py's restatement, 7 x 7 grid, k = 6."""
    import oracles as ref

    return ref.topk_cell_boxes(sal, 7, 6, size)


@pytest.mark.parametrize("method,opts", CASES)
def test_model_saliency_on_the_training_side(structured_root, method, opts):
    _, plain = first(structured_root)
    loader, batch = first(structured_root, method, saliency="model", **opts)
    n = B * M
    # the graph leaves every row clean (same crops and flips as method="none") and records the draws;
    # selective-paste: the rows are the policy's output and the un-augmented rows travel beside them
    paste_back = method == "keep_paste"
    sources = batch.meta["source_images"].numpy() if paste_back else None
    assert torch.equal(batch.meta["source_images"] if paste_back else batch.images, plain.images)
    assert (batch.meta["boxes"].numpy() == -1).all() and (batch.meta["partner"].numpy() == -1).all()
    assert (batch.meta["lam"].numpy() == 1).all()
    m = get_method(method, saliency="model", **opts)
    for spec in m.inputs:
        assert batch.meta["draw." + spec.name].shape[0] == n
    maps, spots = hot_maps(n, seed=11)
    out = loader.occlude(batch, maps)
    boxes = out.meta["boxes"].numpy()
    partner = out.meta["partner"].numpy()
    imgs, clean = out.images.numpy(), batch.images.numpy()
    map_index = batch.meta["draw.map_index"].numpy()
    occluded = pasted_spot = 0
    for r in range(n):
        box = boxes[r, 0]
        c = r // B
        if map_index[r] < 0:
            assert (boxes[r] == -1).all() and partner[r] == -1
            np.testing.assert_array_equal(imgs[r], clean[r])
            continue
        occluded += 1
        mask = box_mask(boxes[r])
        np.testing.assert_array_equal(imgs[r][:, ~mask], clean[r][:, ~mask])  # untouched outside the box
        if method == "saliency_occlusion":
            assert contains(box, spots[r]) and box[2] - box[0] == S and (imgs[r][:, mask] == 0).all()
        elif method == "keep_cutout":
            assert not contains(box, spots[r])
            red = np.broadcast_to(((np.array(RED) - MEAN) / STD)[:, None], imgs[r][:, mask].shape)
            np.testing.assert_allclose(imgs[r][:, mask], red, atol=1e-5)
        elif paste_back:  # the important region (with the hot spot) back from the un-augmented image
            # Gong et al.'s rule: the first candidate region scoring above the tau-quantile (here 0: only
            # regions holding the hot spot score > 0), else the best-scoring one -- so the box holds the spot
            # exactly when one of the drawn candidates' regions does
            tries = batch.meta["draw.tries"][r].numpy()
            hit = [contains((max(cy - S // 2, 0), max(cx - S // 2, 0), cy + S // 2, cx + S // 2), spots[r])
                   for cy, cx in tries]
            assert contains(box, spots[r]) == any(hit) and partner[r] == -1
            pasted_spot += any(hit)
            np.testing.assert_array_equal(imgs[r][:, mask], sources[r][:, mask])
        else:  # a paste from the partner of the same copy
            p = partner[r]
            assert p >= 0 and p // B == c
            np.testing.assert_array_equal(imgs[r][:, mask], clean[p][:, mask])
            if method == "saliencymix":  # the box sits on the *partner's* hot spot
                assert map_index[r] + c * B == p and contains(box, spots[p])
            elif method == "attentive_cutmix":  # every cell but the row's top 6 (its hot cell first) pasted
                np.testing.assert_array_equal(boxes[r], attentive_boxes(maps[r].numpy()))
                assert not mask[tuple(spots[r])]
                assert out.meta["lam"][r].item() == pytest.approx(1 - mask.mean(), abs=1e-6)
                continue
            else:  # KeepCutMix: the cut region of the target avoids its own hot spot
                assert not contains(box, spots[r])
            area = (min(box[2], SIZE) - box[0]) * (min(box[3], SIZE) - box[1])
            assert out.meta["lam"][r].item() == pytest.approx(1 - area / SIZE ** 2, abs=1e-6)
    assert occluded > 0 and (pasted_spot > 0 or not paste_back)
    # the same through the method's graph fragment, DALI's operators on the same maps and draws
    for c in range(M):
        rows = slice(c * B, (c + 1) * B)
        draws = {s.name: batch.meta["draw." + s.name][rows].numpy() for s in m.inputs}
        g_img, g_boxes = graph_fragment(m, clean[rows], maps[rows].numpy(), draws,
                                        sources[rows] if paste_back else None)
        np.testing.assert_array_equal(g_boxes.reshape(boxes[rows].shape), boxes[rows])
        np.testing.assert_array_equal(g_img, imgs[rows])


def test_eager_search_in_a_fresh_process():
    """The training side's eager search where no pipeline has loaded the plugin yet: it loads the plugin
    before DALI's dynamic mode is first imported (after it, ``ndd.occlusion`` does not exist)."""
    code = ("import numpy as np, torch\n"
            "from pipelines.methods.saliency_guided import eager_box_search\n"
            "sal = torch.zeros((1, 8, 8))\n"
            "sal[0, 6, 6] = 1\n"
            "box = eager_box_search(sal, np.zeros((1, 2), np.int32), np.zeros(1, np.int32), method='max_window',\n"
            "                       size=2, jitter=0)\n"
            "print(box.ravel().tolist())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[5,", "5,", "7,", "7]"]  # the first of the four windows holding the peak


def test_occlude_joint_maps_per_sample_and_resized(structured_root):
    """Joint copies share the crop: B maps serve all copies; small maps are bilinearly resized first."""
    loader, batch = first(structured_root, "saliency_occlusion", saliency="model", size=S, jitter=0)
    maps, _ = hot_maps(B, seed=3)
    a = loader.occlude(batch, maps)
    b = loader.occlude(batch, maps.repeat(M, 1, 1))
    assert torch.equal(a.images, b.images) and torch.equal(a.meta["boxes"], b.meta["boxes"])
    small = torch.nn.functional.avg_pool2d(maps[:, None], 2)[:, 0] * 4  # (B, 32, 32)
    up = torch.nn.functional.interpolate(small[:, None], size=(SIZE, SIZE), mode="bilinear",
                                         align_corners=False)[:, 0]
    c = loader.occlude(batch, small)
    d = loader.occlude(batch, up)
    assert torch.equal(c.meta["boxes"], d.meta["boxes"]) and torch.equal(c.images, d.images)


def test_occlude_errors_are_named(structured_root):
    loader, batch = first(structured_root, "saliency_occlusion", size=S)
    with pytest.raises(ValueError, match="saliency='model'"):
        loader.occlude(batch, torch.zeros(B, SIZE, SIZE))
    loader, batch = first(structured_root, "saliency_occlusion", saliency="model", size=S)
    with pytest.raises(ValueError, match="maps"):
        loader.occlude(batch, torch.zeros(5, SIZE, SIZE))
    with pytest.raises(ValueError, match="saliency"):
        get_method("saliency_occlusion", saliency="gradcam")


def test_free_joint_step_equals_one_step_on_the_2b_batch(structured_root):
    """Fong & Vedaldi joint training: clean copy forward+backward, NormGrad from that backward, occlude the
    second copy, forward+backward, one step == one step on the 2B batch (no BatchNorm)."""
    import copy

    from kernels.labels import soft_cross_entropy
    from pipelines import NormGrad, SaliencyStep

    torch.manual_seed(0)
    model = NoBatchNorm()
    twin = copy.deepcopy(model)
    loader = make(structured_root, batch=B, method="saliency_occlusion", saliency="model", size=S, copies=2,
                  copy_mode="joint", p_keep_image=(1.0, 0.0), num_classes=3, seed=5)
    batch = next(iter(loader))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    step = SaliencyStep(model, opt, loader, NormGrad(model, "conv1", target="loss"))
    assert step.free
    loss, occluded = step(batch)
    # copy 0 clean, copy 1 occluded around the map of the clean copy's loss gradient
    assert torch.equal(occluded.images[:B], batch.images[:B])
    assert (occluded.meta["boxes"][B:, 0, 0] >= 0).all()
    # the oracle: the map of the clean copy's training loss with retain_grad, the same occlusion
    oracle = copy.deepcopy(twin)
    kept = {}

    def keep(_m, _i, out):
        out.retain_grad()
        kept["x"] = out

    oracle.conv1.register_forward_hook(keep)
    (soft_cross_entropy(oracle(batch.images[:B]), batch.targets[:B]).sum() / (2 * B)).backward()
    x = kept["x"]
    maps = x.grad.norm(dim=1) * x.detach().norm(dim=1)
    assert torch.equal(loader.occlude(batch, maps).images, occluded.images)
    # one step on the 2B batch
    opt2 = torch.optim.SGD(twin.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    full = soft_cross_entropy(twin(occluded.images), occluded.targets).mean()
    full.backward()
    opt2.step()
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_fresh_step_with_the_early_head(structured_root):
    """The fresh path: KeepAugment's early-head map of the clean rows, loader.occlude, one step whose loss
    is the training cross entropy + 0.3 x the head's (Gong et al., arXiv 2011.11778)."""
    import copy

    import torchvision

    from kernels.labels import soft_cross_entropy
    from pipelines import EarlyHead, SaliencyStep

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    head = EarlyHead(model, "layer1", num_classes=3)
    loader = make(structured_root, batch=B, method="keep_cutout", saliency="model", size=S, num_classes=3, seed=5)
    batch = next(iter(loader))
    twin, twin_head = copy.deepcopy(model), copy.deepcopy(head.fc)
    maps = head(batch.images, batch.labels)  # the map before the step (the extractor changes nothing)
    want_batch = loader.occlude(batch, maps)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.1)
    step = SaliencyStep(model, opt, loader, head)
    assert not step.free
    loss, occluded = step(batch)
    assert torch.equal(occluded.images, want_batch.images)
    assert torch.equal(occluded.meta["boxes"], want_batch.meta["boxes"])
    # the loss, restated: a forward of the spelled-out network, the head on layer1's output
    x = occluded.images
    f = twin.layer1(twin.maxpool(twin.relu(twin.bn1(twin.conv1(x)))))
    logits = twin.fc(torch.flatten(twin.avgpool(twin.layer4(twin.layer3(twin.layer2(f)))), 1))
    aux = soft_cross_entropy(twin_head(f.mean(dim=(2, 3))), occluded.targets).mean()
    want = soft_cross_entropy(logits, occluded.targets).mean() + 0.3 * aux
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)
    assert not torch.equal(head.fc.weight, twin_head.weight)  # the head is trained too


@pytest.mark.parametrize("flag", ["normgrad:layer1.0.conv1", "normgrad:maxpool:loss", "normgrad", "input_grad",
                                  "input_grad:0.5", "early_head", "attention:layer4"])
def test_train_example_saliency_flags(structured_root, flag):
    """train_example.py --saliency FLAG: the extractor, the step (the joint step for normgrad with the joint
    clean copy, free with :loss) and one training step on a batch, the parameters moving."""
    import torchvision

    import train_example

    args = train_example.parse_args(["--demo", "--method", f"saliency_occlusion:size={S}", "--copies", "2",
                                     "--p-keep-image", "1.0,0.0", "--saliency", flag])
    method = train_example.model_saliency_method(args.method)
    loader = make(structured_root, batch=B, method=method, copies=2, p_keep_image=(1.0, 0.0), num_classes=3,
                  seed=5)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    args.channels_last = False
    model, opt, step = train_example.make_saliency_step(model, loader, args, torch.device("cpu"), lr=0.05)
    assert step.joint == flag.startswith("normgrad") and step.free == flag.endswith(":loss")
    if flag.startswith("normgrad"):
        layer, _, target = (flag.partition(":")[2] or "maxpool").partition(":")
        assert (step.saliency.layer, step.saliency.target) == (layer, target or "label")
    loss, batch = step(next(iter(loader)))
    assert torch.isfinite(loss)
    assert (batch.meta["boxes"][:B] == -1).all() and (batch.meta["boxes"][B:, 0, 0] >= 0).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(SystemExit, match="saliency-guided"):
        train_example.model_saliency_method(get_method("cutout"))
