"""kernels.search against brute-force oracles: SaliencyMix peak, top-k cells, max window, KeepAugment."""
from __future__ import annotations

import numpy as np
import pytest

from kernels import reference as ref, search


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def contains(box, y, x):
    return box[0] <= y < box[2] and box[1] <= x < box[3]


# ------------------------------------------------------------------------------- integral image
def test_integral_image_and_window_sums(rng):
    s = rng.random((3, 13, 17)).astype(np.float32)
    ii = search.integral_image(s)
    expect = np.zeros((3, 14, 18))
    expect[:, 1:, 1:] = s.astype(np.float64).cumsum(1).cumsum(2)
    np.testing.assert_allclose(ii, expect, rtol=1e-12, atol=1e-12)
    for S, T in [(1, 1), (5, 1), (5, 3), (13, 2), (4, 7)]:
        ws = search.window_sums(s, S, T)
        for r in range(3):
            np.testing.assert_allclose(ws[r], ref.window_sums(s[r], S, T), rtol=1e-12, atol=1e-9)


# ----------------------------------------------------------------------------------- SaliencyMix
@pytest.mark.parametrize("quantize", [True, False])
def test_saliency_peak_box_matches_reference(rng, quantize):
    s = rng.random((12, 31, 26)).astype(np.float32)
    lam = rng.beta(1.0, 1.0, size=12)
    boxes, lam_c = search.saliency_peak_box(s, lam, quantize=quantize)
    for r in range(12):
        rb = ref.saliencymix_bbox(s[r], lam[r], quantize=quantize)
        np.testing.assert_array_equal(boxes[r], rb)
        assert lam_c[r] == pytest.approx(1 - (rb[2] - rb[0]) * (rb[3] - rb[1]) / (31 * 26), abs=1e-15)


def test_saliency_peak_box_contains_peak(rng):
    s = rng.random((20, 40, 40)).astype(np.float32)
    lam = rng.uniform(0.0, 0.9, size=20)  # cut // 2 >= 1, so the box is not empty
    boxes, _ = search.saliency_peak_box(s, lam)
    q = (s * 255).astype(np.uint8)
    for r in range(20):
        py, px = np.unravel_index(np.argmax(q[r]), q[r].shape)
        assert contains(boxes[r], py, px)


def test_saliency_peak_quantization_picks_first_of_merged_maxima():
    s = np.zeros((30, 30), np.float32)
    s[5, 5], s[20, 20] = 0.9990, 0.9995  # both quantise to 254
    box_q, _ = search.saliency_peak_box(s, 0.75)  # 2-D map: one box (batch mode)
    box_f, _ = search.saliency_peak_box(s, 0.75, quantize=False)
    assert box_q.shape == (4,) and contains(box_q, 5, 5) and not contains(box_q, 20, 20)
    assert contains(box_f, 20, 20)
    np.testing.assert_array_equal(box_q, ref.saliencymix_bbox(s, 0.75))


def test_saliency_peak_box_explicit_cut_and_clipping():
    s = np.zeros((2, 20, 30), np.float32)
    s[0, 0, 29] = 1.0
    s[1, 10, 10] = 1.0
    boxes, lam = search.saliency_peak_box(s, cut=(8, 10))
    np.testing.assert_array_equal(boxes, [[0, 24, 4, 30], [6, 5, 14, 15]])  # clipped, not shifted
    np.testing.assert_allclose(lam, [1 - 24 / 600, 1 - 80 / 600])


# ------------------------------------------------------------------------------ Attentive CutMix
def test_topk_cells_are_the_k_largest(rng):
    att = rng.random((10, 7, 7))
    for k in [0, 1, 6, 48, 49]:
        mask, lam = search.topk_cells(att, k)
        assert mask.dtype == bool and mask.shape == (10, 7, 7)
        np.testing.assert_array_equal(mask, ref.topk_cells(att, k))
        assert lam == k / 49
        if 0 < k < 49:
            lo = np.where(mask, att, np.inf).min(axis=(1, 2))
            hi = np.where(~mask, att, -np.inf).max(axis=(1, 2))
            assert np.all(lo > hi)


