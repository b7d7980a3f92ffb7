"""kernels.boxes.cutmix_box against a literal re-statement of clovaai's rand_bbox on the same draws."""
from __future__ import annotations

import numpy as np
import pytest

import oracles as ref
from kernels import boxes as mix

SIZES = [(224, 224), (32, 32), (193, 257), (7, 3), (1, 1)]


@pytest.mark.parametrize("H,W", SIZES)
@pytest.mark.parametrize("alpha", [1.0, 0.2, 5.0])
def test_batch_box_matches_clovaai_rand_bbox(H, W, alpha):
    for seed in range(25):
        ours_rng, ref_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        box, lam = mix.cutmix_box(ours_rng, H, W, alpha)
        rbox, rlam = ref.clovaai_cutmix_batch(ref_rng, H, W, alpha)
        assert box.shape == (4,) and box.dtype == np.int32
        np.testing.assert_array_equal(box, rbox)
        assert isinstance(lam, float) and lam == rlam
        assert ours_rng.random() == ref_rng.random()  # same number of draws consumed


@pytest.mark.parametrize("H,W", SIZES)
def test_row_boxes_match_clovaai_rand_bbox_per_row(H, W):
    for seed in range(5):
        boxes, lam = mix.cutmix_box(np.random.default_rng(seed), H, W, 1.0, n=33)
        rboxes, rlam = ref.clovaai_cutmix_rows(np.random.default_rng(seed), H, W, 1.0, 33)
        assert boxes.shape == (33, 4) and boxes.dtype == np.int32 and lam.shape == (33,)
        np.testing.assert_array_equal(boxes, rboxes)
        np.testing.assert_array_equal(lam, rlam)


def test_lam_is_exact_kept_share_and_boxes_inside():
    H, W = 45, 61
    boxes, lam = mix.cutmix_box(np.random.default_rng(7), H, W, 1.0, n=200)
    painted = ref.union_mask(boxes[:, None], H, W)
    np.testing.assert_allclose(lam, 1 - painted.mean(axis=(1, 2)), rtol=0, atol=1e-12)
    assert np.all((boxes[:, 0] >= 0) & (boxes[:, 2] <= H) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= W))
    assert np.all((boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3]))


def test_unclipped_box_side_and_uniform_centre():
    """Algorithm A1: side int(size*sqrt(1-lam)) rounded down to even by // 2; centres reach the border."""
    H = W = 224
    rng = np.random.default_rng(3)
    boxes, _ = mix.cutmix_box(rng, H, W, 1.0, n=4000)
    lam_raw = np.random.default_rng(3).beta(1.0, 1.0, size=4000)
    cut = (H * np.sqrt(1 - lam_raw)).astype(int)
    inside = (boxes[:, 0] > 0) & (boxes[:, 2] < H) & (boxes[:, 1] > 0) & (boxes[:, 3] < W)
    assert inside.sum() > 100
    np.testing.assert_array_equal((boxes[:, 2] - boxes[:, 0])[inside], 2 * (cut[inside] // 2))
    assert (boxes[:, 0] == 0).any() and (boxes[:, 2] == H).any()  # clipped, not shifted


def test_same_seed_same_boxes():
    a = mix.cutmix_box(np.random.default_rng(11), 64, 48, 1.0, n=8)
    b = mix.cutmix_box(np.random.default_rng(11), 64, 48, 1.0, n=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert mix.cutmix_box(np.random.default_rng(0), 8, 8, n=0)[0].shape == (0, 4)


@pytest.mark.parametrize("kwargs, words", [
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=-1.0), "alpha"),
    (dict(alpha=float("nan")), "alpha"),
    (dict(H=0), "H must be"),
    (dict(W=2.5), "W must be"),
    (dict(n=-1), "n must be"),
    (dict(n=2.0), "n must be"),
    (dict(rng=np.random), "rng"),
])
def test_invalid_arguments_raise_value_error(kwargs, words):
    args = dict(rng=np.random.default_rng(0), H=32, W=32, alpha=1.0, n=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        mix.cutmix_box(**args)
    with pytest.raises(ValueError, match=repr(list(kwargs.values())[0]) if "rng" not in kwargs else "module"):
        mix.cutmix_box(**args)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_plan_batch_mode_cutmix_is_the_reference_step_for_a_fixed_seed(alpha):
    """``mode="batch"``: the loader's plan for a batch key gives every row clovaai's box and corrected lambda,
    drawn from the batch generator after the documented crop, flip and partner draws."""
    from kernels.crops import random_resized_crop
    from pipelines.methods import get_method
    from pipelines.loader.plan import RATIO, SCALE, AugmentConfig, batch_rng, plan_batch

    heights, widths = np.array([300, 480, 224, 375, 500, 333]), np.array([400, 360, 224, 500, 281, 500])
    cfg = AugmentConfig(method=get_method("cutmix", mode="batch", alpha=alpha))
    for batch_index in range(5):
        plan = plan_batch(cfg, batch_rng(11, 0, batch_index, 0), heights, widths)
        replay = batch_rng(11, 0, batch_index, 0)
        random_resized_crop(replay, heights, widths, SCALE, RATIO)
        replay.random(len(heights))  # flips
        perm = replay.permutation(len(heights))
        rbox, rlam = ref.clovaai_cutmix_batch(replay, cfg.output_size, cfg.output_size, alpha)
        np.testing.assert_array_equal(plan["partner"][:, 0], perm)
        for row in range(len(heights)):
            np.testing.assert_array_equal(plan["boxes"][row, 0, 0], rbox)
            assert plan["lam"][row, 0] == pytest.approx(rlam, abs=1e-7)
