"""dali_ops.mixing operators in CPU pipelines against the NumPy oracles of tests/oracles.py (sliced and
painted boxes, brute-force window sums, the SaliencyMix reference's box rule, KeepAugment restated)."""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

import oracles as ref
from conftest import requires_gpu
from helpers import feeder, random_boxes, run_op, search_both
from dali_ops import mixing


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def images_of(rng, dtype, shape):
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("layout, dtype", [("CHW", "float32"), ("HWC", "uint8"), ("CHW", "float16")])
def test_paste_boxes_by_partner_index_matches_clovaai_slicing(rng, layout, dtype):
    n, H, W = 5, 11, 14
    x = images_of(rng, dtype, (n, 3, H, W))
    partner = np.array([3, -1, 0, 3, 4], np.int32)  # -1: no partner, the row stays as it is
    boxes = random_boxes(rng, n, 2, H, W)
    feed = x if layout == "CHW" else x.transpose(0, 2, 3, 1)
    (out,) = run_op([list(np.ascontiguousarray(feed)), list(boxes), list(partner)],
                    lambda im, b, idx: mixing.paste_boxes(im, b, partner_index=idx), n,
                    layouts=(layout,), num_threads=2)
    expect = ref.paste_nchw(x, partner, np.where(partner[:, None, None] < 0, -1, boxes))
    for i in range(n):
        got = out[i] if layout == "CHW" else out[i].transpose(2, 0, 1)
        np.testing.assert_array_equal(got, expect[i])


def test_paste_boxes_from_another_batch_row_by_row(rng):
    """KeepAugment's selective-paste: row i takes ``partners[i]`` inside its box."""
    n, H, W = 3, 9, 12
    aug = images_of(rng, "uint8", (n, H, W, 3))
    orig = images_of(rng, "uint8", (n, H, W, 3))
    boxes = random_boxes(rng, n, 2, H, W)
    (out,) = run_op([list(aug), list(boxes), list(orig)], lambda a, b, o: mixing.paste_boxes(a, b, o), n,
                    layouts=("HWC", None, "HWC"))
    both = np.concatenate([aug, orig]).transpose(0, 3, 1, 2)
    expect = ref.paste_nchw(both, np.r_[np.arange(n) + n, -np.ones(n, int)], np.concatenate([boxes, boxes]))
    for i in range(n):
        np.testing.assert_array_equal(out[i], expect[i].transpose(1, 2, 0))


@pytest.mark.parametrize("make, match", [
    (lambda im, b: mixing.paste_boxes(im, b, partner_index=fn.constant(idata=7, dtype=types.INT32)),
     "partner_index"),
    (lambda im, b: mixing.paste_boxes(fn.reshape(im, layout=""), b, im), "layout"),
])
def test_paste_boxes_rejects_bad_inputs_naming_them(rng, make, match):
    x = list(images_of(rng, "float32", (2, 3, 5, 6)))
    boxes = list(random_boxes(rng, 2, 1, 5, 6))
    with pytest.raises(RuntimeError, match=match):
        run_op([x, boxes], make, 2, layouts=("CHW",))


NORM_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
NORM_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def _normalize_occlude_case(rng, device, dtype):
    """(crop_mirror_normalize outputs, fused erase, fused paste, fused without boxes) for one batch."""
    from nvidia.dali import types

    n, H, W = 7, 21, 26
    imgs = list(rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8))
    mirror = list(rng.integers(0, 2, n).astype(np.int32))
    boxes = random_boxes(rng, n, 3, H, W)
    boxes[0] = boxes[2] = [[2, 3, 10, 12], [5, 8, 15, 20], [2, 12, 6, 18]]  # overlapping and touching
    partner = np.array([3, -1, 0, 6, 6, 2, 1], np.int32)
    fill = [0.5, -1.0, 2.0]
    kind = types.FLOAT if dtype == "float32" else types.FLOAT16

    @pipeline_def(batch_size=n, num_threads=2, device_id=0 if device == "gpu" else None, seed=0)
    def pipe():
        def node(b, layout=None):
            x = fn.external_source(source=feeder(b), batch=True, layout=layout)
            return x.gpu() if device == "gpu" else x
        u8, b, idx = node(imgs, "HWC"), node(list(boxes)), node(list(partner))
        m = fn.external_source(source=feeder(mirror), batch=True)
        kw = dict(mirror=m, mean=NORM_MEAN, std=NORM_STD, dtype=dtype, device=device)
        return (fn.crop_mirror_normalize(u8, dtype=kind, output_layout="CHW", mirror=m, mean=NORM_MEAN,
                                         std=NORM_STD),
                mixing.normalize_occlude(u8, b, fill=fill, **kw), mixing.normalize_occlude(u8, b, idx, **kw),
                mixing.normalize_occlude(u8, **kw))

    p = pipe()
    p.build()
    outs = [np.stack([np.array(t) for t in (o.as_cpu() if hasattr(o, "as_cpu") else o)]) for o in p.run()]
    cmn, erased, pasted, plain = outs
    np.testing.assert_array_equal(plain, cmn)  # bit for bit crop_mirror_normalize's arithmetic
    np.testing.assert_array_equal(erased, ref.erase_nchw(cmn, boxes, np.array(fill, cmn.dtype)))
    np.testing.assert_array_equal(pasted, ref.paste_nchw(cmn, partner, np.where(partner[:, None, None] < 0, -1,
                                                                                   boxes)))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_normalize_occlude_is_crop_mirror_normalize_then_the_oracles(rng, dtype):
    _normalize_occlude_case(rng, "cpu", dtype)


