"""kernels.apply: erase / paste_cells against slicing oracles and painted masks; exact lam."""
from __future__ import annotations

import numpy as np
import pytest

import oracles as ref
from kernels import apply, boxes as mix


def random_boxes(rng, n, k, H, W, pad=True, overflow=True):
    """(n, k, 4) boxes: random rectangles (some overlapping, some past the border), some -1 rows."""
    y0 = rng.integers(-3 if overflow else 0, H, size=(n, k))
    x0 = rng.integers(-3 if overflow else 0, W, size=(n, k))
    y1 = y0 + rng.integers(0, H // 2 + 2, size=(n, k))
    x1 = x0 + rng.integers(0, W // 2 + 2, size=(n, k))
    if not overflow:
        y1, x1 = np.minimum(y1, H), np.minimum(x1, W)
    b = np.stack([y0, x0, y1, x1], -1).astype(np.int32)
    if pad:
        b[rng.random((n, k)) < 0.3] = -1
    return b


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------------------------- erase
def test_erase_nchw_float_matches_oracle(rng):
    x = rng.standard_normal((5, 3, 17, 23)).astype(np.float32)
    b = random_boxes(rng, 5, 4, 17, 23)
    x0 = x.copy()
    out = apply.erase(x, b, 0.0)
    np.testing.assert_array_equal(out, ref.erase_nchw(x, b, 0.0))
    np.testing.assert_array_equal(x, x0)  # input untouched
    fill = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(apply.erase(x, b, fill), ref.erase_nchw(x, b, fill))
    mask = ref.union_mask(b, 17, 23)
    assert np.all(out.transpose(1, 0, 2, 3)[:, mask] == 0)
    np.testing.assert_array_equal(out.transpose(1, 0, 2, 3)[:, ~mask], x.transpose(1, 0, 2, 3)[:, ~mask])


def test_erase_nhwc_uint8_matches_oracle(rng):
    x = rng.integers(0, 256, (4, 15, 12, 3), dtype=np.uint8)
    b = random_boxes(rng, 4, 3, 15, 12)
    fill = [124, 116, 104]  # ImageNet mean * 255, rounded
    out = apply.erase(x, b, fill)
    expect = ref.erase_nchw(x.transpose(0, 3, 1, 2), b, np.array(fill, np.uint8)).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(out, expect)
    assert out.dtype == np.uint8 and out.shape == x.shape
    # a float fill is rounded to the nearest integer
    np.testing.assert_array_equal(apply.erase(x, b, 123.675), apply.erase(x, b, 124))


def test_erase_inplace_and_batch_box(rng):
    x = rng.standard_normal((3, 2, 8, 9))
    y = x.copy()
    out = apply.erase(y, np.array([1, 2, 4, 6]), 7.0, inplace=True)
    assert out is y
    np.testing.assert_array_equal(y, ref.erase_nchw(x, np.tile([[[1, 2, 4, 6]]], (3, 1, 1)), 7.0))


def test_erase_explicit_layout(rng):
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)  # NHWC float
    b = random_boxes(rng, 2, 2, 6, 7)
    out = apply.erase(x, b, 1.0, layout="NHWC")
    expect = ref.erase_nchw(x.transpose(0, 3, 1, 2), b, 1.0).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(out, expect)


# ------------------------------------------------------------------------------------ CutMix lam
def test_cutmix_paste_lam_is_exact_kept_share(rng):
    """CutMix end to end: the share of a row's own pixels equals the lambda of the sampler and of lam_from_boxes."""
    n, H, W = 16, 32, 24
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 3, H, W)).copy()
    boxes, lam = mix.cutmix_box(rng, H, W, alpha=1.0, n=n)
    partner = (np.arange(n) + 1) % n
    out = ref.paste_nchw(x, partner, boxes[:, None])
    own_share = (out[:, 0] == np.arange(n)[:, None, None]).mean(axis=(1, 2))
    np.testing.assert_allclose(own_share, lam, rtol=0, atol=1e-12)
    np.testing.assert_allclose(apply.lam_from_boxes(boxes, H, W, partner), lam, rtol=0, atol=1e-12)
    # batch mode: one box for every row
    box, lam1 = mix.cutmix_box(rng, H, W)
    out = ref.paste_nchw(x, partner, np.broadcast_to(box, (n, 1, 4)))
    own_share = (out[:, 0] == np.arange(n)[:, None, None]).mean(axis=(1, 2))
    np.testing.assert_allclose(own_share, lam1, rtol=0, atol=1e-12)


