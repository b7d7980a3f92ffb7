"""Maps at the door (issue 23, class 2): the saliency maps a training loop hands to ``loader.occlude`` and
``loader.feedback`` are checked and put on one scale by one rule (``pipelines.loader.training_side.checked_maps``,
docs/model_saliency.md). A NaN, an infinity, a map with no positive value, a negative value, a huge or tiny
scale and an empty or malformed map, each against what the rule says happens, restated here: a row whose
map carries no saliency is left whole by ``occlude`` and pushed as "no map" by ``feedback`` (its sample falls
back), negative values count as 0, and the scale of a map never changes its boxes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import SIZE, make
from saliency.test_bank import bank_loader, holds_pushed_cell, hot_spot_maps, pick_points

B, M, S = 6, 2, 16


@pytest.fixture(scope="module")
def joint(structured_root):
    loader = make(structured_root, batch=B, method="saliency_occlusion", saliency="model", size=S, jitter=0,
                  copies=M, num_classes=3, seed=5)
    return loader, next(iter(loader))


def smooth_maps(n, seed=0):
    """Positive maps with one clear maximum window each."""
    rng = np.random.default_rng(seed)
    maps = rng.random((n, SIZE, SIZE)).astype(np.float32) * 0.1
    for r in range(n):
        y, x = rng.integers(0, SIZE - S, 2)
        maps[r, y:y + S, x:x + S] += 1.0
    return torch.from_numpy(maps)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "zeros", "negative"])
def test_a_map_without_saliency_leaves_its_row_whole(joint, bad):
    """Row 2's map is unusable: its rows (both copies) are not occluded (no box, lam 1, no partner, map_ok 0);
    every other row is what the clean maps give. (Before the rule, one NaN made the search erase the
    top-left corner.)"""
    loader, batch = joint
    maps = smooth_maps(B)
    want = loader.occlude(batch, maps)
    broken = maps.clone()
    if bad == "zeros":
        broken[2] = 0
    elif bad == "negative":
        broken[2] = -broken[2]
    else:
        broken[2, 5, 7] = float(bad)
    got = loader.occlude(batch, broken)
    rows = torch.tensor([2, B + 2])
    others = torch.ones(B * M, dtype=torch.bool)
    others[rows] = False
    assert (got.meta["boxes"][rows] == -1).all() and (got.meta["lam"][rows] == 1).all()
    assert (got.meta["map_ok"][rows] == 0).all() and (got.meta["map_ok"][others] == 1).all()
    assert torch.equal(got.images[rows], batch.images[rows])
    assert torch.equal(got.images[others], want.images[others])
    assert torch.equal(got.meta["boxes"][others], want.meta["boxes"][others])
    assert (want.meta["boxes"][B + 2] >= 0).all()  # the clean map occludes that row


def test_negative_values_count_as_zero(joint):
    loader, batch = joint
    maps = smooth_maps(B, seed=1)
    signed = maps - 0.5  # the background goes negative, the peaks stay positive
    got = loader.occlude(batch, signed)
    want = loader.occlude(batch, signed.clamp_min(0))
    assert torch.equal(got.meta["boxes"], want.meta["boxes"]) and torch.equal(got.images, want.images)


@pytest.mark.parametrize("scale, dtype", [(1e30, torch.float32), (1e-30, torch.float32), (2.0 ** 60, torch.float32),
                                          (1e300, torch.float64), (1.0, torch.float16), (255.0, torch.int64)])
def test_the_scale_and_type_of_a_map_never_change_its_boxes(joint, scale, dtype):
    """Each row is divided by its maximum: a loss-scaled gradient (fp16 GradScaler), a map overflowing float32
    if summed (1e300 in float64) and integer or half-precision maps search as the unit map does."""
    loader, batch = joint
    rng = np.random.default_rng(3)
    base = torch.from_numpy(rng.integers(1, 9, (B, SIZE, SIZE)).astype(np.float32) / 8)  # exact in every dtype
    want = loader.occlude(batch, base)
    scaled = (base.double() * scale).to(dtype) if dtype != torch.int64 else (base * 8).to(dtype)
    got = loader.occlude(batch, scaled)
    assert torch.equal(got.meta["boxes"], want.meta["boxes"]) and torch.equal(got.images, want.images)


@pytest.mark.parametrize("maps, match", [
    (torch.zeros(B, 0, 0), "h, w >= 1"),
    (torch.zeros(B, SIZE), r"\(N, h, w\)"),
    (torch.zeros(B + 1, SIZE, SIZE), r"N in \[6, 12\]"),
    (torch.zeros(B, SIZE, SIZE, dtype=torch.bool), "real numbers"),
    (torch.zeros(B, SIZE, SIZE, dtype=torch.complex64), "real numbers"),
    (np.zeros((B, SIZE, SIZE), np.float32), "tensor"),
])
def test_malformed_maps_are_refused_by_name(joint, maps, match):
    loader, batch = joint
    with pytest.raises(ValueError, match=f"occlude: .*{match}"):
        loader.occlude(batch, maps)


def test_feedback_refuses_malformed_maps(tiny_dataset, tmp_path):
    loader = bank_loader(tiny_dataset / "train", tmp_path / "bank.bin")
    try:
        batch = next(iter(loader))
        for maps, match in [(torch.zeros(BATCH, 0, 0), "h, w >= 1"), (torch.zeros(BATCH, 4), r"\(N, h, w\) tensor"),
                            (torch.zeros(BATCH, 8, 8, dtype=torch.bool), "real numbers")]:
            with pytest.raises(ValueError, match=f"feedback: .*{match}"):
                loader.feedback(batch, maps)
        with pytest.raises(ValueError, match="feedback: .*N in"):
            loader.feedback(batch, torch.ones(2, 8, 8), rows=[0, 1, 2])
    finally:
        loader.close()


BATCH = 6  # saliency.test_bank's batch


def test_feedback_pushes_a_map_without_saliency_as_no_map(tiny_dataset, tmp_path):
    """Epoch 0 pushes hot spots, except NaN / inf / all-zero maps for a third of the samples. In epoch 1 those
    samples fall back (``map_source`` 0: they were never pushed a usable map); the others read the bank.
    (Before the rule, such rows were stored as "saliency 0" and counted as read from the bank.)"""
    loader = bank_loader(tiny_dataset / "train", tmp_path / "bank.bin")
    points, broken, pushed = {}, set(), {}
    kinds = [float("nan"), float("inf"), 0.0]
    for batch in loader:  # epoch 0
        pick_points(batch, points)
        maps = hot_spot_maps(batch, points) + 0.01  # every map usable ...
        for r, s in enumerate(batch.meta["sample_id"].tolist()):
            if s % 3 == 0:  # ... but these
                kind = kinds[s % 9 // 3]
                maps[r] = 0.0 if kind == 0.0 else maps[r]
                maps[r, 1, 1] = kind
                broken.add(s)
        loader.feedback(batch, maps)
        for r, s in enumerate(batch.meta["sample_id"].tolist()):
            pushed[s] = (batch.meta["crop"][r].tolist(), batch.meta["image_size"][r].tolist())
    seen_broken = seen_good = 0
    for batch in loader:  # epoch 1
        for r, s in enumerate(batch.meta["sample_id"].tolist()):
            if not batch.meta["valid"][r] or s not in pushed:
                continue
            if s in broken:
                assert int(batch.meta["map_source"][r]) == 0, s
                seen_broken += 1
            elif holds_pushed_cell(pushed[s][0], batch.meta["crop"][r].tolist(), pushed[s][1]):
                assert int(batch.meta["map_source"][r]) == 1, s
                seen_good += 1
    assert seen_broken >= 3 and seen_good >= 6