@requires_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gpu_normalize_occlude_is_crop_mirror_normalize_then_the_oracles(rng, dtype):
    _normalize_occlude_case(rng, "gpu", dtype)


def test_normalize_occlude_rejects_bad_arguments(rng):
    x = list(images_of(rng, "uint8", (2, 5, 6, 3)))
    with pytest.raises(RuntimeError, match="std"):
        run_op([x], lambda im: mixing.normalize_occlude(im, mean=[0], std=[0.0]), 2, layouts=("HWC",))
    with pytest.raises(RuntimeError, match="mean"):
        run_op([x], lambda im: mixing.normalize_occlude(im, mean=[1, 2], std=[1]), 2, layouts=("HWC",))
    boxes = list(random_boxes(rng, 2, 1, 5, 6))
    with pytest.raises(RuntimeError, match="`fill` has 2 values"):
        run_op([x, boxes], lambda im, b: mixing.normalize_occlude(im, b, mean=[0], std=[1], fill=[1.0, 2.0]), 2,
               layouts=("HWC",))
    with pytest.raises(ValueError, match="dtype"):
        mixing.normalize_occlude(None, mean=0, std=1, dtype="int8")


def test_normalize_occlude_blend_is_mixup_of_the_normalised_rows(rng):
    """``blend`` w: outside the boxes a row with a partner is ``own * w + partner * (1 - w)`` of the
    normalised values (MixUp, Zhang et al. 2018), each row with its own mirror; w = 1 and rows without a
    partner are crop_mirror_normalize's output bit for bit; inside the boxes the partner's pixels."""
    n, H, W = 6, 9, 14
    imgs = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    mirror = rng.integers(0, 2, n).astype(np.int32)
    partner = np.array([2, -1, 0, 5, 3, 4], np.int32)
    blend = np.array([0.25, 0.5, 1.0, 0.0, 0.7, 0.9], np.float32)
    boxes = np.full((n, 1, 4), -1, np.int32)
    boxes[4] = [[1, 2, 5, 9]]
    mean, std = np.array(NORM_MEAN, np.float32), np.array(NORM_STD, np.float32)

    def op(u8, b, idx, m, w):
        kw = dict(mirror=m, mean=NORM_MEAN, std=NORM_STD)
        return mixing.normalize_occlude(u8, b, idx, w, **kw), mixing.normalize_occlude(u8, **kw)

    mixed, plain = run_op([list(imgs), list(boxes), list(partner), list(mirror), list(blend)], op, n,
                          layouts=("HWC",), num_threads=2)
    inv = (np.float32(1) / std).astype(np.float32)
    norm = [((np.where(mirror[i], imgs[i][:, ::-1], imgs[i]).astype(np.float32) - mean) * inv).transpose(2, 0, 1)
            for i in range(n)]
    for i in range(n):
        np.testing.assert_array_equal(plain[i], norm[i])
        p = partner[i]
        if p < 0 or blend[i] == 1:
            expect = norm[i].copy()
        else:
            expect = norm[i] * blend[i] + norm[p] * (np.float32(1) - blend[i])
        mask = box_mask_of(boxes[i], H, W)
        if p >= 0:
            expect[:, mask] = norm[p][:, mask]
        np.testing.assert_allclose(mixed[i], expect, rtol=0, atol=1e-6)
        if p < 0 or blend[i] == 1:
            np.testing.assert_array_equal(mixed[i], expect)
    with pytest.raises(RuntimeError, match="blend"):
        run_op([list(imgs), list(boxes), list(partner), list(mirror), list(blend + 1)], op, n, layouts=("HWC",))
    with pytest.raises(ValueError, match="blend needs partner_index"):
        mixing.normalize_occlude(None, None, None, 0.5, mean=0, std=1)