def test_out_buffer_is_reused(rng):
    x = rng.standard_normal((4, 3, 10, 12)).astype(np.float32)
    b = random_boxes(rng, 4, 2, 10, 12)
    p = np.array([1, 2, 3, 0])
    buf = np.full_like(x, np.nan)
    assert apply.erase(x, b, 0.0, out=buf) is buf
    np.testing.assert_array_equal(buf, ref.erase_nchw(x, b, 0.0))
    cells = rng.random((4, 2, 3)) < 0.5
    assert apply.paste_cells(x, p, cells, out=buf) is buf
    with pytest.raises(ValueError, match="overlap"):
        apply.paste_cells(x, p, cells, out=x)
    with pytest.raises(ValueError, match="out must be"):
        apply.erase(x, b, 0.0, out=buf[:2])
    with pytest.raises(ValueError, match="inplace=True or out="):
        apply.erase(x, b, 0.0, inplace=True, out=buf)


def test_erase_non_contiguous_input(rng):
    x = rng.standard_normal((4, 3, 10, 20)).astype(np.float32)[:, :, :, ::2]
    b = random_boxes(rng, 4, 2, 10, 10)
    np.testing.assert_array_equal(apply.erase(x, b, 0.5), ref.erase_nchw(np.ascontiguousarray(x), b, 0.5))