def test_topk_cells_ties_lower_index_first():
    att = np.zeros((2, 4, 3))
    att[0] = 1.0  # all tied: the first k in row-major order
    att[1, 2, 1] = att[1, 0, 2] = att[1, 3, 0] = 5.0
    mask, _ = search.topk_cells(att, 2)
    np.testing.assert_array_equal(np.flatnonzero(mask[0]), [0, 1])
    np.testing.assert_array_equal(np.flatnonzero(mask[1]), [2, 7])
    np.testing.assert_array_equal(mask, ref.topk_cells(att, 2))


# -------------------------------------------------------------------------- Fong & Vedaldi window
@pytest.mark.parametrize("H,W,S,T", [(24, 24, 6, 1), (31, 22, 9, 2), (40, 40, 13, 3), (16, 20, 16, 1)])
def test_max_window_equals_brute_force(rng, H, W, S, T):
    s = rng.random((6, H, W)).astype(np.float32)
    boxes = search.max_window(s, S, T)
    assert boxes.dtype == np.int32 and boxes.shape == (6, 4)
    for r in range(6):
        (y, x), best = ref.max_window(s[r], S, T)
        np.testing.assert_array_equal(boxes[r], [y, x, y + S, x + S])
        assert s[r, y:y + S, x:x + S].sum(dtype=np.float64) == pytest.approx(best, rel=1e-12)


def test_max_window_jitter_is_the_documented_uniform_in_image_shift(rng):
    H, W, S, tau = 40, 36, 14, 6
    s = rng.random((300, H, W)).astype(np.float32)
    s[:100, :3, :3] += 50.0   # peak window in the top-left corner: only inward shifts exist
    s[100:200, -3:, -3:] += 50.0
    plain = search.max_window(s, S, 1)
    jit = search.max_window(s, S, 1, tau, np.random.default_rng(1))
    assert np.all((jit[:, 0] >= 0) & (jit[:, 1] >= 0) & (jit[:, 2] <= H) & (jit[:, 3] <= W))
    np.testing.assert_array_equal(jit[:, 2:] - jit[:, :2], S)
    off = jit[:, :2] - plain[:, :2]
    assert np.abs(off).max() <= tau
    assert off[200:].min() == -tau and off[200:].max() == tau  # interior peaks: full range reached
    r = np.random.default_rng(1).integers(0, 2**31 - 1, size=(300, 2))  # documented draw
    for i in range(300):
        assert off[i, 0] == ref.jitter_shift(int(plain[i, 0]), H - S, tau, int(r[i, 0]))
        assert off[i, 1] == ref.jitter_shift(int(plain[i, 1]), W - S, tau, int(r[i, 1]))


def test_max_window_jitter_is_uniform_over_the_valid_shifts_at_the_border():
    """A window touching the top border (y0 = 0) and 2 px from the left one: the valid shifts are 0..tau in y
    and -2..tau in x, each equally likely (clipping a uniform draw would put ~half the mass on 0 / -2)."""
    H, W, S, tau, n = 30, 30, 10, 5, 24000
    s = np.zeros((1, H, W), np.float32)
    s[0, 0:S, 2:2 + S] = 1.0
    assert search.max_window(s, S)[0].tolist() == [0, 2, S, 2 + S]
    jit = search.max_window(np.broadcast_to(s, (n, H, W)), S, 1, tau, np.random.default_rng(3))
    for axis, valid in ((0, range(0, tau + 1)), (1, range(-2, tau + 1))):
        shifts = jit[:, axis] - (0, 2)[axis]
        counts = np.array([np.sum(shifts == d) for d in valid])
        assert counts.sum() == n  # no shift outside the valid set
        expect = n / len(valid)
        chi2 = float(((counts - expect) ** 2 / expect).sum())
        assert chi2 < 30.0, (axis, counts)  # df <= 7: p < 1e-4 for a uniform distribution