def box_mask_of(boxes, H, W):
    mask = np.zeros((H, W), bool)
    for y0, x0, y1, x1 in boxes:
        if y0 >= 0:
            mask[max(y0, 0):y1, max(x0, 0):x1] = True
    return mask


def test_keep_box_with_one_region_side_per_row(rng):
    """KeepCutMix: ``size`` as a per-row input searches each row's regions of its own side (0 and 1 give
    an empty region: nothing is cut)."""
    n, H, W, tau, tries = 5, 12, 15, 0.6, 6
    sal = rng.random((n, H, W)).astype(np.float32)
    sizes = np.array([4, 7, 2, 1, 11], np.int32)
    t = np.stack([rng.integers(0, H, (n, tries)), rng.integers(0, W, (n, tries))], -1).astype(np.int32)
    (out,) = run_op([list(sal), list(t), list(sizes)],
                    lambda s, c, z: mixing.keep_box(s, c, size=z, tau=tau, selective="cut"), n)
    for i in range(n):
        scores = ref.keep_scores(sal[i], int(sizes[i]))
        tried = scores[t[i, :, 0], t[i, :, 1]]
        ok = tried < np.quantile(scores, tau)
        k = int(np.argmax(ok)) if ok.any() else int(np.argmin(tried))
        np.testing.assert_array_equal(out[i][0], ref.cutout_box(t[i, k, 0], t[i, k, 1], int(sizes[i]), H, W))
    with pytest.raises(RuntimeError, match="size"):
        run_op([list(sal), list(t), list(sizes - 5)],
               lambda s, c, z: mixing.keep_box(s, c, size=z, tau=tau, selective="cut"), n)


@pytest.mark.parametrize("quantize", [True, False])
def test_saliency_peak_box_matches_official_saliency_bbox(rng, quantize):
    n, H, W = 6, 23, 31
    sal = rng.random((n, H, W)).astype(np.float32)
    sal[0] = np.round(sal[0] * 4) / 4  # ties: the first maximum wins
    lam = rng.beta(1.0, 1.0, n)
    cut = np.stack([(H * np.sqrt(1 - lam)).astype(np.int32), (W * np.sqrt(1 - lam)).astype(np.int32)], -1)
    (out,) = run_op([list(sal), list(cut.astype(np.int32))],
                    lambda s, c: mixing.saliency_peak_box(s, c, quantize=quantize), n)
    for i in range(n):
        assert out[i].shape == (1, 4) and out[i].dtype == np.int32
        np.testing.assert_array_equal(out[i][0], ref.saliencymix_bbox(sal[i], lam[i], quantize=quantize))


@pytest.mark.parametrize("H, W, S, T, levels", [(20, 26, 7, 3, 0), (37, 61, 5, 1, 0), (30, 75, 4, 2, 3)])
def test_max_window_matches_brute_force_and_never_overflows(rng, H, W, S, T, levels):
    """Wide rows (more than 8 windows) take the vectorised row maximum; few saliency levels make
    ties, where the first window in row-major order must win."""
    n = 5
    sal = rng.random((n, H, W)).astype(np.float32)
    if levels:
        sal = np.floor(sal * levels).astype(np.float32) / levels
    draws = rng.integers(0, 2**31 - 1, (n, 2)).astype(np.int32)
    draws[0] = [0, 2**31 - 2]  # the ends of the draw range
    tau = 6
    (out,) = run_op([list(sal), list(draws)], lambda s, j: mixing.max_window(s, S, T, j, jitter=tau), n)
    for i in range(n):
        (y, x), _ = ref.max_window(sal[i], S, T)
        y0 = y + ref.jitter_shift(y, H - S, tau, int(draws[i, 0]))
        x0 = x + ref.jitter_shift(x, W - S, tau, int(draws[i, 1]))
        np.testing.assert_array_equal(out[i][0], [y0, x0, y0 + S, x0 + S])
    (out0,) = run_op([list(sal), list(draws)], lambda s, j: mixing.max_window(s, S, T, j), n)  # jitter=0
    for i in range(n):
        (y, x), _ = ref.max_window(sal[i], S, T)
        np.testing.assert_array_equal(out0[i][0], [y, x, y + S, x + S])


