"""The method contract, run over every registered method (kornia's ``CommonTests`` idea): shapes, dtypes,
determinism, targets from ``(y, y_partner, lam)``, ``lam`` as the exact kept area of painted box masks,
``p=0`` equal to ``method="none"``, one draw per batch with ``mode="batch"``, named option errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from kernels import reference as ref
from pipelines.methods import METHODS, REGISTRY, CutMix, get_method, parse_method
from test_loader import SIZE, box_mask, make
from test_loader_mixing import opencv_saliency

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


@pytest.mark.parametrize("method", METHODS)
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
