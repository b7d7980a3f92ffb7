"""The method contract, run over every registered method (kornia's ``CommonTests`` idea), and the methods
added through the registry (MixUp, timm's CutMix/MixUp switch, KeepCutMix) against oracles restated
from their papers / reference codes: painted box masks, exact box areas, ``lam * x + (1 - lam) * x_j``,
OpenCV's saliency with the KeepAugment region sums and ``numpy.quantile``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import oracles as ref
from pipelines.methods import METHODS, REGISTRY, CutMix, get_method, parse_method
from helpers import SIZE, box_mask, make, opencv_saliency

B, M, NUM_CLASSES, SMOOTH = 6, 2, 3, 0.1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    return str(path)


def options(method, checkpoint, **kw):
    """Options every method can run with here: the attention extractor needs a checkpoint, and the
    window / region sides must fit the 64 px test images."""
    if method == "attentive_cutmix":
        kw.update(checkpoint=checkpoint, arch="resnet18")
    if method in ("cutout", "saliency_occlusion", "keep_cutout", "keep_paste"):
        kw.setdefault("size", 16)
    return kw


def first(root, method="none", **kw):
    kw.setdefault("copies", M)
    kw.setdefault("num_classes", NUM_CLASSES)
    return next(iter(make(root, batch=B, method=method, **kw)))


@pytest.fixture(scope="module")
def plain(structured_root):
    return first(structured_root, seed=3)


# saliencymix's official saliency (the map of the normalised float image) builds a different graph: run it too
@pytest.mark.parametrize("method", [*METHODS, "saliencymix:saliency_input=official"])
def test_contract(structured_root, checkpoint, plain, method):
    opts = options(method, checkpoint)
    a = first(structured_root, method, seed=3, label_smoothing=SMOOTH, **opts)
    b = first(structured_root, method, seed=3, label_smoothing=SMOOTH, **opts)
    # shapes and dtypes
    n = B * M
    assert a.images.shape == (n, 3, SIZE, SIZE) and a.images.dtype == torch.float32
    assert a.targets.shape == (n, NUM_CLASSES) and a.targets.dtype == torch.float32
    assert a.labels.shape == (n,) and a.labels.dtype == torch.int64
    for key, shape in (("sample_id", (n,)), ("copy", (n,)), ("partner", (n,)), ("lam", (n,)), ("crop", (n, 4)),
                       ("flip", (n,)), ("valid", (n,))):
        assert tuple(a.meta[key].shape) == shape, key
    assert a.meta["boxes"].ndim == 3 and a.meta["boxes"].shape[0] == n and a.meta["boxes"].shape[2] == 4
    # same seed, same batch
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    for key in a.meta:
        assert torch.equal(a.meta[key], b.meta[key]), key
    # the crops and flips are the method's surroundings: equal to method="none"'s
    assert torch.equal(a.meta["crop"], plain.meta["crop"]) and torch.equal(a.meta["flip"], plain.meta["flip"])
    # targets = lam * onehot(y) + (1 - lam) * onehot(y_partner), timm's smoothing on both
    lam, partner, labels = a.meta["lam"].numpy(), a.meta["partner"].numpy(), a.labels.numpy()
    for r in range(n):
        if partner[r] >= 0:
            assert int(a.meta["copy"][partner[r]]) == int(a.meta["copy"][r])  # a partner from the same copy
        else:
            assert lam[r] == 1.0
        expect = np.full(NUM_CLASSES, SMOOTH / NUM_CLASSES)
        expect[labels[r]] += lam[r] * (1 - SMOOTH)
        expect[labels[partner[r]] if partner[r] >= 0 else labels[r]] += (1 - lam[r]) * (1 - SMOOTH)
        np.testing.assert_allclose(a.targets[r].numpy(), expect, atol=1e-6)
    # lam is the exact kept area of the row's boxes, whenever the row's pixels come from boxes
    for r in range(n):
        mask = box_mask(a.meta["boxes"][r])
        if partner[r] >= 0 and mask.any():
            assert lam[r] == pytest.approx(1.0 - mask.sum() / SIZE ** 2, abs=1e-6)
        elif partner[r] < 0:
            assert lam[r] == 1.0
    # p=0 leaves every row exactly as method="none" (keep_paste: with its policy, which runs on every row)
    zero = first(structured_root, method, seed=3, **options(method, checkpoint, p=0.0))
    policy = get_method(method, **opts).default_policy
    base = plain if policy is None else first(structured_root, seed=3, auto_augment=policy)
    assert torch.equal(zero.images, base.images)
    assert torch.all(zero.meta["partner"] == -1) and torch.all(zero.meta["lam"] == 1)
    assert torch.all(zero.meta["boxes"] == -1)


@pytest.mark.parametrize("method", [m for m in METHODS if "batch" in REGISTRY[m].modes and m != "none"])
def test_mode_batch_shares_one_draw(structured_root, checkpoint, method):
    """``mode="batch"``: one apply decision per batch and copy (and one box / lam where the method draws one)."""
    batch = first(structured_root, method, seed=5, **options(method, checkpoint, mode="batch", p=0.5))
    partner, boxes = batch.meta["partner"].numpy(), batch.meta["boxes"].numpy()
    decided = 0
    for c in range(M):
        rows = slice(c * B, (c + 1) * B)
        touched = (partner[rows] >= 0) | (boxes[rows] >= 0).any(axis=(1, 2))
        assert touched.all() or not touched.any()
        decided += touched.all()
        if method in ("cutout", "hide_and_seek", "cutmix", "cutmix_mixup", "mixup"):
            assert (boxes[rows] == boxes[rows][0]).all()
            assert (batch.meta["lam"].numpy()[rows] == batch.meta["lam"].numpy()[rows][0]).all()


@pytest.mark.parametrize("method", METHODS)
def test_bad_options_are_named(checkpoint, method):
    with pytest.raises(ValueError, match=f"method '{method}' has no option.*no_such_option.*its options are p, mode"):
        get_method(method, no_such_option=1, **options(method, checkpoint))
    with pytest.raises(ValueError, match="p must be a probability"):
        get_method(method, p=1.5, **options(method, checkpoint))
    with pytest.raises(ValueError, match="mode must be one of"):
        get_method(method, mode="diagonal", **options(method, checkpoint))


def test_method_strings_and_objects():
    assert parse_method("cutmix:alpha=0.5,p=0.25") == ("cutmix", {"alpha": 0.5, "p": 0.25})
    assert parse_method("hide_and_seek:patch_sizes=(56,),mode=batch") == (
        "hide_and_seek", {"patch_sizes": (56,), "mode": "batch"})
    assert get_method("cutmix:alpha=0.5,p=0.25") == CutMix(alpha=0.5, p=0.25) == get_method("cutmix", alpha=0.5, p=0.25)
    assert get_method(CutMix(alpha=2.0)) == CutMix(alpha=2.0)
    with pytest.raises(ValueError, match="beside the method object"):
        get_method(CutMix(), alpha=2.0)
    with pytest.raises(ValueError, match="both in"):
        get_method("cutmix:alpha=0.5", alpha=1.0)
    with pytest.raises(ValueError, match="expected key=value"):
        get_method("cutmix:alpha")
    with pytest.raises(ValueError, match="unknown method 'cutmixx'"):
        get_method("cutmixx:alpha=1")


def test_loader_takes_method_objects_and_strings(structured_root):
    a = first(structured_root, CutMix(alpha=0.5), seed=2)
    b = first(structured_root, "cutmix:alpha=0.5", seed=2)
    c = first(structured_root, "cutmix", alpha=0.5, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.images, c.images)


# ------------------------------------------------------------------------------------------- MixUp
@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_mixup_is_lam_x_plus_one_minus_lam_partner(structured_root, plain, mode):
    """Zhang et al. 2018 / facebookresearch mixup_data: ``lam * x + (1 - lam) * x[index]``, ``index`` a
    permutation; labels mixed by lam."""
    mixed = first(structured_root, "mixup", seed=3, mode=mode, alpha=0.4, p_keep_image=(0.0, 0.5))
    partner, lam = mixed.meta["partner"].numpy(), mixed.meta["lam"].numpy()
    assert (mixed.meta["boxes"] == -1).all()
    for c in range(M):
        rows = np.arange(c * B, (c + 1) * B)
        if c == 0:  # p_keep_image 0: every row mixed, partners a permutation of the copy's rows
            assert sorted(partner[rows]) == list(rows)
        if mode == "batch":
            assert len(set(lam[rows][partner[rows] >= 0])) <= 1
    assert ((partner < 0) & (np.arange(B * M) >= B)).any()  # copy 1 keeps some rows whole
    x = plain.images.numpy().astype(np.float64)
    for r in range(B * M):
        if partner[r] < 0:
            np.testing.assert_array_equal(mixed.images[r].numpy(), plain.images[r].numpy())
            continue
        assert 0.0 < lam[r] < 1.0
        np.testing.assert_allclose(mixed.images[r].numpy(), lam[r] * x[r] + (1 - lam[r]) * x[partner[r]], atol=2e-6)


# ----------------------------------------------------------------------------------- CutMix / MixUp
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_cutmix_mixup_follows_timm(structured_root, plain, mode):
    """timm ``Mixup``: partner ``x.flip(0)``; per batch / pair / row either CutMix (box of the
    ``int(S * sqrt(1 - lam))`` side, exact-area lam) or MixUp (``lam * x + (1 - lam) * x_orig[j]``)."""
    kinds = set()
    for seed in (1, 2, 3):
        mixed = first(structured_root, "cutmix_mixup", seed=seed, mode=mode, p=0.8)
        base = first(structured_root, seed=seed)
        partner, lam, boxes = mixed.meta["partner"].numpy(), mixed.meta["lam"].numpy(), mixed.meta["boxes"].numpy()
        x = base.images.numpy().astype(np.float64)
        for c in range(M):
            rows = np.arange(c * B, (c + 1) * B)
            flipped = rows[::-1]
            assert np.all((partner[rows] == -1) | (partner[rows] == flipped))
            kind = {}
            for i, r in enumerate(rows):
                out = mixed.images[r].numpy()
                mask = box_mask(boxes[r])
                if partner[r] < 0:
                    kind[i] = "none"
                    np.testing.assert_array_equal(out, base.images[r].numpy())
                elif mask.any():
                    kind[i] = "cutmix"
                    np.testing.assert_array_equal(out[:, mask], base.images[partner[r]].numpy()[:, mask])
                    np.testing.assert_array_equal(out[:, ~mask], base.images[r].numpy()[:, ~mask])
                    assert lam[r] == pytest.approx(1 - mask.sum() / SIZE ** 2, abs=1e-6)
                else:
                    kind[i] = "mixup"
                    np.testing.assert_allclose(out, lam[r] * x[r] + (1 - lam[r]) * x[partner[r]], atol=2e-6)
            kinds |= set(kind.values())
            if mode == "batch":
                assert len(set(kind.values())) == 1 and len(set(lam[rows])) == 1
            if mode == "pair":  # rows i and B-1-i: the same draw, each mixed with the other's original
                for i in range(B // 2):
                    j = B - 1 - i
                    assert kind[i] == kind[j] and lam[rows[i]] == lam[rows[j]]
                    assert (boxes[rows[i]] == boxes[rows[j]]).all()
    assert {"cutmix", "mixup"} <= kinds


def test_cutmix_mixup_options():
    with pytest.raises(ValueError, match="switch_prob"):
        get_method("cutmix_mixup", switch_prob=2.0)
    with pytest.raises(ValueError, match="mixup_alpha"):
        get_method("cutmix_mixup", mixup_alpha=0.0)
    assert get_method("cutmix_mixup").mode == "batch"  # timm's default


# ------------------------------------------------------------------------------------------ KeepCutMix
@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_keep_cutmix_cuts_a_region_below_the_quantile_and_pastes_the_partner(structured_root, plain, mode):
    """Gong et al. Table 6 KeepCutMix: the CutMix-sized region of the *target* chosen by selective-cut (its
    saliency sum below the tau-quantile of every region of that side), filled from the partner."""
    tau = 0.6
    mixed = first(structured_root, "keep_cutmix", seed=3, mode=mode, tau=tau)
    partner, lam = mixed.meta["partner"].numpy(), mixed.meta["lam"].numpy()
    checked = 0
    for r in range(B * M):
        p = partner[r]
        assert p >= 0  # p = 1
        y0, x0, y1, x1 = mixed.meta["boxes"][r, 0].tolist()
        mask = box_mask(mixed.meta["boxes"][r])
        out = mixed.images[r].numpy()
        np.testing.assert_array_equal(out[:, mask], plain.images[p].numpy()[:, mask])
        np.testing.assert_array_equal(out[:, ~mask], plain.images[r].numpy()[:, ~mask])
        assert lam[r] == pytest.approx(1 - mask.sum() / SIZE ** 2, abs=1e-6)
        if not mask.any():
            continue
        sal = opencv_saliency(plain.images[r])
        # the region is clip(c -+ h) for the row's cut side 2h (or 2h + 1): some such centred box, whose
        # saliency sum is below the tau-quantile of every region of that side
        below = []
        for h in range(1, SIZE // 2 + 1):
            centres = [(cy, cx) for cy in (y0 + h, y1 - h) for cx in (x0 + h, x1 - h)]
            if any(ref.cutout_box(cy, cx, 2 * h, SIZE, SIZE) == (y0, x0, y1, x1) for cy, cx in centres):
                scores = ref.keep_scores(sal, 2 * h)
                below.append(sal[y0:y1, x0:x1].astype(np.float64).sum() < np.quantile(scores, tau))
        assert below and any(below), (r, (y0, x0, y1, x1))
        checked += 1
    assert checked >= B