def test_max_window_jitter_is_uniform_over_the_in_image_shifts_at_the_border():
    """Fong & Vedaldi's jitter: a window touching the top border (y0 = 0) and 2 px from the left one moves by
    0..tau in y and -2..tau in x, each equally likely (clipping a uniform draw would put about half the mass
    on 0 / -2)."""
    H, W, S, tau, n = 30, 30, 10, 5, 3000
    sal = np.zeros((H, W), np.float32)
    sal[0:S, 2:2 + S] = 1.0
    draws = np.random.default_rng(3).integers(0, 2**31 - 1, (n, 2)).astype(np.int32)
    (out,) = run_op([[sal] * n, list(draws)], lambda s, j: mixing.max_window(s, S, 1, j, jitter=tau), n)
    boxes = np.concatenate(out)
    np.testing.assert_array_equal(boxes[:, 2:] - boxes[:, :2], S)
    for axis, valid in ((0, range(0, tau + 1)), (1, range(-2, tau + 1))):
        shifts = boxes[:, axis] - (0, 2)[axis]
        counts = np.array([np.sum(shifts == d) for d in valid])
        assert counts.sum() == n  # no shift outside the valid set
        expect = n / len(valid)
        chi2 = float(((counts - expect) ** 2 / expect).sum())
        assert chi2 < 30.0, (axis, counts)  # df <= 7: p < 1e-4 for a uniform distribution


def test_max_window_rejects_draws_outside_the_documented_range(rng):
    sal = list(rng.random((2, 12, 12)).astype(np.float32))
    draws = [np.array([3, -1], np.int32), np.array([0, 0], np.int32)]
    with pytest.raises(RuntimeError, match="draws"):
        run_op([sal, draws], lambda s, j: mixing.max_window(s, 4, 1, j, jitter=2), 2)


def test_max_window_on_a_map_smaller_than_the_window_gives_no_box(rng):
    sal = [rng.random((6, 9)).astype(np.float32), rng.random((12, 12)).astype(np.float32)]
    (out,) = run_op([sal], lambda s: mixing.max_window(s, 8), 2)
    np.testing.assert_array_equal(out[0][0], [-1, -1, -1, -1])
    assert out[1][0][2] - out[1][0][0] == 8


@pytest.mark.parametrize("selective", ["cut", "paste"])
@pytest.mark.parametrize("H, W, levels", [(15, 18, 0), (6, 11, 4)])
def test_keep_box_matches_restated_rule(rng, selective, H, W, levels):
    """(6, 11): 66 scores, so the quantile position 0.6 * 65 falls on an element; few saliency levels make
    ties at the threshold, where a float32 level would pick another box."""
    n, size, tau, tries = 4, 6, 0.6, 8
    sal = rng.random((n, H, W)).astype(np.float32)
    if levels:
        sal = np.floor(sal * levels).astype(np.float32) / levels
    sal[3] = 0.5  # constant map: no candidate qualifies, fallback to the first try
    draw = np.random.default_rng(11)
    cy = draw.integers(0, H, size=(n, tries))
    cx = draw.integers(0, W, size=(n, tries))
    t = np.stack([cy, cx], -1).astype(np.int32)
    (out,) = run_op([list(sal), list(t)], lambda s, c: mixing.keep_box(s, c, size=size, tau=tau,
                                                                       selective=selective), n)
    for i in range(n):
        scores = ref.keep_scores(sal[i], size)
        thr = np.quantile(scores, tau)
        tried = scores[cy[i], cx[i]]
        ok = tried < thr if selective == "cut" else tried > thr
        k = int(np.argmax(ok)) if ok.any() else int(np.argmin(tried) if selective == "cut" else np.argmax(tried))
        np.testing.assert_array_equal(out[i][0], ref.cutout_box(cy[i, k], cx[i, k], size, H, W))


