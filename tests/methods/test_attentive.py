"""Attentive CutMix (training-side step of the loader) against an independent oracle: the extractor run
layer by layer, tests/oracles.py's sorted top-k and painted cell masks, the plain loader's pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import oracles as ref
from helpers import SIZE, make


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path, model.eval()


def attention_oracle(model, images):
    x = torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return x.mean(1).numpy()


def check_attentive_rows(plain, mixed, model, k):
    """Mixed rows keep their k most attended cells and take the rest from the partner; other rows untouched."""
    att = attention_oracle(model, plain.images)
    assert att.shape[1:] == (7, 7)
    keep = ref.upsample_cells(ref.topk_cells(att, k), SIZE, SIZE)
    for r in range(plain.images.shape[0]):
        p = int(mixed.meta["partner"][r])
        out = mixed.images[r].numpy()
        if p < 0:
            np.testing.assert_array_equal(out, plain.images[r].numpy())
            assert float(mixed.meta["lam"][r]) == 1.0 and torch.all(mixed.meta["boxes"][r] == -1)
            continue
        np.testing.assert_array_equal(out[:, keep[r]], plain.images[r].numpy()[:, keep[r]])
        np.testing.assert_array_equal(out[:, ~keep[r]], plain.images[p].numpy()[:, ~keep[r]])
        lam = keep[r].mean()
        assert float(mixed.meta["lam"][r]) == pytest.approx(lam, abs=1e-6)
        expect = lam * plain.targets[r].numpy() + (1 - lam) * plain.targets[p].numpy()
        np.testing.assert_allclose(mixed.targets[r].numpy(), expect, atol=1e-6)
        painted = np.zeros((SIZE, SIZE), bool)
        for y0, x0, y1, x1 in mixed.meta["boxes"][r].tolist():
            if y0 >= 0:
                painted[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(painted, ~keep[r])


def test_attentive_cutmix_keeps_topk_cells_and_pastes_the_rest(structured_root, checkpoint):
    path, model = checkpoint
    plain = next(iter(make(structured_root, batch=4, seed=5, copies=2)))
    mixed = next(iter(make(structured_root, batch=4, seed=5, copies=2, method="attentive_cutmix",
                           checkpoint=path, arch="resnet18", top_k=6)))
    for c in range(2):
        rows = list(range(c * 4, (c + 1) * 4))
        assert sorted(mixed.meta["partner"][rows].tolist()) == rows  # a permutation within the copy
    assert torch.all(mixed.meta["partner"] >= 0)  # p = 1: every row mixed
    check_attentive_rows(plain, mixed, model, 6)


def test_attentive_cutmix_batch_mode_with_p_keep_image_and_other_k(structured_root, checkpoint):
    """``mode="batch"`` (openmixup): one decision for the batch, then ``p_keep_image`` per row leaves rows whole."""
    path, model = checkpoint
    plain = next(iter(make(structured_root, batch=6, seed=9)))
    mixed = next(iter(make(structured_root, batch=6, seed=9, method="attentive_cutmix", mode="batch",
                           p_keep_image=0.5, checkpoint=path, arch="resnet18", top_k=10)))
    partner = mixed.meta["partner"].numpy()
    assert 0 < (partner < 0).sum() < len(partner)  # this seed keeps some rows whole and mixes others
    check_attentive_rows(plain, mixed, model, 10)
    never = next(iter(make(structured_root, batch=6, seed=9, method="attentive_cutmix", mode="batch", p=0.0,
                           checkpoint=path, arch="resnet18")))
    assert torch.equal(never.images, plain.images) and torch.all(never.meta["partner"] == -1)


@pytest.mark.parametrize("kw, match", [
    (dict(), "checkpoint"), (dict(checkpoint="/nonexistent.pth"), "checkpoint"),
    (dict(arch="no_such_net"), "arch"), (dict(arch="vgg11"), "arch"),
    (dict(top_k=-1), "top_k"),
])
def test_bad_arguments(structured_root, checkpoint, kw, match):
    kw = dict(kw)
    if "checkpoint" not in kw and match != "checkpoint":
        kw["checkpoint"] = checkpoint[0]
    with pytest.raises(ValueError, match=match):
        make(structured_root, method="attentive_cutmix", **kw)