# ----------------------------------------------------------------------------------- paste_cells
@pytest.mark.parametrize("H,W,G", [(28, 28, 7), (23, 30, 7), (9, 11, (4, 3))])
def test_paste_cells_matches_upsampled_mask(rng, H, W, G):
    gh, gw = (G, G) if isinstance(G, int) else G
    n = 5
    x = rng.standard_normal((n, 2, H, W)).astype(np.float32)
    cells = rng.random((n, gh, gw)) < 0.4
    partner = np.array([4, 0, -1, 2, 1])
    out = apply.paste_cells(x, partner, cells)
    pix = ref.upsample_cells(cells, H, W)
    for r in range(n):
        inside = pix[r] & (partner[r] >= 0)
        np.testing.assert_array_equal(out[r][:, inside], x[partner[r]][:, inside])
        np.testing.assert_array_equal(out[r][:, ~inside], x[r][:, ~inside])
    lam = apply.lam_from_cells(cells, H, W, partner)
    expect = np.where(partner >= 0, 1 - pix.mean(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(lam, expect, rtol=0, atol=1e-12)
    u8 = (x * 30 + 100).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()
    out8 = apply.paste_cells(u8, partner, cells)
    np.testing.assert_array_equal(out8.transpose(0, 3, 1, 2)[0][:, pix[0]], u8.transpose(0, 3, 1, 2)[4][:, pix[0]])


def test_cell_edges_divisible_is_nearest_upsampling():
    np.testing.assert_array_equal(apply.cell_edges(7, 224), np.arange(8) * 32)
    np.testing.assert_array_equal(apply.cell_edges(7, 30), [0, 4, 8, 12, 16, 20, 24, 30])
    m = np.zeros((1, 7, 7), bool)
    m[0, :2, :3] = True  # 6 cells
    assert apply.lam_from_cells(m, 224, 224)[0] == pytest.approx(1 - 6 / 49, abs=1e-15)


# ------------------------------------------------------------------------------------ lam_from_boxes
def test_lam_from_boxes_is_union_area(rng):
    for H, W, k in [(17, 23, 1), (17, 23, 5), (40, 31, 12), (8, 8, 30)]:
        b = random_boxes(rng, 20, k, H, W)
        expect = 1 - ref.union_mask(b, H, W).mean(axis=(1, 2))
        np.testing.assert_allclose(apply.lam_from_boxes(b, H, W), expect, rtol=0, atol=1e-12)
        # both exact methods, whichever the size heuristic picks
        c = np.stack([np.clip(b[..., 0], 0, H), np.clip(b[..., 1], 0, W),
                      np.clip(b[..., 2], 0, H), np.clip(b[..., 3], 0, W)], -1).astype(np.int64)
        empty = (c[..., 2] <= c[..., 0]) | (c[..., 3] <= c[..., 1])
        c[empty] = 0
        area = 1 - expect
        for fn in (apply._union_area_compressed, apply._union_area_painted):
            kw = (H, W, np) if fn is apply._union_area_painted else (np,)
            np.testing.assert_allclose(fn(c[..., 0], c[..., 1], c[..., 2], c[..., 3], *kw) / (H * W), area,
                                       rtol=0, atol=1e-12)


def test_lam_from_boxes_hide_and_seek_grid(rng):
    """Many boxes (a 16-px grid at 224, about half the cells hidden): painted path, exact."""
    H = W = 224
    g = np.arange(0, 224, 16)
    cells = np.array([(y, x, y + 16, x + 16) for y in g for x in g], np.int32)
    hide = rng.random((8, len(cells))) < 0.5
    b = np.where(hide[..., None], cells[None], -1).astype(np.int32)
    np.testing.assert_allclose(apply.lam_from_boxes(b, H, W), 1 - hide.mean(axis=1), rtol=0, atol=1e-12)


def test_lam_from_boxes_overlap_counted_once_and_padding():
    b = np.array([[[0, 0, 10, 10], [5, 5, 15, 15], [-1, -1, -1, -1]],
                  [[-1, -1, -1, -1], [-1, -1, -1, -1], [-1, -1, -1, -1]],
                  [[0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 2, 9]]], dtype=np.int32)
    lam = apply.lam_from_boxes(b, 20, 20)
    np.testing.assert_allclose(lam, [1 - 175 / 400, 1.0, 1 - 100 / 400])
    np.testing.assert_allclose(apply.lam_from_boxes(b, 20, 20, np.array([1, 0, -1])), [1 - 175 / 400, 1.0, 1.0])
    assert apply.lam_from_boxes(np.zeros((3, 0, 4), np.int32), 5, 5).tolist() == [1.0, 1.0, 1.0]
    assert apply.lam_from_boxes(np.array([0, 0, 2, 5]), 4, 5).tolist() == [0.5]


# ------------------------------------------------------------------------------------ invalid args
@pytest.mark.parametrize("call, words", [
    (lambda x: apply.erase(x[0], np.zeros((2, 1, 4), np.int32)), "images"),
    (lambda x: apply.erase(x, np.zeros((2, 1, 4), np.int32), layout="CHW"), "layout"),
    (lambda x: apply.erase(x, np.zeros((2, 1, 4), np.float32)), "boxes"),
    (lambda x: apply.erase(x, np.zeros((3, 1, 4), np.int32)), "boxes"),
    (lambda x: apply.erase(x, np.zeros((2, 1, 4), np.int32), fill=[1, 2]), "fill"),
    (lambda x: apply.erase(x.astype(np.int16), np.zeros((2, 1, 4), np.int32)), "layout"),
    (lambda x: apply.erase((x * 0).astype(np.uint8).transpose(0, 2, 3, 1), np.zeros((2, 1, 4), np.int32),
                           fill=300), "fill"),
    (lambda x: apply.paste_cells(x, np.array([0, 2]), np.zeros((2, 3, 3), bool)), "partner_index"),
    (lambda x: apply.paste_cells(x, np.array([0, -2]), np.zeros((2, 3, 3), bool)), "partner_index"),
    (lambda x: apply.paste_cells(x, np.array([0]), np.zeros((2, 3, 3), bool)), "partner_index"),
    (lambda x: apply.paste_cells(x, np.array([1, 0]), np.zeros((2, 3, 3), np.int32)), "cell_mask"),
    (lambda x: apply.paste_cells(x, np.array([1, 0]), np.zeros((2, 9, 3), bool)), "grid size"),
    (lambda x: apply.lam_from_boxes(np.zeros((2, 1, 4), np.int32), 0, 5), "H"),
    (lambda x: apply.lam_from_cells(np.zeros((2, 3, 3), bool), 8, 2), "grid size"),
])
def test_invalid_arguments_raise_value_error(call, words):
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=words):
        call(x)