@pytest.mark.parametrize("selective", ["cut", "paste"])
def test_keep_box_threshold_decisions_equal_numpy_quantile_on_tied_maps(selective):
    """The operator decides "below / above the tau-quantile" by counting, not by computing the quantile;
    on maps with few saliency levels (many scores equal to the order statistics around the quantile) and
    at the extreme levels it must still pick the box that ``np.quantile`` picks (the oracle's keep_pick)."""
    rng = np.random.default_rng(5)
    n, size, tries = 12, 4, 5
    for H, W, levels in [(6, 11, 3), (9, 9, 2), (7, 13, 5)]:
        sal = (np.floor(rng.random((n, H, W)) * levels) / levels).astype(np.float32)
        for tau in (0.0, 0.25, 0.5, 0.6, 1.0):
            draw = np.random.default_rng(int(tau * 100) + H)
            cy = draw.integers(0, H, size=(n, tries))
            cx = draw.integers(0, W, size=(n, tries))
            t = np.stack([cy, cx], -1).astype(np.int32)
            (out,) = run_op([list(sal), list(t)], lambda s, c: mixing.keep_box(
                s, c, size=size, tau=tau, selective=selective), n)
            for i in range(n):
                tried = list(zip(cy[i], cx[i]))
                k = ref.keep_pick(ref.keep_scores(sal[i], size), tried, tau, below=selective == "cut")
                np.testing.assert_array_equal(out[i][0], ref.cutout_box(*tried[k], size, H, W),
                                              err_msg=f"{H}x{W} tau={tau} row {i}")


