"""The plugin's CPU kernels without DALI: each operator's DALI-free ``<operator>_cpu`` kernel
(``dali_ops/csrc/<operator>/``) compiled with g++ into a shared library (``tests/cpu_kernels/cpu_kernels.cc``,
a C ABI for ctypes; the flags of the plugin's build, no FMA contraction) and checked against the NumPy
oracles: ``tests/oracles.py`` (box_search's three methods, paste, normalise + erase / paste / blend),
``kernels.saliency`` and ``tests/oracles_saliency.py`` (fine-grained saliency of uint8 and float32 images).

The DALI operators call these very kernels one sample per pool thread; ``tests/dali_ops/test_dali_mixing.py`` and
``tests/dali_ops/test_saliency.py`` check the operators (argument checks, batching, partner and map indices) on top.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

import oracles as ref
from conftest import CSRC, build_shared
from kernels.saliency import fine_grained
from oracles_saliency import fine_grained_float

METHODS = {"peak": 0, "max_window": 1, "keep_cut": 2, "keep_paste": 3}
MEAN = np.array([0.485 * 255, 0.456 * 255, 0.406 * 255], np.float32)
INV_STD = np.float32(1) / np.array([0.229 * 255, 0.224 * 255, 0.225 * 255], np.float32)  # the operator's 1.f / std
SIZES = [(37, 61), (16, 24), (9, 5), (64, 80), (1, 1)]

P = ctypes.c_void_p
I = ctypes.c_int


class SearchParams(ctypes.Structure):
    """box_search's parameters (dali_ops/csrc/box_search/box_search_params.h)."""
    _fields_ = [("method", I), ("size", I), ("stride", I), ("jitter", I), ("tau", ctypes.c_double), ("quantize", I),
                ("grid", I), ("top_k", I), ("image_h", I), ("image_w", I)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    shim = Path(__file__).resolve().parents[1] / "cpu_kernels" / "cpu_kernels.cc"
    lib = build_shared(tmp_path_factory.mktemp("cpu_kernels"), "cpu_kernels", [shim, *sorted(CSRC.glob("*/*_cpu.cc"))])
    lib.cpu_box_search.argtypes = [ctypes.POINTER(SearchParams), P, I, I, P, I, P]
    lib.cpu_paste_boxes.argtypes = [P, P, P, I, I, I, I, I, P, I]
    lib.cpu_normalize_occlude.argtypes = [P, I, P, I, ctypes.c_float, P, I, I, I, I, P, P, P, I, ctypes.c_uint32, P, P,
                                          I, P]
    lib.cpu_normal_table.argtypes = [P]
    lib.cpu_fine_grained_saliency_u8.argtypes = [P, I, I, I, I, P]
    lib.cpu_fine_grained_saliency_f32.argtypes = [P, I, I, I, P]
    return lib


def ptr(a):
    return None if a is None else a.ctypes.data


def random_boxes(rng, n, k, H, W):
    """(n, k, 4) boxes that overflow every border, some empty, some -1 padded."""
    y0 = rng.integers(-3, H + 1, size=(n, k))
    x0 = rng.integers(-3, W + 1, size=(n, k))
    b = np.stack([y0, x0, y0 + rng.integers(0, H // 2 + 3, (n, k)), x0 + rng.integers(0, W // 2 + 3, (n, k))], -1)
    b = b.astype(np.int32)
    b[rng.random((n, k)) < 0.25] = -1
    return b


# ------------------------------------------------------------------------------------------------ box_search
def search(lib, sal, draws, method, size=0, stride=1, jitter=0, tau=0.6, quantize=True):
    sal = np.ascontiguousarray(sal, np.float32)
    draws = np.ascontiguousarray(draws, np.int32)
    box = np.zeros(4, np.int32)
    params = SearchParams(METHODS[method], size, stride, jitter, tau, int(quantize))
    lib.cpu_box_search(ctypes.byref(params), ptr(sal), *sal.shape, ptr(draws), draws.shape[0] if draws.ndim == 2 else 1,
                       ptr(box))
    return box


def saliency_maps(rng, H, W):
    """A smooth map, a map with few levels (ties everywhere) and a constant one."""
    m = rng.random((H, W)).astype(np.float32) ** 3
    return [m, (np.floor(m * 4) / 4).astype(np.float32), np.full((H, W), 0.5, np.float32)]


@pytest.mark.parametrize("quantize", [True, False])
def test_peak_box_is_saliencymix_saliency_bbox(lib, quantize):
    rng = np.random.default_rng(1)
    for H, W in SIZES:
        for sal in saliency_maps(rng, H, W):
            lam = rng.beta(1.0, 1.0)
            cut = [int(H * np.sqrt(1 - lam)), int(W * np.sqrt(1 - lam))]
            np.testing.assert_array_equal(search(lib, sal, cut, "peak", quantize=quantize),
                                          ref.saliencymix_bbox(sal, lam, quantize=quantize), err_msg=f"{H}x{W}")


@pytest.mark.parametrize("S, T, jitter", [(5, 1, 0), (7, 2, 4), (3, 3, 16), (16, 1, 2)])
def test_max_window_is_the_brute_force_window_jittered(lib, S, T, jitter):
    rng = np.random.default_rng(2)
    for H, W in SIZES:
        for sal in saliency_maps(rng, H, W):
            r = rng.integers(0, 2**31 - 1, 2)
            got = search(lib, sal, r, "max_window", size=S, stride=T, jitter=jitter)
            if S > H or S > W:  # no window fits
                np.testing.assert_array_equal(got, [-1, -1, -1, -1])
                continue
            (y, x), _ = ref.max_window(sal, S, T)
            y0 = y + ref.jitter_shift(y, H - S, jitter, int(r[0]))
            x0 = x + ref.jitter_shift(x, W - S, jitter, int(r[1]))
            np.testing.assert_array_equal(got, [y0, x0, y0 + S, x0 + S], err_msg=f"{H}x{W}")


@pytest.mark.parametrize("selective", ["cut", "paste"])
@pytest.mark.parametrize("tau", [0.0, 0.3, 0.6, 1.0])
def test_keep_box_is_keepaugment_selective_rule(lib, selective, tau):
    rng = np.random.default_rng(3)
    for H, W in SIZES:
        for size in (2, 7, 12):
            for sal in saliency_maps(rng, H, W):
                tries = np.stack([rng.integers(0, H, 6), rng.integers(0, W, 6)], -1)
                got = search(lib, sal, tries, f"keep_{selective}", size=size, tau=tau)
                k = ref.keep_pick(ref.keep_scores(sal, size), [tuple(t) for t in tries], tau, below=selective == "cut")
                np.testing.assert_array_equal(got, ref.cutout_box(*tries[k], size, H, W),
                                              err_msg=f"{H}x{W} size {size}")


# ------------------------------------------------------------------------------------------------ paste_boxes
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32"])
def test_paste_boxes_is_clovaai_slicing(lib, layout, dtype):
    rng = np.random.default_rng(4)
    n, H, W = 5, 11, 14
    x = (rng.integers(0, 256, (n, 3, H, W)) if dtype == "uint8" else rng.standard_normal((n, 3, H, W))).astype(dtype)
    partner = np.array([3, -1, 0, 3, 4], np.int32)  # -1: no partner, the row stays as it is
    boxes = random_boxes(rng, n, 3, H, W)
    expect = ref.paste_nchw(x, partner, np.where(partner[:, None, None] < 0, -1, boxes))
    feed = np.ascontiguousarray(x if layout == "CHW" else x.transpose(0, 2, 3, 1))
    for i in range(n):
        out = np.empty_like(feed[i])
        lib.cpu_paste_boxes(ptr(feed[i]), ptr(out), ptr(feed[partner[i]]) if partner[i] >= 0 else None,
                            x.itemsize, layout == "CHW", H, W, 3, ptr(boxes[i]), boxes.shape[1])
        np.testing.assert_array_equal(out if layout == "CHW" else out.transpose(2, 0, 1), expect[i])


# ------------------------------------------------------------------------------------------ normalize_occlude
FILL_MODES = {"const": 0, "rand": 1, "pixel": 2}


def normalize_occlude(lib, img, mirror, partner, partner_mirror, blend, boxes, fill, dtype, fill_mode="const", seed=0,
                      color=None, partner_color=None):
    H, W, C = img.shape
    out = np.empty((C, H, W), dtype)
    color, partner_color = (None if c is None else np.ascontiguousarray(c, np.float32) for c in (color, partner_color))
    lib.cpu_normalize_occlude(ptr(img), mirror, ptr(partner), partner_mirror, blend, ptr(boxes),
                              0 if boxes is None else boxes.shape[0], H, W, C, ptr(MEAN), ptr(INV_STD), ptr(fill),
                              FILL_MODES[fill_mode], seed, ptr(color), ptr(partner_color), dtype == "float16", ptr(out))
    return out


def normal_table(lib):
    table = np.empty(1 << 16, np.float32)
    lib.cpu_normal_table(ptr(table))
    return table


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_normalize_occlude_is_normalisation_then_the_oracles(lib, dtype):
    """crop_mirror_normalize's float32 ``(x - mean) * inv_std`` per row (own mirror), then erase (fill), paste
    (the partner row's normalised pixels, its own mirror) or blend (``own * w + partner * (1 - w)`` outside the
    boxes); the float16 output is the float32 value rounded to nearest."""
    rng = np.random.default_rng(5)
    n, H, W = 6, 21, 26
    imgs = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    mirror = rng.integers(0, 2, n)
    boxes = random_boxes(rng, n, 3, H, W)
    boxes[0] = [[2, 3, 10, 12], [5, 8, 15, 20], [2, 12, 6, 18]]  # overlapping and touching
    partner = np.array([3, 5, 0, 1, 2, 4], np.int32)
    blend = np.array([0.25, 0.5, 1.0, 0.0, 0.7, 0.9], np.float32)
    fill = np.array([0.5, -1.0, 2.0], np.float32)
    norm = np.stack([((np.where(mirror[i], imgs[i][:, ::-1], imgs[i]).astype(np.float32) - MEAN) * INV_STD)
                     .transpose(2, 0, 1) for i in range(n)])
    erased = ref.erase_nchw(norm, boxes, fill)
    pasted = ref.paste_nchw(norm, partner, boxes)
    for i in range(n):
        p = partner[i]
        args = (imgs[i], int(mirror[i]))
        plain = normalize_occlude(lib, *args, None, 0, 1.0, None, fill, dtype)
        np.testing.assert_array_equal(plain, norm[i].astype(dtype))
        got = normalize_occlude(lib, *args, None, 0, 1.0, boxes[i], fill, dtype)
        np.testing.assert_array_equal(got, erased[i].astype(dtype))
        got = normalize_occlude(lib, *args, imgs[p], int(mirror[p]), 1.0, boxes[i], fill, dtype)
        np.testing.assert_array_equal(got, pasted[i].astype(dtype))
        mix = norm[i] * blend[i] + norm[p] * (np.float32(1) - blend[i])
        inside = ref.union_mask(boxes[i:i + 1], H, W)[0]
        mix[:, inside] = norm[p][:, inside]
        got = normalize_occlude(lib, *args, imgs[p], int(mirror[p]), float(blend[i]), boxes[i], fill, dtype)
        np.testing.assert_array_equal(got, mix.astype(dtype), err_msg=f"blend row {i}")


def test_noise_table_is_the_normal_quantiles_at_the_midpoints(lib):
    """The Random Erasing noise table: float32(Phi^-1((i + 0.5) / 2^16)) (scipy's ``ndtri``), antisymmetric."""
    from scipy.special import ndtri

    table = normal_table(lib)
    want = ndtri((np.arange(1 << 16) + 0.5) / (1 << 16))
    np.testing.assert_array_max_ulp(table, want.astype(np.float32), maxulp=1)
    np.testing.assert_array_equal(table, -table[::-1])


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_random_erasing_fill_is_its_numpy_restatement(lib, mode, dtype):
    """Erased pixels hold ``fill`` or the row's noise (SplitMix64 of the seed and the box-and-channel or
    channel-and-pixel counter, through the quantile table; a later box over an earlier one, as timm paints
    them); every other pixel is the plain normalisation."""
    rng = np.random.default_rng(8)
    table = normal_table(lib)
    fill = np.array([0.5, -1.0, 2.0], np.float32)
    for trial in range(4):
        H, W = int(rng.integers(5, 30)), int(rng.integers(5, 30))
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        boxes = random_boxes(rng, 1, 4, H, W)[0]
        boxes[0] = [1, 1, H - 1, W - 1]  # overlapped by the others
        seed = int(rng.integers(0, 2 ** 32))
        mirror = trial % 2
        got = normalize_occlude(lib, img, mirror, None, 0, 1.0, boxes, fill, dtype, mode, seed)
        want = ((np.where(mirror, img[:, ::-1], img).astype(np.float32) - MEAN) * INV_STD).transpose(2, 0, 1)
        erased = ref.random_erasing_fill((3, H, W), boxes, mode, seed, table, fill)
        inside = ~np.isnan(erased)
        want[inside] = erased[inside]
        np.testing.assert_array_equal(got, want.astype(dtype), err_msg=f"trial {trial}")


def test_random_erasing_noise_is_standard_normal(lib):
    """The "pixel" fill over many pixels and seeds: mean 0, standard deviation 1, and the empirical distribution
    within a Kolmogorov-Smirnov distance of 0.01 of N(0, 1) (the table's 2^16 levels are far finer); "rand"
    gives one value per box and channel, independent across seeds."""
    from scipy import stats

    H = W = 64
    img = np.zeros((H, W, 3), np.uint8)
    box = np.array([[0, 0, H, W]], np.int32)
    zero = np.zeros(3, np.float32)
    pixel = np.concatenate([normalize_occlude(lib, img, 0, None, 0, 1.0, box, zero, "float32", "pixel", s).ravel()
                            for s in range(20)])
    assert abs(pixel.mean()) < 0.01 and abs(pixel.std() - 1) < 0.01
    assert stats.kstest(pixel, "norm").statistic < 0.01
    rand = np.stack([normalize_occlude(lib, img, 0, None, 0, 1.0, box, zero, "float32", "rand", s)
                     for s in range(4000)])
    assert (rand == rand[:, :, :1, :1]).all()  # one value per box and channel
    per_box = rand[:, :, 0, 0]
    assert abs(per_box.mean()) < 0.05 and abs(per_box.std() - 1) < 0.05
    assert stats.kstest(per_box.ravel(), "norm").statistic < 0.03
    assert abs(np.corrcoef(per_box[:, 0], per_box[:, 1])[0, 1]) < 0.05  # channels independent


def _color_restated(img, params):
    """The kernel's colour arithmetic restated in float32, one rounding per operation: the mean colour from
    exact sums, ``b = b0 + B mu``, ``v = A px + b``, then ``(v - mean) * inv_std`` (CHW)."""
    f = np.float32
    p = np.asarray(params, np.float32)
    sums = img.reshape(-1, 3).astype(np.uint64).sum(0)
    mu = (sums.astype(np.float64) / (img.shape[0] * img.shape[1])).astype(np.float32)
    b = [((p[18 + c] + p[9 + 3 * c] * mu[0]) + p[10 + 3 * c] * mu[1]) + p[11 + 3 * c] * mu[2] for c in range(3)]
    x = img.astype(np.float32)
    out = []
    for c in range(3):
        v = ((p[3 * c] * x[..., 0] + p[3 * c + 1] * x[..., 1]) + p[3 * c + 2] * x[..., 2]) + f(b[c])
        out.append((v - MEAN[c]) * INV_STD[c])
    return np.stack(out).astype(np.float32)


def test_color_transform_is_its_float32_restatement_for_own_and_pasted_pixels(lib):
    """A row's colour transform (ColorJitter + Lighting) applies to its own pixels and, pasted, the partner's
    pixels get the partner's own transform (mean colour of the partner's image)."""
    from kernels.color import color_params, draw_color

    rng = np.random.default_rng(9)
    H, W = 19, 23
    imgs = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    d = draw_color(rng, 2, 0.4, 0.1)
    params = color_params(d["order"], d["alpha"], d["light"])
    boxes = np.array([[3, 4, 12, 15]], np.int32)
    fill = np.zeros(3, np.float32)
    plain = normalize_occlude(lib, imgs[0], 0, None, 0, 1.0, None, fill, "float32", color=params[0])
    np.testing.assert_array_equal(plain, _color_restated(imgs[0], params[0]))
    pasted = normalize_occlude(lib, imgs[0], 0, imgs[1], 0, 1.0, boxes, fill, "float32", color=params[0],
                               partner_color=params[1])
    want = _color_restated(imgs[0], params[0])
    want[:, 3:12, 4:15] = _color_restated(imgs[1], params[1])[:, 3:12, 4:15]
    np.testing.assert_array_equal(pasted, want)


def test_color_params_are_clovaais_steps_composed():
    """kernels.color's 21 parameters reproduce clovaai's ColorJitter (random order of brightness, contrast,
    saturation, each a lerp) then Lighting, step by step on the [0, 1] image, to float64 rounding."""
    from kernels.color import STEPS, color_params, draw_color

    rng = np.random.default_rng(10)
    imgs = rng.integers(0, 256, (12, 9, 11, 3), dtype=np.uint8)
    for jitter in (0.4, (0.0, 0.4, 0.3), (0.4, 0.0, 0.0)):
        d = draw_color(rng, len(imgs), jitter, 0.1)
        params = color_params(d["order"], d["alpha"], d["light"]).astype(np.float64)
        for i, img in enumerate(imgs):
            steps = [STEPS[s] for s in d["order"][i] if s >= 0]
            alphas = {STEPS[s]: d["alpha"][i, s] for s in range(3)}
            x = img.transpose(2, 0, 1).astype(np.float64) / 255
            want = ref.clovaai_lighting(ref.clovaai_color_jitter(x, steps, alphas), d["light"][i]) * 255
            a, b, b0 = params[i, :9].reshape(3, 3), params[i, 9:18].reshape(3, 3), params[i, 18:]
            mu = img.reshape(-1, 3).mean(0)
            got = np.einsum("ck,khw->chw", a, img.transpose(2, 0, 1).astype(np.float64)) + (b @ mu + b0)[:, None, None]
            np.testing.assert_allclose(got, want, atol=2e-3)  # float32 parameters, pixel units
    d = draw_color(rng, 2000, 0.4, 0.1)
    assert (np.sort(d["order"], 1) == [0, 1, 2]).all() and len({tuple(o) for o in d["order"]}) == 6
    assert np.abs(d["alpha"]).max() <= 0.4 and abs(d["alpha"].mean()) < 0.02
    assert abs(d["light"].std() - 0.1) < 0.005


# -------------------------------------------------------------------------------------- fine_grained_saliency
def photo(rng, H, W):
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 255 // max(W, 1), yy * 255 // max(H, 1), ((xx + yy) * 5) % 256], -1)
    return np.clip(base + rng.normal(0, 30, (H, W, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("max_side", [0, 40])
def test_fine_grained_saliency_of_uint8_is_kernels_saliency(lib, max_side):
    """kernels.saliency.fine_grained (OpenCV contrib's StaticSaliencyFineGrained bit for bit, tests/dali_ops/test_saliency.py)
    at full and reduced resolution; ``mirror`` gives the map of the flipped image."""
    rng = np.random.default_rng(6)
    for H, W in [*SIZES, (120, 90)]:
        img = photo(rng, H, W)
        for mirror in (0, 1):
            out = np.empty((H, W), np.float32)
            lib.cpu_fine_grained_saliency_u8(ptr(img), H, W, max_side, mirror, ptr(out))
            want = fine_grained(np.ascontiguousarray(img[:, ::-1] if mirror else img), max_side=max_side)
            np.testing.assert_array_equal(out, want, err_msg=f"{H}x{W} mirror {mirror}")


def test_fine_grained_saliency_of_float32_is_opencvs_float_path(lib):
    """The oracle of OpenCV's float32 path (SaliencyMix's official call on the normalised image)."""
    rng = np.random.default_rng(7)
    for H, W in [*SIZES, (13, 39)]:
        img = ((photo(rng, H, W) / np.float32(255) - np.float32([0.485, 0.456, 0.406]))
               / np.float32([0.229, 0.224, 0.225])).astype(np.float32)
        for mirror in (0, 1):
            out = np.empty((H, W), np.float32)
            lib.cpu_fine_grained_saliency_f32(ptr(img), H, W, mirror, ptr(out))
            want = fine_grained_float(np.ascontiguousarray(img[:, ::-1] if mirror else img))
            np.testing.assert_array_equal(out, want, err_msg=f"{H}x{W} mirror {mirror}")