# --------------------------------------------------------------------------------- KeepAugment
def test_keep_region_scores_match_direct_sums(rng):
    s = rng.random((2, 15, 19)).astype(np.float32)
    for size in [2, 5, 8, 40]:
        sc = search.keep_region_scores(s, size)
        for r in range(2):
            np.testing.assert_allclose(sc[r], ref.keep_scores(s[r], size), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau", [0.6, 0.3, 0.9])
def test_selective_cut_below_and_paste_above_quantile(rng, tau):
    N, H, W, size = 10, 20, 24, 8
    s = rng.random((N, H, W)).astype(np.float32) ** 3
    cut = search.selective_cut(np.random.default_rng(5), s, size, tau)
    paste = search.selective_paste(np.random.default_rng(5), s, size, tau)
    rep = np.random.default_rng(5)  # the documented draws: all cy, then all cx
    cy, cx = rep.integers(0, H, size=(N, 32)), rep.integers(0, W, size=(N, 32))
    for r in range(N):
        scores = ref.keep_scores(s[r], size)
        thr = np.quantile(scores, tau)
        tries = list(zip(cy[r], cx[r]))
        for box, below in ((cut[r], True), (paste[r], False)):
            k = ref.keep_pick(scores, tries, tau, below)
            np.testing.assert_array_equal(box, ref.cutout_box(cy[r, k], cx[r, k], size, H, W))
            y0, x0, y1, x1 = box
            score = s[r, y0:y1, x0:x1].sum(dtype=np.float64)  # Gong et al. Eq. 1
            tried = scores[cy[r], cx[r]]
            if ((tried < thr) if below else (tried > thr)).any():
                assert (score < thr) if below else (score > thr)


def test_selective_draw_order_and_fallback():
    N, H, W, size, tries = 4, 12, 10, 4, 5
    rep = np.random.default_rng(9)
    cy, cx = rep.integers(0, H, size=(N, tries)), rep.integers(0, W, size=(N, tries))
    # tau = 0: no score is below the minimum, so the fallback decides: the lowest-scoring try, the first
    # among equal ones (a constant map's interior boxes all score alike)
    flat = np.full((N, H, W), 0.5, np.float32)
    got = search.selective_cut(np.random.default_rng(9), flat, size, 0.0, max_tries=tries)
    scores = ref.keep_scores(flat[0], size)
    for r in range(N):
        tried = [scores[y, x] for y, x in zip(cy[r], cx[r])]
        j = tried.index(min(tried))
        np.testing.assert_array_equal(got[r], ref.cutout_box(cy[r, j], cx[r, j], size, H, W))
    # a map whose qualifying region is tiny: the first qualifying try wins, else the lowest-scoring try
    s = np.random.default_rng(3).random((N, H, W)).astype(np.float32)
    got = search.selective_cut(np.random.default_rng(9), s, size, 0.6, max_tries=tries)
    for r in range(N):
        j = ref.keep_pick(ref.keep_scores(s[r], size), list(zip(cy[r], cx[r])), 0.6, True)
        np.testing.assert_array_equal(got[r], ref.cutout_box(cy[r, j], cx[r, j], size, H, W))


def test_selective_2d_map_and_reproducible(rng):
    s = rng.random((18, 18)).astype(np.float32)
    a = search.selective_paste(np.random.default_rng(1), s, 6)
    b = search.selective_paste(np.random.default_rng(1), s, 6)
    assert a.shape == (4,)
    np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------------------- invalid args
@pytest.mark.parametrize("call, words", [
    (lambda s: search.max_window(s, 0), "S must be"),
    (lambda s: search.max_window(s, 17), "S must be"),
    (lambda s: search.max_window(s, 4, 0), "T must be"),
    (lambda s: search.max_window(s, 4, 1, -1), "tau must be"),
    (lambda s: search.max_window(s, 4, 1, 3), "rng"),
    (lambda s: search.max_window(s[None], 4), "saliency"),
    (lambda s: search.saliency_peak_box(s), "exactly one of lam= or cut="),
    (lambda s: search.saliency_peak_box(s, 0.5, cut=(2, 2)), "exactly one"),
    (lambda s: search.saliency_peak_box(s, 1.5), "lam must lie"),
    (lambda s: search.saliency_peak_box(s, np.ones(3) * 0.5), r"lam must be a scalar or have shape \(2,\)"),
    (lambda s: search.saliency_peak_box(s, cut=(2.5, 3)), "cut must be"),
    (lambda s: search.topk_cells(s[0], 2), "attention"),
    (lambda s: search.topk_cells(s, 16 * 16 + 1), "k must be"),
    (lambda s: search.topk_cells(np.full_like(s, np.nan), 2), "NaN"),
    (lambda s: search.selective_cut(np.random.default_rng(0), s, 1), "size must be"),
    (lambda s: search.selective_cut(np.random.default_rng(0), s, 4, tau=1.5), "tau must be"),
    (lambda s: search.selective_paste(np.random.default_rng(0), s, 4, max_tries=0), "max_tries must be"),
    (lambda s: search.selective_paste(None, s, 4), "rng must be"),
])
def test_invalid_arguments_raise_value_error(call, words):
    s = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=words):
        call(s)