@pytest.mark.parametrize("call, match", [
    (lambda: mixing.normalize_occlude(None, None, mean=0, std=1, fill="red"), "fill"),
    (lambda: mixing.normalize_occlude(None, None, mean=0, std=1, fill=[]), "fill"),
    (lambda: mixing.paste_boxes(None, None, None, 0, device="tpu"), "device"),
    (lambda: mixing.paste_boxes(None, None), "partner"),
    (lambda: mixing.max_window(None, 0), "size"),
    (lambda: mixing.max_window(None, 4, stride=0), "stride"),
    (lambda: mixing.max_window(None, 4, jitter=-1), "jitter"),
    (lambda: mixing.max_window(None, 4, jitter=3), "draws"),
    (lambda: mixing.keep_box(None, None, size=1), "size"),
    (lambda: mixing.keep_box(None, None, size=8, tau=2.0), "tau"),
    (lambda: mixing.keep_box(None, None, size=8, selective="x"), "selective"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------------------
# GPU operators (run where a GPU is lent): the CUDA paste kernel and the GPU search path against the CPU
# operators and the NumPy oracles on the same inputs.
# ------------------------------------------------------------------------------------------------------
@requires_gpu
@pytest.mark.parametrize("layout, dtype", [("CHW", "float32"), ("HWC", "uint8"), ("CHW", "float16")])
def test_gpu_paste_boxes_equals_the_oracle(rng, layout, dtype):
    n, H, W = 6, 19, 23
    x = images_of(rng, dtype, (n, 3, H, W))
    feed = list(np.ascontiguousarray(x if layout == "CHW" else x.transpose(0, 2, 3, 1)))
    boxes = random_boxes(rng, n, 3, H, W)
    partner = np.array([2, -1, 0, 5, 5, 1], np.int32)

    @pipeline_def(batch_size=n, num_threads=2, device_id=0, seed=0)
    def pipe():
        im = fn.external_source(source=feeder(feed), batch=True, layout=layout).gpu()
        b = fn.external_source(source=feeder(list(boxes)), batch=True).gpu()
        idx = fn.external_source(source=feeder(list(partner)), batch=True).gpu()
        return mixing.paste_boxes(im, b, partner_index=idx, device="gpu")

    p = pipe()
    p.build()
    (pasted,) = p.run()
    pasted = pasted.as_cpu()
    expect = ref.paste_nchw(x, partner, np.where(partner[:, None, None] < 0, -1, boxes))
    for i in range(n):
        got = np.array(pasted[i])
        np.testing.assert_array_equal(got if layout == "CHW" else got.transpose(2, 0, 1), expect[i])


def _search_case(rng, case):
    """(maps, draws, map_index, box_search kwargs) of a named GPU-vs-CPU case: odd map sizes, maps of
    different sizes in one batch, few saliency levels (ties), -1 rows and partner indices."""
    shapes = [(31, 37), (17, 23), (9, 5), (40, 33), (23, 23), (6, 7)]
    n = len(shapes)
    levels = 4 if "ties" in case else 0
    sal = []
    for H, W in shapes:
        m = rng.random((H, W)).astype(np.float32)
        sal.append((np.floor(m * levels) / levels).astype(np.float32) if levels else m)
    if "const" in case:
        sal[1][:] = 0.5
    index = None
    if "index" in case:
        index = list(np.array([3, -1, 0, 4, 4, -1], np.int32))
    method = case.split("/")[0]
    if method.startswith("peak"):
        draws = list(rng.integers(0, 30, (n, 2)).astype(np.int32))
        kw = dict(method="peak", quantize=method == "peak_q")
    elif method == "max_window":
        draws = list(rng.integers(0, 2**31 - 1, (n, 2)).astype(np.int32))
        kw = dict(method="max_window", size=7, stride=2, jitter=5)  # (6, 7): smaller than the window
    else:
        draws = [rng.integers(0, 40, (int(rng.integers(1, 9)), 2)).astype(np.int32) for _ in range(n)]
        kw = dict(method=method, size=7, tau=repr(float(rng.choice([0.0, 0.3, 0.6, 1.0]))))
    return sal, draws, index, kw


SEARCH_CASES = [f"{m}/{v}" for m in ("peak_q", "peak_f", "max_window", "keep_cut", "keep_paste")
                for v in ("plain", "ties", "ties_index", "const_index")]


def test_search_cases_run_on_the_cpu_operator(rng):
    """The GPU cases below are valid inputs of the CPU operator (so a GPU failure is the GPU's)."""
    for case in SEARCH_CASES:
        sal, draws, index, kw = _search_case(np.random.default_rng(len(case)), case)
        out = search_both(sal, draws, index, kw, devices=("cpu",))["cpu"]
        assert out.shape == (len(draws), 1, 4)
        if index is not None:
            assert np.all(out[np.array(index) < 0] == -1)


@requires_gpu
@pytest.mark.parametrize("case", SEARCH_CASES)
def test_gpu_box_search_equals_the_cpu_operator(case):
    for seed in range(3):
        sal, draws, index, kw = _search_case(np.random.default_rng(seed * 100 + len(case)), case)
        outs = search_both(sal, draws, index, kw)
        np.testing.assert_array_equal(outs["gpu"], outs["cpu"], err_msg=f"{case} seed {seed}")


@requires_gpu
def test_gpu_box_search_large_maps_equal_the_cpu_operator(rng):
    """224 x 224 maps (the row pass runs in several tiles, the radix select over 50176 scores)."""
    sal = list(rng.random((4, 224, 224)).astype(np.float32) ** 3)
    sal[1] = (np.floor(sal[1] * 3) / 3).astype(np.float32)
    for kw, draws in [(dict(method="peak", quantize=True), rng.integers(0, 200, (4, 2))),
                      (dict(method="max_window", size=56, stride=1, jitter=16), rng.integers(0, 2**31 - 1, (4, 2))),
                      (dict(method="keep_cut", size=56, tau="0.6"), rng.integers(0, 224, (4, 32, 2))),
                      (dict(method="keep_paste", size=56, tau="0.6"), rng.integers(0, 224, (4, 32, 2)))]:
        outs = search_both(sal, list(draws.astype(np.int32)), None, kw)
        np.testing.assert_array_equal(outs["gpu"], outs["cpu"], err_msg=str(kw))


@requires_gpu
def test_gpu_search_with_map_index_equals_the_cpu_operator(rng):
    n, H, W = 5, 31, 37
    sal = list((np.floor(rng.random((n, H, W)) * 8) / 8).astype(np.float32))
    cut = list(rng.integers(2, 20, (n, 2)).astype(np.int32))
    jitter = list(rng.integers(0, 2**31 - 1, (n, 2)).astype(np.int32))
    tries = list(rng.integers(0, 31, (n, 6, 2)).astype(np.int32))
    index = list(np.array([3, -1, 0, 4, 4], np.int32))

    def searches(device):
        @pipeline_def(batch_size=n, num_threads=2, device_id=0, seed=0)
        def pipe():
            def node(b):
                x = fn.external_source(source=feeder(b), batch=True)
                return x.gpu() if device == "gpu" else x
            s, mi = node(sal), fn.external_source(source=feeder(index), batch=True)
            return (mixing.saliency_peak_box(s, node(cut), mi, device=device),
                    mixing.max_window(s, 9, 2, node(jitter), mi, jitter=4, device=device),
                    mixing.keep_box(s, node(tries), mi, size=8, tau=0.6, device=device))

        p = pipe()
        p.build()
        return [[np.array(t) for t in (o.as_cpu() if hasattr(o, "as_cpu") else o)] for o in p.run()]

    for cpu_out, gpu_out in zip(searches("cpu"), searches("gpu")):
        for a, b in zip(cpu_out, gpu_out):
            np.testing.assert_array_equal(a, b)
